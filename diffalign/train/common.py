"""Pieces every trainer shares: accelerator, optimiser and schedule, checkpoints, logging.

Checkpoints are written by this module, not pickled: trainable weights, optimiser state and
RNG states go to safetensors, scalars to JSON. A checkpoint is written to a temporary folder
and renamed into place, so a kill during a save leaves the previous checkpoint valid.
"""

from __future__ import annotations

import json
import math
import os
import random
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from .config_common import LoopConfig

__all__ = [
    "make_accelerator",
    "make_optimizer",
    "make_scheduler",
    "save_checkpoint",
    "load_checkpoint",
    "find_checkpoint",
    "format_metrics",
]

CKPT_PREFIX = "checkpoint-"


def make_accelerator(loop: LoopConfig):
    """An ``accelerate.Accelerator`` for the loop's precision, accumulation and trackers."""
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration

    if loop.num_threads:
        torch.set_num_threads(loop.num_threads)
    out = Path(loop.output_dir)
    return Accelerator(
        gradient_accumulation_steps=loop.grad_accum,
        mixed_precision=loop.mixed_precision,
        log_with=loop.log_with or None,
        project_config=ProjectConfiguration(project_dir=str(out), logging_dir=str(out / "logs")),
    )


def make_optimizer(params: Iterable[torch.nn.Parameter], loop: LoopConfig) -> torch.optim.Optimizer:
    """AdamW (or bitsandbytes AdamW8bit when ``use_8bit_adam``) over trainable parameters."""
    params = [p for p in params if p.requires_grad]
    if not params:
        raise ValueError("no trainable parameters")
    kw = dict(lr=loop.lr, betas=tuple(loop.adam_betas), eps=loop.adam_eps, weight_decay=loop.weight_decay)
    if loop.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise ImportError("train.use_8bit_adam needs the bitsandbytes package (CUDA): pip install bitsandbytes") from None
        return bnb.optim.AdamW8bit(params, **kw)
    return torch.optim.AdamW(params, **kw)


def make_scheduler(opt: torch.optim.Optimizer, loop: LoopConfig, total_steps: int):
    """Linear warm-up, then constant, linear or cosine decay to 0 at ``total_steps``."""

    def factor(step: int) -> float:
        if step < loop.warmup_steps:
            return (step + 1) / loop.warmup_steps
        if loop.lr_schedule == "constant":
            return 1.0
        frac = (step - loop.warmup_steps) / max(1, total_steps - loop.warmup_steps)
        frac = min(max(frac, 0.0), 1.0)
        return 1.0 - frac if loop.lr_schedule == "linear" else 0.5 * (1 + math.cos(math.pi * frac))

    return torch.optim.lr_scheduler.LambdaLR(opt, factor)


def _flatten_optimizer(state: dict) -> tuple[dict, dict]:
    tensors, meta = {}, {"param_groups": state["param_groups"], "scalars": {}}
    for idx, s in state["state"].items():
        for k, v in s.items():
            if isinstance(v, torch.Tensor):
                tensors[f"state.{idx}.{k}"] = v.detach().contiguous().cpu()
            else:
                meta["scalars"][f"{idx}.{k}"] = v
    return tensors, meta


def _unflatten_optimizer(tensors: dict, meta: dict) -> dict:
    state: dict = {}
    for key, v in tensors.items():
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    for key, v in meta["scalars"].items():
        idx, k = key.split(".", 1)
        state.setdefault(int(idx), {})[k] = v
    return {"state": state, "param_groups": meta["param_groups"]}


def _rng_state() -> tuple[dict, dict]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda.{i}"] = s
    np_state = np.random.get_state()
    meta = {"python": repr(random.getstate()), "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    return tensors, meta


def _set_rng_state(tensors: dict, meta: dict) -> None:
    import ast

    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[k] for k in sorted(k for k in tensors if k.startswith("cuda."))]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    random.setstate(ast.literal_eval(meta["python"]))
    n = meta["numpy"]
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), *n[2:]))


def save_checkpoint(
    out_dir: str | Path,
    step: int,
    trainable: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    state: dict,
    keep: int = 2,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write ``out_dir/checkpoint-<step>`` atomically and prune to the newest ``keep``.

    Args:
        trainable: name → tensor of the trainable weights (what changes during training).
        state: JSON-serialisable trainer state (step, epoch, loss state, …).
        tensors: more tensors of the trainer state (e.g. a reference pool), written to
            ``state.safetensors``.
    """
    out_dir = Path(out_dir)
    final = out_dir / f"{CKPT_PREFIX}{step:08d}"
    tmp = out_dir / f".tmp-{CKPT_PREFIX}{step:08d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().contiguous().cpu() for k, v in trainable.items()}, tmp / "trainable.safetensors")
    opt_t, opt_meta = _flatten_optimizer(optimizer.state_dict())
    save_file(opt_t, tmp / "optimizer.safetensors")
    rng_t, rng_meta = _rng_state()
    save_file(rng_t, tmp / "rng.safetensors")
    if tensors:
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp / "state.safetensors")
    meta = {"step": step, "trainer": state, "optimizer": opt_meta, "rng": rng_meta, "scheduler": scheduler.state_dict()}
    (tmp / "state.json").write_text(json.dumps(meta))
    (tmp / "COMPLETE").write_text("ok")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in sorted(out_dir.glob(f"{CKPT_PREFIX}*"))[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def find_checkpoint(out_dir: str | Path, resume: str | None) -> Path | None:
    """Resolve ``resume`` (``latest`` or a path) to a complete checkpoint folder, or None."""
    if resume is None:
        return None
    if resume != "latest":
        path = Path(resume)
        if not (path / "COMPLETE").exists():
            raise FileNotFoundError(f"train.resume: {path} is not a complete checkpoint (no COMPLETE marker)")
        return path
    done = [p for p in sorted(Path(out_dir).glob(f"{CKPT_PREFIX}*")) if (p / "COMPLETE").exists()]
    return done[-1] if done else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, scheduler) -> dict:
    """Restore weights, optimiser, schedule and RNG; returns the trainer state dict."""
    meta = json.loads((path / "state.json").read_text())
    weights = load_file(path / "trainable.safetensors")
    missing = set(weights) - {n for n, _ in model.named_parameters()}
    if missing:
        raise ValueError(f"{path}: checkpoint has weights the model lacks, e.g. {sorted(missing)[:3]}")
    params = dict(model.named_parameters())
    with torch.no_grad():
        for k, v in weights.items():
            params[k].copy_(v)
    optimizer.load_state_dict(_unflatten_optimizer(load_file(path / "optimizer.safetensors"), meta["optimizer"]))
    scheduler.load_state_dict(meta["scheduler"])
    _set_rng_state(load_file(path / "rng.safetensors"), meta["rng"])
    extra = load_file(path / "state.safetensors") if (path / "state.safetensors").is_file() else {}
    return {"step": meta["step"], **meta["trainer"], "_tensors": extra}


def format_metrics(m: dict[str, float]) -> str:
    """Short one-line rendering for progress bars."""
    keys = ["loss", "rewards/accuracies", "rewards/margins", "implicit_acc", "lr"]
    return " ".join(f"{k.split('/')[-1]}={m[k]:.4g}" for k in keys if k in m)
