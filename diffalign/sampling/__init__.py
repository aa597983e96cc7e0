"""Sampling: the one per-seed pipeline sampler (``pipeline.py``) and DDIM in tensors (``ddim.py``:
the step, its log-probability, sampling with per-step latents, inversion with per-sample timesteps).

Importing this package does not import torch; import the modules.
"""
