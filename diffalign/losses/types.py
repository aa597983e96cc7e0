"""Inputs, parameters and the registry of the shared preference-loss core.

Every preference method — text DPO and every diffusion method — reduces to *scores* of chosen
and rejected samples under the policy and (optionally) a reference:

* text: ``score = Σ_t log π(y_t | x, y_<t)`` over completion tokens;
* diffusion: ``score = −err(prediction, target)`` at a timestep and noise shared by the pair.

The functions in this package only see those scores. They know nothing of tokens or U-Nets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from .params import LossParams

__all__ = [
    "PreferenceBatch",
    "UnpairedBatch",
    "LossParams",
    "LossKind",
    "LossState",
    "NEEDS",
]

# What a kind can ask for besides policy scores of chosen and rejected.
NEEDS = {
    "reference": "reference scores `ref_chosen` / `ref_rejected` (a reference model, adapters "
    "disabled, or precomputed reference scores)",
    "lengths": "sequence lengths `chosen_lengths` / `rejected_lengths` (text: completion tokens)",
    "nll": "a per-pair NLL / SFT term of the chosen sample `chosen_nll`",
}


@dataclass
class PreferenceBatch:
    """Per-pair scores; every tensor is ``[B]`` (one entry per preference pair).

    Attributes:
        chosen (torch.Tensor): policy score ``s(y_w)`` of the chosen sample.
        rejected (torch.Tensor): policy score ``s(y_l)`` of the rejected sample.
        ref_chosen (torch.Tensor | None): reference score of the chosen sample.
        ref_rejected (torch.Tensor | None): reference score of the rejected sample.
        chosen_lengths (torch.Tensor | None): ``|y_w|`` (completion tokens for text).
        rejected_lengths (torch.Tensor | None): ``|y_l|``.
        chosen_nll (torch.Tensor | None): NLL / SFT term of the chosen sample, per pair
            (text: token-mean cross-entropy of the chosen completion; diffusion: the
            policy's denoising error on the chosen sample).
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    ref_chosen: torch.Tensor | None = None
    ref_rejected: torch.Tensor | None = None
    chosen_lengths: torch.Tensor | None = None
    rejected_lengths: torch.Tensor | None = None
    chosen_nll: torch.Tensor | None = None

    @property
    def has_reference(self) -> bool:
        return self.ref_chosen is not None and self.ref_rejected is not None

    def float(self) -> "PreferenceBatch":
        """Upcast every tensor to fp32 (losses are always computed in fp32)."""
        f = lambda t: None if t is None else t.float()  # noqa: E731
        return PreferenceBatch(*(f(getattr(self, n)) for n in self.__dataclass_fields__))

    def chosen_logratio(self) -> torch.Tensor:
        """``r(y_w) = s(y_w) − s_ref(y_w)``, ``[B]``."""
        return self.chosen - self.ref_chosen

    def rejected_logratio(self) -> torch.Tensor:
        """``r(y_l) = s(y_l) − s_ref(y_l)``, ``[B]``."""
        return self.rejected - self.ref_rejected

    def delta(self) -> torch.Tensor:
        """``Δ = r(y_w) − r(y_l)``, ``[B]``."""
        return self.chosen_logratio() - self.rejected_logratio()


@dataclass
class UnpairedBatch:
    """Per-sample scores for unpaired kinds (KTO, BCO, NPO); every tensor is ``[N]``.

    Attributes:
        policy (torch.Tensor): policy score of each sample.
        reference (torch.Tensor | None): reference score of each sample.
        desirable (torch.Tensor): bool, True for a desirable (chosen) sample.
        kl_policy (torch.Tensor | None): policy scores of *mismatched* prompt/completion
            pairs, used by KTO's reference point ``z0`` (TRL style). When absent, ``z0`` is
            the batch mean of the log-ratios (Diffusion-KTO, arXiv 2404.04465).
        kl_reference (torch.Tensor | None): reference scores of the mismatched pairs.
    """

    policy: torch.Tensor
    reference: torch.Tensor | None
    desirable: torch.Tensor
    kl_policy: torch.Tensor | None = None
    kl_reference: torch.Tensor | None = None

    @classmethod
    def from_pairs(cls, batch: PreferenceBatch) -> "UnpairedBatch":
        """Chosen samples become desirable, rejected ones undesirable: ``[2B]`` = [w; l]."""
        ref = None
        if batch.has_reference:
            ref = torch.cat([batch.ref_chosen, batch.ref_rejected])
        n = batch.chosen.shape[0]
        desirable = torch.cat([torch.ones(n, dtype=torch.bool), torch.zeros(n, dtype=torch.bool)])
        return cls(torch.cat([batch.chosen, batch.rejected]), ref, desirable.to(batch.chosen.device))

    def logratio(self) -> torch.Tensor:
        return self.policy - self.reference


@dataclass
class LossState:
    """Mutable statistics carried across steps by batch-coupled kinds (``bco``).

    ``bco_mean`` is the running mean of all rewards ``β·r`` seen so far (TRL
    ``RunningMoments``); ``bco_count`` their number. Save it with a checkpoint to resume
    exactly.
    """

    bco_mean: float = 0.0
    bco_count: int = 0

    def state_dict(self) -> dict:
        return {"bco_mean": self.bco_mean, "bco_count": self.bco_count}

    def load_state_dict(self, d: dict) -> None:
        self.bco_mean, self.bco_count = float(d["bco_mean"]), int(d["bco_count"])


@dataclass(frozen=True)
class LossKind:
    """One registered loss kind.

    Attributes:
        name (str): registry key.
        fn (Callable): ``fn(batch, params) -> [B]`` per-pair losses (paired kinds) or
            ``fn(batch, params, state) -> ([N] losses, [N] bool applicable)`` (unpaired).
        needs (frozenset[str]): inputs besides policy scores, keys of ``NEEDS``.
        paper (str): source, an arXiv id where there is one.
        unpaired (bool): True for per-sample kinds (KTO, BCO, NPO).
        batch_coupled (bool): True when a sample's loss depends on the rest of the batch
            (``aot``, ``kto``, ``bco``): gradient accumulation changes the statistics.
    """

    name: str
    fn: Callable
    needs: frozenset = field(default_factory=frozenset)
    paper: str = ""
    unpaired: bool = False
    batch_coupled: bool = False

    @property
    def reference_free(self) -> bool:
        return "reference" not in self.needs

    @property
    def summary(self) -> str:
        doc = (self.fn.__doc__ or "").strip().splitlines()
        return doc[0] if doc else ""
