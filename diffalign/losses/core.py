"""The one entry point of the preference-loss core: ``preference_loss``.

``L = Σ_k w_k · mean_pairs(loss_k)`` over one or more kinds (TRL's ``loss_type`` list with
``loss_weights``; RPO = ``{"sigmoid": 1, "nll": α}``), plus the metrics every trainer logs
under TRL's names.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Mapping, Sequence, Union

import torch

from .preference import PAIRED_KINDS
from .types import NEEDS, LossKind, LossParams, LossState, PreferenceBatch, UnpairedBatch
from .unpaired import UNPAIRED_KINDS

__all__ = ["KINDS", "LossOutput", "KindSpec", "resolve_kinds", "preference_loss", "unpaired_loss", "needs_of"]

KINDS: dict[str, LossKind] = {**PAIRED_KINDS, **UNPAIRED_KINDS}

KindSpec = Union[str, Sequence[str], Mapping[str, float]]


@dataclass
class LossOutput:
    """What ``preference_loss`` returns.

    Attributes:
        loss (torch.Tensor): scalar batch loss (weighted sum of the kinds' pair means).
        per_pair (torch.Tensor): ``[B]`` weighted per-pair losses (``loss == per_pair.mean()``).
        chosen_rewards (torch.Tensor): ``[B]`` detached ``β·r(y_w)`` (``β·s(y_w)`` when the
            batch has no reference).
        rejected_rewards (torch.Tensor): ``[B]`` detached ``β·r(y_l)``.
        metrics (dict[str, torch.Tensor]): detached scalars named as TRL names them:
            ``loss``, ``rewards/chosen``, ``rewards/rejected``, ``rewards/margins``,
            ``rewards/accuracies`` (strict ``>``: 0 at initialisation), and
            ``loss/<kind>`` for each kind when several are combined.
    """

    loss: torch.Tensor
    per_pair: torch.Tensor
    chosen_rewards: torch.Tensor
    rejected_rewards: torch.Tensor
    metrics: dict = field(default_factory=dict)


def _unknown(name: str) -> ValueError:
    close = difflib.get_close_matches(name, KINDS, n=1)
    hint = f" — did you mean {close[0]!r}?" if close else ""
    return ValueError(f"unknown loss kind {name!r}{hint} (known: {', '.join(sorted(KINDS))})")


def resolve_kinds(spec: KindSpec) -> list[tuple[LossKind, float]]:
    """Parse ``"sigmoid"``, ``["sigmoid", "nll"]`` (weights 1) or ``{"sigmoid": 1, "nll": 0.005}``."""
    if isinstance(spec, str):
        spec = {spec: 1.0}
    elif not isinstance(spec, Mapping):
        spec = {s: 1.0 for s in spec}
    if not spec:
        raise ValueError("no loss kind given")
    out = []
    for name, w in spec.items():
        if name not in KINDS:
            raise _unknown(name)
        out.append((KINDS[name], float(w)))
    return out


def needs_of(spec: KindSpec) -> frozenset:
    """Union of the inputs the kinds need (keys of ``types.NEEDS``)."""
    return frozenset().union(*(k.needs for k, _ in resolve_kinds(spec)))


def _check(kind: LossKind, batch: PreferenceBatch) -> None:
    present = {
        "reference": batch.has_reference,
        "lengths": batch.chosen_lengths is not None and batch.rejected_lengths is not None,
        "nll": batch.chosen_nll is not None,
    }
    for need in sorted(kind.needs):
        if not present[need]:
            extra = ""
            if need == "reference":
                free = sorted(k for k, v in KINDS.items() if v.reference_free)
                extra = f"; reference-free kinds: {', '.join(free)}"
            raise ValueError(f"loss kind {kind.name!r} needs {NEEDS[need]}, which this batch lacks{extra}")


def _unpaired_on_pairs(kind: LossKind, batch: PreferenceBatch, params: LossParams, state) -> torch.Tensor:
    """Run an unpaired kind on pairs: chosen = desirable, rejected = undesirable; ``[B]``."""
    n = batch.chosen.shape[0]
    loss, ok = kind.fn(UnpairedBatch.from_pairs(batch), params, state)
    ok = ok.to(loss.dtype)
    loss = loss * ok
    return (loss[:n] + loss[n:]) / torch.clamp(ok[:n] + ok[n:], min=1)


def preference_loss(
    batch: PreferenceBatch,
    kinds: KindSpec = "sigmoid",
    params: LossParams | None = None,
    state: LossState | None = None,
) -> LossOutput:
    """Preference loss of one batch of pairs, for any kind or weighted combination of kinds.

    Args:
        batch (PreferenceBatch): per-pair scores ``[B]``; cast to fp32 here.
        kinds (str | list[str] | dict[str, float]): kind name(s), optionally weighted.
        params (LossParams | None): hyper-parameters; defaults to ``LossParams()``.
        state (LossState | None): running statistics of batch-coupled kinds (``bco``).

    Returns:
        LossOutput: scalar loss, per-pair losses, rewards and metrics.

    Raises:
        ValueError: an unknown kind, or an input a kind needs is missing.
    """
    params = params or LossParams()
    b = batch.float()
    resolved = resolve_kinds(kinds)
    for kind, _ in resolved:
        _check(kind, b)

    per_pair = torch.zeros_like(b.chosen)
    metrics: dict[str, torch.Tensor] = {}
    for kind, w in resolved:
        if kind.unpaired:
            part = _unpaired_on_pairs(kind, b, params, state)
        else:
            part = kind.fn(b, params)
        per_pair = per_pair + w * part
        if len(resolved) > 1:
            metrics[f"loss/{kind.name}"] = part.mean().detach()

    with torch.no_grad():
        if b.has_reference:
            cr, rr = params.beta * b.chosen_logratio(), params.beta * b.rejected_logratio()
        else:
            cr, rr = params.beta * b.chosen, params.beta * b.rejected
    loss = per_pair.mean()
    metrics.update(
        {
            "loss": loss.detach(),
            "rewards/chosen": cr.mean(),
            "rewards/rejected": rr.mean(),
            "rewards/margins": (cr - rr).mean(),
            "rewards/accuracies": (cr > rr).float().mean(),
        }
    )
    return LossOutput(loss, per_pair, cr, rr, metrics)


def unpaired_loss(
    batch: UnpairedBatch,
    kind: str = "kto",
    params: LossParams | None = None,
    state: LossState | None = None,
) -> LossOutput:
    """Loss of natively unpaired data (one label per sample) with ``kto``, ``bco`` or ``npo``.

    ``per_pair`` holds the per-sample losses ``[N]`` (0 where not applicable);
    ``chosen_rewards`` / ``rejected_rewards`` hold ``β·r`` of the desirable / undesirable
    samples.
    """
    params = params or LossParams()
    if kind not in UNPAIRED_KINDS:
        if kind in KINDS:
            raise ValueError(f"loss kind {kind!r} is paired; unpaired data takes one of {sorted(UNPAIRED_KINDS)}")
        raise _unknown(kind)
    if batch.reference is None:
        raise ValueError(f"loss kind {kind!r} needs {NEEDS['reference']}, which this batch lacks")
    f = lambda t: None if t is None else t.float()  # noqa: E731
    b = UnpairedBatch(f(batch.policy), f(batch.reference), batch.desirable, f(batch.kl_policy), f(batch.kl_reference))
    losses, ok = UNPAIRED_KINDS[kind].fn(b, params, state)
    loss = (losses * ok).sum() / torch.clamp(ok.sum(), min=1)
    with torch.no_grad():
        r = params.beta * b.logratio()
        cr, rr = r[b.desirable], r[~b.desirable]
        nan = torch.tensor(float("nan"))
        metrics = {
            "loss": loss.detach(),
            "rewards/chosen": cr.mean() if cr.numel() else nan,
            "rewards/rejected": rr.mean() if rr.numel() else nan,
        }
        metrics["rewards/margins"] = metrics["rewards/chosen"] - metrics["rewards/rejected"]
    return LossOutput(loss, losses, cr, rr, metrics)
