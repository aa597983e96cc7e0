"""Feature maps of a frozen U-Net encoder, for noise-conditioned perceptual losses (NCP, arXiv 2406.17636).

``UNetFeatures(unet, level)`` is ``E(z, s, cond)``: the U-Net's own forward pass — same
timestep embedding, text conditioning, SDXL ``added_cond_kwargs`` — stopped as soon as the
requested blocks have run (``get_unet_middle_states`` of the NCP code, without copying diffusers'
forward): the output of the last down block (``down``), of the mid block (``mid``), or
``conv_in``, every down block and the mid block (``multi``). The weights are frozen; gradients
flow to the input ``z`` (the policy's prediction).
"""

from __future__ import annotations

import copy

import torch

from .denoiser import Conditioning

__all__ = ["UNetFeatures", "LEVELS"]

LEVELS = ("down", "mid", "multi")


class _Enough(Exception):
    """Raised by a forward hook once every requested feature has been captured."""


class UNetFeatures(torch.nn.Module):
    """Features of a frozen copy of a ``UNet2DConditionModel``.

    Args:
        unet: the U-Net to copy (the initial policy, before adapters are added).
        level (str): ``down``, ``mid`` or ``multi`` (see the module docstring).
        copy_unet (bool): deep-copy ``unet`` (default); False uses it as is (tests, shared copies).
    """

    def __init__(self, unet: torch.nn.Module, level: str = "mid", copy_unet: bool = True):
        super().__init__()
        if level not in LEVELS:
            raise ValueError(f"space.level must be one of {LEVELS}, got {level!r}")
        self.unet = (copy.deepcopy(unet) if copy_unet else unet).requires_grad_(False).eval()
        self.level = level
        if level == "down":
            self._taps = [self.unet.down_blocks[-1]]
        elif level == "mid":
            self._taps = [self.unet.mid_block]
        else:
            self._taps = [self.unet.conv_in, *self.unet.down_blocks, self.unet.mid_block]

    def train(self, mode: bool = True):  # the encoder stays in eval mode
        return super().train(False)

    def forward(self, z: torch.Tensor, s: torch.Tensor, cond: Conditioning) -> list[torch.Tensor]:
        """``[N, C, h, w]`` inputs at timesteps ``s`` ``[N]`` → the tapped features, in forward order."""
        dtype = next(self.unet.parameters()).dtype
        if z.dtype != dtype:
            z, cond = z.to(dtype), cond.to(dtype=dtype)
        feats: list[torch.Tensor] = []
        last = self._taps[-1]

        def hook(module, args, output):
            feats.append(output[0] if isinstance(output, tuple) else output)  # down blocks return (h, residuals)
            if module is last:
                raise _Enough

        handles = [m.register_forward_hook(hook) for m in self._taps]
        try:
            self.unet(z, s, **cond.unet_kwargs())
        except _Enough:
            pass
        finally:
            for h in handles:
                h.remove()
        if len(feats) != len(self._taps):
            raise RuntimeError(f"UNetFeatures: captured {len(feats)} of {len(self._taps)} feature maps")
        return feats
