"""FLOPs of one Diffusion-DPO pair and model FLOPs utilisation (MFU).

``pair_flops`` counts, with ``torch.utils.flop_counter.FlopCounterMode`` on the bench's own
U-Net, what one pair costs in the LoRA step both programs run: the policy forward and backward
on the two noised images and the reference forward on them. The count is of the operations the
model really runs (matrix multiplies, convolutions, attention), not an estimate from the parameter
count, and is the same for the script and for us, so ``MFU = pairs/s · FLOPs/pair / peak``.
"""

from __future__ import annotations

__all__ = ["pair_flops", "peak_flops"]

# Dense peak FLOP/s per precision of common accelerators (vendor data sheets, no sparsity).
# fp32 is the plain CUDA-core rate (the script leaves TF32 off unless --allow_tf32).
_PEAKS = {  # name fragment: (fp32, bf16/fp16 tensor)
    "H200": (67e12, 989e12), "H100": (67e12, 989e12), "A100": (19.5e12, 312e12), "L40S": (91.6e12, 362e12),
    "L4": (30.3e12, 121e12), "A10G": (31.2e12, 125e12), "A10": (31.2e12, 125e12), "4090": (82.6e12, 165e12),
    "V100": (15.7e12, 125e12), "T4": (8.1e12, 65e12),
}


def peak_flops(device_name: str, precision: str) -> float | None:
    """The dense peak FLOP/s of a GPU by name for ``precision`` (``no`` = fp32), or None if unknown."""
    for frag, (fp32, half) in _PEAKS.items():
        if frag in device_name:
            return fp32 if precision == "no" else half
    return None


def pair_flops(model_dir: str, resolution: int, rank: int = 4, device: str = "cpu", dtype=None) -> float:
    """FLOPs of one preference pair: LoRA policy forward + backward on 2 images, reference forward on 2."""
    import copy

    import torch
    from diffusers import UNet2DConditionModel
    from torch.utils.flop_counter import FlopCounterMode

    from ..models.lora import add_lora

    unet = UNet2DConditionModel.from_pretrained(model_dir, subfolder="unet", torch_dtype=dtype or torch.float32).to(device)
    ref = copy.deepcopy(unet).requires_grad_(False)
    unet.requires_grad_(False)
    add_lora(unet, rank, rank, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    c = unet.config
    lat = resolution // 8
    x = torch.randn(2, c.in_channels, lat, lat, device=device, dtype=dtype)
    t = torch.tensor([500, 500], device=device)
    text = torch.randn(2, 77, c.cross_attention_dim, device=device, dtype=dtype)
    with FlopCounterMode(display=False) as fc:
        unet(x, t, text).sample.float().square().mean().backward()
        with torch.no_grad():
            ref(x, t, text)
    return float(fc.get_total_flops())
