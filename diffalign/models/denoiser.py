"""Conditioning and denoiser wrappers: what a method calls, whatever the model family.

A denoiser is ``(x_t [N, C, h, w], t [N], cond) -> prediction [N, C, h, w]``. ``Denoiser``
wraps a ``UNet2DConditionModel`` (SD 1.5/2.x; SDXL through ``added_cond_kwargs``);
``AdapterOffDenoiser`` is the same U-Net without its LoRA adapters (no second copy of the
weights: a ``base_view`` sharing them, or the adapters switched off);
``FrozenDenoiser`` is a frozen copy, in its own dtype. References run under ``torch.no_grad``.

``Conditioning`` holds every input of the U-Net besides ``x_t`` and ``t``; its methods
(``to``, ``repeat``, ``unet_kwargs``) iterate over all its fields, so a field added for a new
family is moved, cast and passed on everywhere without touching the wrappers.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from dataclasses import dataclass

import torch

__all__ = ["Conditioning", "Denoiser", "AdapterOffDenoiser", "FrozenDenoiser", "adapters_off", "base_view"]


@dataclass
class Conditioning:
    """The U-Net's conditioning of ``N`` rows (every tensor field has ``N`` rows).

    Attributes:
        encoder_hidden_states (torch.Tensor): ``[N, L, D]`` text-encoder states (SDXL: both
            encoders' penultimate states concatenated on D).
        text_embeds (torch.Tensor | None): ``[N, D2]`` SDXL pooled embedding of text_encoder_2.
        time_ids (torch.Tensor | None): ``[N, 6]`` SDXL ``(orig_h, orig_w, crop_top, crop_left,
            target_h, target_w)`` of each image.
        class_labels (torch.Tensor | None): ``[N, D]`` AudioLDM's L2-normalised CLAP text
            embedding, fed to the U-Net's class embedding (``class_embed_type="simple_projection"``);
            AudioLDM passes no ``encoder_hidden_states``.
        encoder_hidden_states_1 (torch.Tensor | None): ``[N, L, D]`` AudioLDM 2's second
            cross-attention stream (T5 states); ``encoder_hidden_states`` then holds GPT-2's
            generated states ``[N, 8, D_lm]``.
        encoder_attention_mask_1 (torch.Tensor | None): ``[N, L]`` 1/0 mask of the T5 states.
    """

    encoder_hidden_states: torch.Tensor | None = None
    text_embeds: torch.Tensor | None = None
    time_ids: torch.Tensor | None = None
    class_labels: torch.Tensor | None = None
    encoder_hidden_states_1: torch.Tensor | None = None
    encoder_attention_mask_1: torch.Tensor | None = None

    def _map(self, fn) -> "Conditioning":
        return Conditioning(**{f.name: None if (v := getattr(self, f.name)) is None else fn(v)
                               for f in dataclasses.fields(self)})

    def to(self, device=None, dtype: torch.dtype | None = None) -> "Conditioning":
        """Every field moved to ``device`` and (floating fields) cast to ``dtype``."""
        return self._map(lambda v: v.to(device=device, dtype=dtype if dtype is not None and v.is_floating_point() else None))

    def repeat(self, n: int) -> "Conditioning":
        """Every field's rows repeated ``n`` times (``[N, ...] -> [nN, ...]``)."""
        return self._map(lambda v: v.repeat(n, *[1] * (v.ndim - 1)))

    def rows(self, index) -> "Conditioning":
        """The rows ``index`` of every field."""
        return self._map(lambda v: v[index])

    def unet_kwargs(self) -> dict:
        """Keyword arguments of ``UNet2DConditionModel.forward`` (or AudioLDM 2's U-Net): the fields
        that are set (``encoder_hidden_states`` always, it is positional there)."""
        kw = {"encoder_hidden_states": self.encoder_hidden_states}
        if self.text_embeds is not None:
            kw["added_cond_kwargs"] = {"text_embeds": self.text_embeds, "time_ids": self.time_ids}
        for name in ("class_labels", "encoder_hidden_states_1", "encoder_attention_mask_1"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return kw


class Denoiser:
    """A U-Net as a denoiser ``(x_t, t, cond) -> prediction``.

    Args:
        unet: a ``UNet2DConditionModel`` (possibly wrapped by accelerate / DDP).
    """

    def __init__(self, unet: torch.nn.Module):
        self.unet = unet

    def __call__(self, x_t: torch.Tensor, t: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        return self.unet(x_t, t, **cond.unet_kwargs()).sample


@contextmanager
def adapters_off(module: torch.nn.Module):
    """Disable the LoRA adapters of a diffusers model (``disable_adapters``) or a peft model
    (``disable_adapter()``) inside the block, and enable them again after it."""
    from peft import PeftModel

    if isinstance(module, PeftModel):  # transformers models wrapped by get_peft_model (text trainer)
        with module.disable_adapter():
            yield
        return
    module.disable_adapters()
    try:
        yield
    finally:
        module.enable_adapters()


def base_view(module: torch.nn.Module) -> torch.nn.Module | None:
    """The module without its peft adapters, sharing every weight with it: a structural copy in
    which each LoRA-wrapped layer is replaced by its base layer (``get_base_layer``) and every
    parameter and buffer *is* the original tensor (no memory for weights). Numerically it is the
    module with adapters disabled — peft's disabled forward is exactly ``base_layer(x)`` — without
    the wrappers' per-layer Python work or toggling a flag on the trained module.

    Returns None when a view cannot stand in for the disabled adapters: no adapters, adapters
    merged into the base weights, parameters that are not the module's own (FSDP's flattened
    shards), or a module that does not copy."""
    import copy

    from peft.tuners.tuners_utils import BaseTunerLayer

    layers = [m for m in module.modules() if isinstance(m, BaseTunerLayer)]
    if not layers or any(getattr(m, "merged", False) for m in layers):
        return None
    shared = {id(t): t for t in [*module.parameters(), *module.buffers()]}
    try:
        view = copy.deepcopy(module, memo=dict(shared))
    except Exception:  # noqa: BLE001 — e.g. hooks or compiled wrappers that do not copy: toggle instead
        return None

    def strip(parent: torch.nn.Module) -> None:
        for name, child in list(parent.named_children()):
            if isinstance(child, BaseTunerLayer):
                setattr(parent, name, child.get_base_layer())
            else:
                strip(child)

    strip(view)
    if not all(id(t) in shared for t in [*view.parameters(), *view.buffers()]):
        return None
    return view  # train/eval flags as copied; requires_grad untouched (the tensors are the module's own)


class AdapterOffDenoiser(Denoiser):
    """The policy U-Net without its LoRA adapters, under ``no_grad``: the initial model.

    Runs a ``base_view`` of the U-Net (built at the first call, after the trainer has placed and
    cast the model), or, where no view stands in, the U-Net itself with its adapters switched off.

    Args:
        unet: the (unwrapped) policy U-Net holding peft adapters.
        view (bool): use a ``base_view`` when one stands in (default True).
    """

    def __init__(self, unet: torch.nn.Module, view: bool = True):
        super().__init__(unet)
        self._use_view = view
        self._view: torch.nn.Module | None = None

    def separate(self) -> bool:
        """Whether calls run a module of their own (the ``base_view``) rather than switching the
        policy's adapters off and on — only then may a call overlap the policy's forward."""
        if self._use_view and self._view is None:
            self._view = base_view(self.unet)
            self._use_view = self._view is not None
        return self._view is not None

    @torch.no_grad()
    def __call__(self, x_t, t, cond):
        if self.separate():
            return self._view(x_t, t, **cond.unet_kwargs()).sample
        with adapters_off(self.unet):
            return super().__call__(x_t, t, cond)


class FrozenDenoiser(Denoiser):
    """A frozen copy of the initial U-Net, under ``no_grad`` (optionally CPU-offloaded).

    Args:
        unet: the frozen copy. dtype (torch.dtype | None): its weights' dtype (e.g. fp16 under
            mixed precision); ``x_t`` and every conditioning field are cast to it, since no
            autocast wraps a copy.
    """

    def __init__(self, unet: torch.nn.Module, dtype: torch.dtype | None = None):
        super().__init__(unet)
        self.dtype = dtype

    @torch.no_grad()
    def __call__(self, x_t, t, cond):
        if self.dtype is not None and self.dtype != x_t.dtype:
            x_t, cond = x_t.to(self.dtype), cond.to(dtype=self.dtype)
        return super().__call__(x_t, t, cond)
