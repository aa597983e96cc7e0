"""The ``Method`` protocol every diffusion preference method implements, and the objects it sees.

A method turns a batch and two *denoisers* — the policy and a reference — into a loss. It
declares what it needs as class attributes; trainers read the declarations and never branch on
a method's name::

    class DiffusionDPO(Method):
        needs_reference = True      # call compute_loss with a reference denoiser
        needs_rollouts = False      # samples come from the dataset, not from the policy
        needs_reward = False        # labels come with the data
        needs_inversion = False     # noise is drawn at random (InPO: DDIM inversion)

A denoiser is ``(x_t [N, C, h, w], t [N], cond) -> prediction [N, C, h, w]``. ``Denoiser`` wraps
a ``UNet2DConditionModel`` (SD 1.5/2.x, and SDXL through ``added_cond_kwargs``);
``AdapterOffDenoiser`` is the same U-Net with its LoRA adapters disabled (no second U-Net);
``FrozenDenoiser`` is a frozen copy. References always run under ``torch.no_grad``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import ClassVar

import torch

__all__ = ["Conditioning", "PairBatch", "MethodOutput", "Method", "Denoiser", "AdapterOffDenoiser", "FrozenDenoiser"]


@dataclass
class Conditioning:
    """Text (and SDXL micro-) conditioning of ``N`` rows.

    Attributes:
        encoder_hidden_states (torch.Tensor): ``[N, L, D]`` text-encoder states (SDXL: both
            encoders' penultimate states concatenated on D).
        text_embeds (torch.Tensor | None): ``[N, D2]`` SDXL pooled embedding of text_encoder_2.
        time_ids (torch.Tensor | None): ``[N, 6]`` SDXL ``(orig_h, orig_w, crop_top, crop_left,
            target_h, target_w)`` of each image.
    """

    encoder_hidden_states: torch.Tensor
    text_embeds: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None

    def added_cond_kwargs(self) -> dict | None:
        if self.text_embeds is None:
            return None
        return {"text_embeds": self.text_embeds, "time_ids": self.time_ids}


@dataclass
class PairBatch:
    """``B`` preference pairs in latent space.

    Attributes:
        chosen (torch.Tensor): ``[B, C, h, w]`` clean latents of the preferred images (scaled by the VAE factor).
        rejected (torch.Tensor): ``[B, C, h, w]`` latents of the other images.
        encoder_hidden_states (torch.Tensor): ``[B, L, D]`` prompt states (shared by the pair).
        text_embeds (torch.Tensor | None): ``[B, D2]`` SDXL pooled prompt embedding.
        time_ids (torch.Tensor | None): ``[2B, 6]`` SDXL micro-conditioning, chosen rows first
            (each image has its own original size and crop).
        label (torch.Tensor): ``[B]`` probability that ``chosen`` is preferred: 1, or 0.5 for a
            kept tie (the pair then counts half in each direction).
        index (torch.Tensor): ``[B]`` dataset positions of the pairs.
    """

    chosen: torch.Tensor
    rejected: torch.Tensor
    encoder_hidden_states: torch.Tensor
    text_embeds: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None
    label: torch.Tensor | None = None
    index: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.chosen.shape[0]

    def cond2(self) -> Conditioning:
        """Conditioning of the ``2B`` rows ``[chosen; rejected]``."""
        te = None if self.text_embeds is None else self.text_embeds.repeat(2, 1)
        return Conditioning(self.encoder_hidden_states.repeat(2, 1, 1), te, self.time_ids)

    def to(self, device) -> "PairBatch":
        mv = lambda t: None if t is None else t.to(device)  # noqa: E731
        return PairBatch(*(mv(getattr(self, f)) for f in self.__dataclass_fields__))


@dataclass
class MethodOutput:
    """What ``Method.compute_loss`` returns.

    Attributes:
        loss (torch.Tensor): scalar to back-propagate.
        metrics (dict[str, torch.Tensor]): detached scalars to log.
        per_pair (torch.Tensor | None): ``[B]`` detached per-pair losses.
    """

    loss: torch.Tensor
    metrics: dict = field(default_factory=dict)
    per_pair: torch.Tensor | None = None


class Denoiser:
    """A U-Net as a denoiser ``(x_t, t, cond) -> prediction``.

    Args:
        unet: a ``UNet2DConditionModel`` (possibly wrapped by accelerate / DDP).
    """

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.unet(
            x_t, t, encoder_hidden_states=cond.encoder_hidden_states, added_cond_kwargs=cond.added_cond_kwargs()
        ).sample


class AdapterOffDenoiser(Denoiser):
    """The policy U-Net with its LoRA adapters disabled, under ``no_grad``: the initial model.

    Args:
        unet: the policy U-Net holding peft adapters.
        base: the unwrapped U-Net whose adapters are switched (default: ``unet``).
    """

    def __init__(self, unet: torch.nn.Module, base: torch.nn.Module | None = None):
        super().__init__(unet)
        self.base = base if base is not None else unet

    @contextmanager
    def _off(self):
        self.base.disable_adapters()
        try:
            yield
        finally:
            self.base.enable_adapters()

    @torch.no_grad()
    def __call__(self, x_t, t, cond):
        with self._off():
            return super().__call__(x_t, t, cond)


class FrozenDenoiser(Denoiser):
    """A frozen copy of the initial U-Net, under ``no_grad`` (optionally CPU-offloaded by the trainer).

    Args:
        unet: the frozen copy. dtype (torch.dtype | None): its weights' dtype (e.g. fp16 under
            mixed precision); inputs are cast to it, since no autocast wraps a copy.
    """

    def __init__(self, unet: torch.nn.Module, dtype: torch.dtype | None = None):
        super().__init__(unet)
        self.dtype = dtype

    @torch.no_grad()
    def __call__(self, x_t, t, cond):
        if self.dtype is not None and self.dtype != x_t.dtype:
            c = lambda v: None if v is None else v.to(self.dtype)  # noqa: E731
            x_t, cond = c(x_t), Conditioning(c(cond.encoder_hidden_states), c(cond.text_embeds), c(cond.time_ids))
        return super().__call__(x_t, t, cond)


class Method:
    """Base class of diffusion preference methods.

    Subclasses set the ``needs_*`` class attributes and implement ``compute_loss``. An instance
    may narrow ``needs_reference`` (a reference-free loss kind needs no reference).
    """

    needs_reference: ClassVar[bool] = True
    needs_rollouts: ClassVar[bool] = False
    needs_reward: ClassVar[bool] = False
    needs_inversion: ClassVar[bool] = False

    @classmethod
    def from_config(cls, cfg, components) -> "Method":
        """Build from a trainer config and the loaded ``models.families.Components``."""
        raise NotImplementedError

    def compute_loss(self, batch: PairBatch, policy: Denoiser, reference: Denoiser | None) -> MethodOutput:
        """Loss of one batch.

        Args:
            batch (PairBatch): ``B`` pairs in latent space.
            policy (Denoiser): the trained denoiser (gradients flow).
            reference (Denoiser | None): the reference denoiser, or None when not needed.
        """
        raise NotImplementedError
