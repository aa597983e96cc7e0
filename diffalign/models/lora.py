"""LoRA on a diffusers U-Net through peft, and saving it so plain diffusers loads it.

The adapters are added with ``unet.add_adapter`` (diffusers' peft integration), so the same
U-Net serves as policy (adapters on) and reference (``disable_adapters()``): no second U-Net.
The result is written with the pipeline class's ``save_lora_weights`` (with the adapter config
as metadata, so ``lora_alpha ≠ r`` survives) and loads with
``StableDiffusion[XL]Pipeline.from_pretrained(base).load_lora_weights(out)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["add_lora", "save_lora", "lora_parameters", "lora_targets"]


def add_lora(unet: torch.nn.Module, r: int, alpha: float, dropout: float, target_modules: list[str], init: str) -> None:
    """Add a ``default`` LoRA adapter to ``unet`` in place; only adapter weights stay trainable.

    Args:
        r (int): rank. alpha (float): ``lora_alpha`` (scale = alpha / r). dropout (float): adapter dropout.
        target_modules (list[str]): e.g. ``[to_k, to_q, to_v, to_out.0]`` (the diffusers DPO script).
        init (str): ``gaussian`` (diffusers DPO script) or ``true`` (peft default: B = 0).
    """
    from peft import LoraConfig

    if not hasattr(unet, "add_adapter"):
        raise ValueError(f"model.lora: {type(unet).__name__} has no adapter support in diffusers (no add_adapter); "
                         f"train it fully (model.lora: null)")
    unet.requires_grad_(False)
    have = lora_targets(unet)
    if not any(t in have or any(n.endswith("." + t) for n in _leaf_names(unet)) for t in target_modules):
        raise ValueError(f"model.lora.target_modules {list(target_modules)} matched no layer of the U-Net; its linear and "
                         f"convolution layers are named {', '.join(have)}")
    conf = LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout, target_modules=list(target_modules),
                      init_lora_weights="gaussian" if init == "gaussian" else True)
    unet.add_adapter(conf)


def _leaf_names(unet: torch.nn.Module) -> list[str]:
    return [n for n, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def lora_targets(unet: torch.nn.Module) -> list[str]:
    """The distinct short names (last path component, ``to_q``, ``conv1`` …) of the layers LoRA can wrap."""
    return sorted({n.rsplit(".", 1)[-1] if not n.endswith((".0", ".1")) else ".".join(n.split(".")[-2:])
                   for n in _leaf_names(unet)})


def lora_parameters(unet: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The adapter weights in diffusers' serialisation format (``…lora.down.weight`` keys)."""
    from diffusers.utils import convert_state_dict_to_diffusers
    from peft.utils import get_peft_model_state_dict

    return convert_state_dict_to_diffusers(get_peft_model_state_dict(unet))


def save_lora(unet: torch.nn.Module, pipeline_class, out: str | Path) -> Path:
    """Write ``pytorch_lora_weights.safetensors`` that ``load_lora_weights`` reads.

    Args:
        unet: the U-Net holding the ``default`` adapter (unwrapped).
        pipeline_class: the family's pipeline class (``Family.pipeline_class()``), whose
            ``save_lora_weights`` writes the file.
        out (str | Path): destination folder.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    layers = {k: v.detach().float().cpu().contiguous() for k, v in lora_parameters(unet).items()}
    meta = unet.peft_config["default"].to_dict()
    meta["target_modules"] = sorted(meta["target_modules"])  # a set in peft; metadata is JSON
    pipeline_class.save_lora_weights(out, unet_lora_layers=layers, unet_lora_adapter_metadata=meta,
                                             safe_serialization=True)
    return out
