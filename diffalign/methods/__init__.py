"""Diffusion preference methods, one per file; explicit registry name → "module:Class".

Each method implements the ``Method`` protocol of ``base.py``: it declares what it needs
(reference, rollouts, reward, inversion, winners) and computes a loss from a batch with the shared
core. Trainers branch on the declarations, never on names.
"""

import importlib

METHODS: dict[str, str] = {
    "diffusion_dpo": "diffalign.methods.diffusion_dpo:DiffusionDPO",
    "inpo": "diffalign.methods.inpo:InPO",
    "dragon": "diffalign.methods.dragon:Dragon",
    "seppo": "diffalign.methods.seppo:SePPO",
}

__all__ = ["METHODS", "method_class"]


def method_class(name: str):
    """The class registered under ``name`` (imports its module)."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r} (known: {', '.join(sorted(METHODS))})")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module), cls)
