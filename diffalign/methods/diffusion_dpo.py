"""Diffusion-DPO (Wallace et al., "Diffusion Model Alignment Using Direct Preference
Optimization", arXiv 2311.12908, CVPR 2024).

Eq. 14 of the paper, with one timestep and one noise draw shared by the two images of a pair::

    L(θ) = −E log σ( −(β/2) · [ (‖ε − ε_θ(x_t^w)‖² − ‖ε − ε_ref(x_t^w)‖²)
                              − (‖ε − ε_θ(x_t^l)‖² − ‖ε − ε_ref(x_t^l)‖²) ] )

β is the **paper form** (5000 in the paper's SD1.5 and SDXL runs; its ``T·ω(λ_t)`` is folded
in). The loss maths is the shared core's: scores ``s = −err`` go to ``preference_loss`` with
``β_core = β/2`` (``losses.denoising.core_params``), so any kind of the core works —
``sigmoid`` is the paper's loss, ``ipo`` / ``hinge`` the diffusers script's variants, ``robust``
(rDPO) for noisy labels, ``kto`` (chosen = desirable, rejected = undesirable; Diffusion-KTO,
arXiv 2404.04465), ``{sigmoid: 1, nll: λ}`` adds an SFT term on the chosen images.

Ties kept in the data (``label = 0.5``) count half in each direction:
``0.5·ℓ(w ≻ l) + 0.5·ℓ(l ≻ w)``.

``method.space: {kind: unet, ...}`` measures the error in the feature space of a frozen U-Net
encoder instead of latent space: NCP (Gambashidze et al., arXiv 2406.17636;
``losses/perceptual.py``) — NCP-DPO with ``sigmoid``, its CPO with a reference-free kind
(``cpo``, ``simpo``), its SFT with ``nll``. Every method built on this class (InPO, …) has it.
"""

from __future__ import annotations

import torch

from dataclasses import dataclass

from ..losses import LossParams, LossState, PreferenceBatch, needs_of, preference_loss, resolve_kinds
from ..losses.denoising import (PREDICTION_TYPES, LatentDistance, core_params, min_snr_weight, noise_pairs, pair_scores,
                                reference_kl)
from .base import DenoisingConfig, Method, MethodOutput, SpaceConfig

__all__ = ["DiffusionDPO", "DiffusionDPOConfig", "make_distance"]


@dataclass
class DiffusionDPOConfig(DenoisingConfig):
    """``method: diffusion_dpo`` — the shared denoising fields (``DenoisingConfig``: ``t_min``,
    ``t_max``, ``snr_gamma``, ``space``); the paper draws t from [0, 1000) with no weighting, in
    latent space."""


def make_distance(space: SpaceConfig, components):
    """The distance of a ``space:`` section: latent ε-MSE, or NCP's U-Net feature distance with a
    frozen copy of the initial U-Net as encoder (``models/features.py``)."""
    if space.kind == "latent":
        return LatentDistance()
    from ..losses.perceptual import PerceptualDistance
    from ..models.features import UNetFeatures

    return PerceptualDistance(UNetFeatures(components.unet, space.level), components.scheduler,
                              components.prediction_type, space.target, normalize=space.level == "multi")


def _swap(b: PreferenceBatch) -> PreferenceBatch:
    """The same pairs read the other way round (rejected preferred); the SFT term ``nll`` of
    the new chosen is its policy error ``−s`` (``pair_scores``)."""
    return PreferenceBatch(b.rejected, b.chosen, b.ref_rejected, b.ref_chosen, b.rejected_lengths,
                           b.chosen_lengths, None if b.chosen_nll is None else -b.rejected)


class DiffusionDPO(Method):
    """Diffusion-DPO on the shared loss core.

    Args:
        scheduler: the diffusers noise scheduler of the model (``add_noise``, ``alphas_cumprod``).
        prediction_type (str): ``epsilon``, ``v_prediction`` or ``sample`` — the U-Net's target.
        kinds (str | list | dict): loss kind(s) of the core. Default ``sigmoid`` (the paper).
        params (LossParams | None): loss parameters, ``beta`` in paper form. Default β = 5000.
        t_range (tuple[int, int]): timesteps drawn uniformly from ``[t_min, t_max)``. Default
            ``(0, num_train_timesteps)`` as the paper.
        snr_gamma (float | None): Min-SNR-γ weighting of the errors (None: ω(λ_t) = 1, the paper).
        distance: per-sample distance (``prepare(noised, cond)``, ``(pred, noised, cond) -> [N]``);
            default ``losses.denoising.LatentDistance`` (ε-MSE).
        kl_weight (float): λ of the explicit KL regulariser ``λ·mean ‖ε_θ(x_t) − ε_ref(x_t)‖²``
            over the batch's noised samples (DPOK, arXiv 2305.16381 Eq. 7;
            ``losses.denoising.reference_kl``). Default 0: the paper's loss alone.
    """

    Config = DiffusionDPOConfig
    paper = "Wallace et al., arXiv 2311.12908"
    needs_reference = True
    needs_rollouts = False
    needs_reward = False
    needs_inversion = False
    reference_overlap = None  # models.reference.ReferenceOverlap: the reference forward beside the policy's (CPU)

    def __init__(
        self,
        scheduler,
        prediction_type: str = "epsilon",
        kinds="sigmoid",
        params: LossParams | None = None,
        t_range: tuple[int, int] | None = None,
        snr_gamma: float | None = None,
        distance=None,
        kl_weight: float = 0.0,
    ):
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES}, got {prediction_type!r}")
        self.scheduler = scheduler
        self.prediction_type = prediction_type
        self.kinds = kinds
        resolve_kinds(kinds)  # unknown kinds fail here, not at the first step
        self.loss_needs = needs_of(kinds)
        if kl_weight < 0:
            raise ValueError(f"kl_weight must be >= 0, got {kl_weight}")
        self.kl_weight = float(kl_weight)
        # a reference-free kind needs no reference, unless the KL regulariser reads it
        self.needs_reference = "reference" in self.loss_needs or self.kl_weight > 0
        self.params = params or LossParams(beta=5000.0)
        self.core = core_params(self.params)  # β_core = β_paper / 2: see losses/denoising.py
        n = scheduler.config.num_train_timesteps
        self.t_range = tuple(t_range) if t_range is not None else (0, n)
        if not 0 <= self.t_range[0] < self.t_range[1] <= n:
            raise ValueError(f"timestep range {self.t_range} must lie in [0, {n}]")
        self.snr_gamma = snr_gamma
        self.distance = distance if distance is not None else LatentDistance()
        self.state = LossState()

    @classmethod
    def from_config(cls, cfg: DiffusionDPOConfig, loss, components, **kwargs) -> "DiffusionDPO":
        """Build from its ``method:`` section, the ``loss:`` section and loaded ``Components``."""
        n = components.scheduler.config.num_train_timesteps
        if cfg.t_max > n:
            raise ValueError(f"method.t_max {cfg.t_max} exceeds the scheduler's {n} training timesteps")
        return cls(components.scheduler, components.prediction_type, loss.kinds, loss.params(), (cfg.t_min, cfg.t_max),
                   cfg.snr_gamma, make_distance(cfg.space, components), kl_weight=cfg.kl_weight, **kwargs)

    def modules(self) -> dict:
        """NCP's frozen feature encoder when the error is measured in U-Net feature space."""
        features = getattr(self.distance, "features", None)
        return {} if features is None else {"feature_encoder": features}

    def state_dict(self) -> dict:
        return self.state.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.state.load_state_dict(state)

    def noised(self, batch, policy, reference):
        """Step 1, the noise source: one random ``t`` and ``ε`` per pair (InPO overrides this with
        DDIM-inverted noise, one per image, ``t`` still shared)."""
        return noise_pairs(self.scheduler, batch.chosen, batch.rejected, self.t_range, self.prediction_type,
                           seeds=getattr(batch, "noise_seeds", None))

    def errors(self, denoiser, batch, noised, weight, keep: list | None = None) -> torch.Tensor:
        """Per-sample errors ``[2B]`` (chosen first) of a denoiser on the noised pairs (its
        prediction ``[2B, C, h, w]`` is appended to ``keep`` when given: the KL regulariser reads it)."""
        pred = denoiser(noised.x_t, noised.t, batch.cond)  # [2B, C, h, w]
        if keep is not None:
            keep.append(pred)
        return self.distance(pred, noised, batch.cond) * (1.0 if weight is None else weight)

    def _reference_errors(self, reference, batch, noised, weight, keep: list | None = None) -> torch.Tensor:
        with torch.no_grad():  # grad mode is per thread
            return self.errors(reference, batch, noised, weight, keep).detach()

    def compute_loss(self, batch, policy, reference) -> MethodOutput:
        if self.needs_reference and reference is None:
            raise ValueError(f"loss kind(s) {self.kinds!r} need a reference denoiser")
        # 1. one t and one ε per pair, repeated for w and l: x_t, t, target are [2B, ...]
        noised = self.noised(batch, policy, reference)
        self.distance.prepare(noised, batch.cond)  # what policy and reference share, once per batch
        weight = None
        if self.snr_gamma:
            weight = min_snr_weight(self.scheduler, noised.t, self.snr_gamma, self.prediction_type)  # [2B]
        # 2. per-sample errors ‖target − model(x_t)‖² in fp32: [2B]
        err_ref = None
        kept, kept_ref = ([], []) if self.kl_weight else (None, None)
        # the two forwards side by side, unless the reference is the policy with its adapters toggled
        if self.needs_reference and self.reference_overlap is not None and getattr(reference, "separate", lambda: True)():
            err, err_ref = self.reference_overlap.run(
                lambda: self.errors(policy, batch, noised, weight, kept),
                lambda: self._reference_errors(reference, batch, noised, weight, kept_ref))
        else:
            err = self.errors(policy, batch, noised, weight, kept)
            if self.needs_reference:
                err_ref = self._reference_errors(reference, batch, noised, weight, kept_ref)
        # 3. scores s = −err → the shared core (β_core = β/2): Eq. 14 for kind 'sigmoid'
        scores = pair_scores(err, err_ref, self.loss_needs)
        scores, extra = self.adjust_scores(scores)  # SePPO: the anchor criterion scales the loser's term
        out = preference_loss(scores, self.kinds, self.core, self.state)
        per_pair = out.per_pair  # [B]
        label = batch.label
        if label is not None and bool((label != 1).any()):
            # kept ties: p·ℓ(w ≻ l) + (1 − p)·ℓ(l ≻ w)
            rev = preference_loss(_swap(scores), self.kinds, self.core, None).per_pair
            p = label.to(per_pair)
            per_pair = p * per_pair + (1 - p) * rev
        loss = per_pair.mean()
        if self.kl_weight:  # DPOK's KL term on both samples of every pair: [2B] → scalar
            kl = reference_kl(kept[0], kept_ref[0]).mean()
            loss = loss + self.kl_weight * kl
            extra = {**extra, "kl/reference": kl.detach()}
        return MethodOutput(loss, {**self._metrics(out, err, err_ref, loss), **extra}, per_pair.detach())

    def adjust_scores(self, scores: PreferenceBatch) -> tuple[PreferenceBatch, dict]:
        """Step 3a, between the scores and the core: identity here (SePPO applies its anchor criterion)."""
        return scores, {}

    @torch.no_grad()
    def _metrics(self, out, err, err_ref, loss) -> dict:
        b = err.shape[0] // 2
        m = {k: v for k, v in out.metrics.items() if k != "loss"}
        m["loss"] = loss.detach()
        m["err/policy_chosen"] = err[:b].mean()
        m["err/policy_rejected"] = err[b:].mean()
        if err_ref is not None:
            m["err/ref_chosen"] = err_ref[:b].mean()
            m["err/ref_rejected"] = err_ref[b:].mean()
            model_diff = err[:b] - err[b:]  # Δθ
            ref_diff = err_ref[:b] - err_ref[b:]  # Δref
            # Salesforce's implicit_acc: the inside −(β/2)(Δθ − Δref) is positive
            m["implicit_acc"] = ((ref_diff - model_diff) > 0).float().mean()
        return m
