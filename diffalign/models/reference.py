"""Reference strategies: where the model the loss compares the policy against comes from.

* ``none``        — the loss kinds are reference-free (SimPO, CPO, SFT, …);
* ``adapter_off`` — the policy with its LoRA adapters disabled: the initial model, no copy
  (diffusers' Diffusion-DPO script, torchtune);
* ``frozen_copy`` — a frozen copy of the initial model, in the compute dtype, optionally
  CPU-offloaded (Salesforce Diffusion-DPO, full fine-tuning).

The text trainer adds ``precomputed`` (reference log-probs computed once before training) on
top of the same rules. Strategies that move during training (``periodic_copy``, ``ema``, a
``checkpoint_pool`` of past policies) implement ``update`` and ``state_dict`` so that the loop
can call and checkpoint them without knowing which one it holds.
"""

from __future__ import annotations

import copy

import torch

from .denoiser import AdapterOffDenoiser, Denoiser, FrozenDenoiser

__all__ = ["STRATEGIES", "resolve_strategy", "frozen_copy", "Reference", "NoReference", "AdapterOff", "FrozenCopy",
           "make_reference"]


def resolve_strategy(requested: str, *, needs_reference: bool, has_lora: bool, auto: str, known: tuple[str, ...]) -> str:
    """The strategy a trainer uses: ``none`` when the method needs no reference, ``auto`` → the
    trainer's default, and a clear error for ``adapter_off`` without adapters.

    Args:
        requested (str): ``reference.strategy`` of the config. needs_reference (bool): what the
            method (or the loss kinds) declare. has_lora (bool): the policy carries LoRA adapters.
        auto (str): the trainer's default. known (tuple[str, ...]): strategies the trainer serves.
    """
    if not needs_reference:
        return "none"
    s = auto if requested == "auto" else requested
    if s not in known:
        raise ValueError(f"reference.strategy must be one of {['auto', *known]}, got {requested!r}")
    if s == "adapter_off" and not has_lora:
        raise ValueError("reference.strategy: adapter_off needs model.lora (there are no adapters to turn off)")
    return s


def frozen_copy(module: torch.nn.Module, dtype: torch.dtype | None = None, offload: bool = False,
                device: torch.device | str | None = None) -> torch.nn.Module:
    """A frozen, eval-mode deep copy of ``module``.

    Args:
        dtype (torch.dtype | None): cast the copy (no gradients: the compute dtype is enough; the
            official Diffusion-DPO code keeps an fp16 ``ref_unet``). None keeps the dtype.
        offload (bool): keep it on the CPU and move layers to ``device`` as they run (accelerate
            ``cpu_offload``; slower, saves a model of device memory).
        device: where it runs.
    """
    ref = copy.deepcopy(module).requires_grad_(False).eval()
    if dtype is not None and dtype != torch.float32:
        ref.to(dtype)
    if offload:
        from accelerate import cpu_offload

        cpu_offload(ref, execution_device=device)
    elif device is not None:
        ref.to(device)
    return ref


class Reference:
    """A reference strategy for a denoising method.

    Attributes:
        name (str): the strategy's name (``reference.strategy``).
    """

    name = ""

    def denoiser(self) -> Denoiser | None:
        """The reference denoiser for the next loss (None: reference-free)."""
        raise NotImplementedError

    def update(self, step: int, policy: torch.nn.Module) -> None:
        """Called by the loop after each optimiser step (moving strategies update here)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


class NoReference(Reference):
    name = "none"

    def denoiser(self):
        return None


class AdapterOff(Reference):
    """The policy U-Net with adapters off. Args: unet: the unwrapped policy U-Net with LoRA."""

    name = "adapter_off"

    def __init__(self, unet: torch.nn.Module):
        self._denoiser = AdapterOffDenoiser(unet)

    def denoiser(self):
        return self._denoiser


class FrozenCopy(Reference):
    """A frozen copy of the initial U-Net (see ``frozen_copy`` for the arguments)."""

    name = "frozen_copy"

    def __init__(self, unet: torch.nn.Module, dtype: torch.dtype | None = None, offload: bool = False, device=None):
        self.unet = frozen_copy(unet, dtype, offload, device)
        self._denoiser = FrozenDenoiser(self.unet, dtype)

    def denoiser(self):
        return self._denoiser


STRATEGIES = ("adapter_off", "frozen_copy")


def make_reference(strategy: str, unet: torch.nn.Module, dtype: torch.dtype | None = None, offload: bool = False,
                   device=None) -> Reference:
    """Build a resolved strategy (``resolve_strategy``) around the policy U-Net.

    ``frozen_copy`` copies ``unet`` now, so call it before adapters are added; ``adapter_off``
    keeps a handle on ``unet`` and needs its adapters by the first call.
    """
    if strategy == "none":
        return NoReference()
    if strategy == "adapter_off":
        return AdapterOff(unet)
    if strategy == "frozen_copy":
        return FrozenCopy(unet, dtype, offload, device)
    raise ValueError(f"unknown reference strategy {strategy!r} (known: none, {', '.join(STRATEGIES)})")
