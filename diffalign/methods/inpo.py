"""DDIM-InPO (Lu et al., "InPO: Inversion Preference Optimization with Reparametrized DDIM for
Efficient Diffusion Model Alignment", arXiv 2503.18454, CVPR 2025).

InPO treats the diffusion model as a single-step generator: instead of scoring a pair at a
random point of the forward process, it scores it at the latent that DDIM *inversion* of each
image reaches — a latent correlated with that image — and reparametrises the noise that latent
implies. For a pair sharing one timestep ``t``::

    x_t*(x) = DDIM-Inv_θ(x_0 → t | c)                           (no gradient; conditional, no CFG)
    ε*(x)   = (x_t* − √ᾱ_t · x_0) / √(1 − ᾱ_t)                   (the reparametrised noise)
    L(θ)    = −log σ( −(β/2) · [ (‖ε*_w − ε_θ(x_t*^w)‖² − ‖ε*_w − ε_ref(x_t*^w)‖²)
                               − (‖ε*_l − ε_θ(x_t*^l)‖² − ‖ε*_l − ε_ref(x_t*^l)‖²) ] )

i.e. Diffusion-DPO's loss (any kind of the shared core; β in paper form) with ε* in place of
the random draw. Chosen and rejected images are inverted separately (their noises differ), the
timestep stays shared by the pair. What this implementation fixes or chooses, against the
public code (JaydenLyh/InPO ``train.py``, read at a9cfc4d; methods.md §2):

* **per-sample timesteps** — the public code inverts the whole batch to ``timesteps[0]`` and
  uses ``ᾱ`` of ``timesteps[0]`` for every row (right only at one pair per GPU);
  ``sampling.ddim.ddim_invert`` walks each sample to its own ``t``, so results do not depend on
  the batch (tested at batch 1 and 4);
* **the inversion ends at t** — the public code stops at the last grid point below ``t`` and
  treats it as ``x_t``; here the last step lands on ``t`` exactly, so ``x_t* = √ᾱ_t·x_0 +
  √(1−ᾱ_t)·ε*`` holds exactly;
* **deterministic inversion** — the public code adds ``0.1·σ·z`` per step (hard-coded
  ``inversion_eta``); the paper's DDIM inversion is deterministic, and so is this one;
* the inverting model is the current policy, as the public code (``inversion_model: reference``
  inverts with the reference instead); ε- and v-prediction U-Nets both work (the public code
  asserts ε).

Cost: ``⌈t / (T / inversion_steps)⌉`` extra no-grad U-Net forwards per image (≈ 5.5 on average
at 10 inversion steps), on top of Diffusion-DPO's policy and reference passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ..losses.denoising import draw_timesteps, noise_pairs
from ..sampling.ddim import ddim_invert
from .diffusion_dpo import DiffusionDPO, DiffusionDPOConfig

__all__ = ["InPO", "InPOConfig"]


@dataclass
class InPOConfig(DiffusionDPOConfig):
    """``method: inpo`` — Diffusion-DPO's fields plus the inversion.

    Attributes:
        inversion_steps: DDIM inversion steps over the full range (grid ``T // steps``; the public
            code's ``DDIMInverseScheduler.set_timesteps(10)``).
        inversion_model: ``policy`` (the current policy, no gradient; the public code) or ``reference``.
    """

    inversion_steps: int = 10
    inversion_model: Literal["policy", "reference"] = "policy"

    def validate(self) -> None:
        super().validate()
        if self.inversion_steps < 1:
            raise ValueError(f"method.inversion_steps must be ≥ 1, got {self.inversion_steps}")


class InPO(DiffusionDPO):
    """DDIM-InPO on the shared loss core: Diffusion-DPO with DDIM-inverted noise.

    Args:
        inversion_steps (int): see ``InPOConfig``. inversion_model (str): ``policy`` or ``reference``.
        **kwargs: ``DiffusionDPO``'s arguments.
    """

    Config = InPOConfig
    paper = "Lu et al., arXiv 2503.18454"
    needs_inversion = True

    def __init__(self, scheduler, *args, inversion_steps: int = 10, inversion_model: str = "policy", **kwargs):
        super().__init__(scheduler, *args, **kwargs)
        self.inversion_steps, self.inversion_model = inversion_steps, inversion_model
        if inversion_model == "reference" and not self.needs_reference:
            raise ValueError("method.inversion_model: reference needs a loss kind that uses a reference")

    @classmethod
    def from_config(cls, cfg: InPOConfig, loss, components, **kwargs) -> "InPO":
        return super().from_config(cfg, loss, components, inversion_steps=cfg.inversion_steps,
                                   inversion_model=cfg.inversion_model, **kwargs)

    def noised(self, batch, policy, reference):
        """Step 1, InPO's noise source: one ``t`` per pair, each image inverted to it (``[2B]`` rows)."""
        t = draw_timesteps(len(batch), *self.t_range, device=batch.chosen.device)  # [B], shared by the pair
        model = reference if self.inversion_model == "reference" else policy
        noise = self.inverted_noise(batch, t.repeat(2), model)  # [2B, C, h, w]: ε*, one per image
        return noise_pairs(self.scheduler, batch.chosen, batch.rejected, self.t_range, self.prediction_type,
                           noise=noise, t=t)

    @torch.no_grad()
    def inverted_noise(self, batch, t, model) -> torch.Tensor:
        """``ε* = (x_t* − √ᾱ_t·x_0)/√(1−ᾱ_t)`` of every image, ``x_t*`` its DDIM inversion to its own ``t``.

        Args:
            batch (PairBatch): ``B`` pairs. t (torch.Tensor): ``[2B]`` levels, chosen rows first.
            model: the inverting denoiser.

        Returns:
            torch.Tensor: ``[2B, C, h, w]`` in the latents' dtype.
        """
        x0, cond = batch.x0(), batch.cond  # [2B, C, h, w], chosen first
        ac = self.scheduler.alphas_cumprod

        def eps(x, s, rows):  # the inverting model's ε̂ at level s (ε from v or x_0 predictions)
            pred = model(x.to(x0.dtype), s, cond.rows(rows)).float()
            if self.prediction_type == "epsilon":
                return pred
            a = ac.to(x.device, torch.float32)[s].view(-1, *[1] * (x.ndim - 1))
            if self.prediction_type == "v_prediction":
                return a.sqrt() * pred + (1 - a).sqrt() * x.float()
            return (x.float() - a.sqrt() * pred) / (1 - a).sqrt()

        x_t = ddim_invert(eps, x0, t, ac, self.inversion_steps, self.scheduler.config.num_train_timesteps)
        a = ac.to(x0.device, torch.float32)[t].view(-1, *[1] * (x0.ndim - 1))
        return ((x_t - a.sqrt() * x0.float()) / (1 - a).sqrt()).to(x0.dtype)
