"""Model families, one object per family: ``sd`` (SD 1.x/2.x), ``sdxl``, ``audioldm`` and ``audioldm2``.

A family loads a pipeline folder into ``Components``, encodes prompts and samples, builds the
U-Net conditioning, names its pipeline class and saves full pipelines and LoRA adapters. Add a
family with one file here and one line in ``FAMILIES``. Training uses a ``DDPMScheduler``
built from the pipeline's scheduler config (same betas and ``prediction_type``), whatever
sampler the pipeline ships with.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..loading import resolve_pretrained
from .audioldm import AudioLDM
from .audioldm2 import AudioLDM2
from .base import Components, Family
from .sd import SD
from .sdxl import SDXL

__all__ = ["FAMILIES", "Components", "Family", "get_family", "detect_family", "load_components"]

FAMILIES: dict[str, type[Family]] = {"sd": SD, "sdxl": SDXL, "audioldm": AudioLDM, "audioldm2": AudioLDM2}


def get_family(name: str) -> Family:
    """The family object registered under ``name``."""
    if name not in FAMILIES:
        raise ValueError(f"model.family must be one of {sorted(FAMILIES)} or auto, got {name!r}")
    return FAMILIES[name]()


def detect_family(path: str | Path) -> str:
    """The family of a pipeline folder, from its ``model_index.json`` (pipeline class, or a second text
    encoder for SDXL)."""
    index = Path(path) / "model_index.json"
    if not index.is_file():
        raise FileNotFoundError(f"{path}: not a diffusers pipeline folder (no model_index.json)")
    info = json.loads(index.read_text())
    for name, fam in FAMILIES.items():
        if info.get("_class_name") == fam.pipeline_class_name:
            return name
    if "XL" in info.get("_class_name", "") or (info.get("text_encoder_2") or [None])[0]:
        return "sdxl"
    return "sd"


def load_components(path: str, family: str = "auto", vae: str | None = None, dtype: str = "float32",
                    vae_dtype: str = "float32", prediction_type: str = "auto", trust_pickle: bool = False) -> Components:
    """Load a pipeline folder (or a hub id already in the HF cache) through its family's ``load``
    (safetensors only unless ``trust_pickle``)."""
    root = resolve_pretrained(path, "model.path")
    return get_family(detect_family(root) if family == "auto" else family).load(root, vae, dtype, vae_dtype,
                                                                                 prediction_type, trust_pickle)

