"""The shared preference-loss core: pure tensor maths on per-sample scores.

Used by the text DPO trainer (``sequence.py`` turns logits into scores) and by every
diffusion method (``denoising.py`` turns denoising errors into scores). Loss maths lives in
this package and nowhere else. Names are imported lazily so that ``LossParams`` (used by
configs) does not pull in torch.
"""

import importlib

_EXPORTS = {
    "LossParams": ".params",
    "LossKind": ".types",
    "LossState": ".types",
    "PreferenceBatch": ".types",
    "UnpairedBatch": ".types",
    "KINDS": ".core",
    "LossOutput": ".core",
    "needs_of": ".core",
    "preference_loss": ".core",
    "resolve_kinds": ".core",
    "unpaired_loss": ".core",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
