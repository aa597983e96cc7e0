"""The shared preference-loss core: pure tensor maths on per-sample scores.

Used by the text DPO trainer (``sequence.py`` turns logits into scores) and by every
diffusion method (``denoising.py`` turns denoising errors into scores). Loss maths lives in
this package and nowhere else.
"""

from .core import KINDS, LossOutput, needs_of, preference_loss, resolve_kinds, unpaired_loss
from .types import LossKind, LossParams, LossState, PreferenceBatch, UnpairedBatch

__all__ = [
    "KINDS",
    "LossKind",
    "LossOutput",
    "LossParams",
    "LossState",
    "PreferenceBatch",
    "UnpairedBatch",
    "needs_of",
    "preference_loss",
    "resolve_kinds",
    "unpaired_loss",
]
