"""Diffusion preference methods, one per file; explicit registry name → "module:Class".

Each method implements the ``Method`` protocol of ``base.py``: it declares what it needs
(reference, rollouts, reward, inversion) and computes a loss from a batch with the shared
core. Trainers branch on the declarations, never on names.
"""

METHODS: dict[str, str] = {}

__all__ = ["METHODS"]
