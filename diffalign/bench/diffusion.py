"""``diffalign bench diffusion --config CONFIG [--steps N] [--warmup N] [--no-cache] [--out F]``.

Throughput (pairs/s) and peak memory of the offline trainer's step — batch assembly, policy
forward/backward, reference forward, optimiser — with the latent + text-embedding cache and
without it (images decoded, VAE- and text-encoded every step). Peak memory is the CUDA peak
allocation on a GPU, else the process's peak resident set size (Linux ``VmHWM``), both reset
after set-up so they cover the training steps (warm-up included). The one-time caching pass is timed separately.
"""

from __future__ import annotations

import json
import platform
import resource
import statistics
import tempfile
import time
from pathlib import Path

__all__ = ["main", "bench_one"]


def _reset_peak() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
    except OSError:
        pass


def _rss_mib() -> float:
    """Current resident set size (Linux), or NaN."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def _peak_mib() -> tuple[float, str]:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20, "CUDA peak allocated"
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024, "peak RSS"
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "peak RSS (whole process)"


def bench_one(cfg, steps: int, warmup: int, cache: bool) -> dict:
    """Time ``steps`` optimiser steps after ``warmup`` of the config, with or without the cache."""
    import dataclasses

    from ..train.offline import DiffusionTrainer

    tmp = tempfile.mkdtemp(prefix="diffalign-bench-")
    loop = dataclasses.replace(cfg.train, output_dir=tmp, max_steps=warmup + steps, save_every=None, log_with=[],
                               resume=None, log_every=10**9)
    data = dataclasses.replace(cfg.data, cache=cache)
    cfg = dataclasses.replace(cfg, train=loop, data=data, eval=None)
    t0 = time.perf_counter()
    trainer = DiffusionTrainer(cfg)
    setup = time.perf_counter() - t0
    _reset_peak()
    rss0 = _rss_mib()
    trainer.train()
    times = trainer.step_times[warmup:]  # step boundaries after the warm-up steps
    peak, kind = _peak_mib()
    per_step = [b - a for a, b in zip(times, times[1:])]
    pairs = loop.batch_size * loop.grad_accum * trainer.acc.num_processes
    s = statistics.median(per_step)
    return {"cache": cache, "setup_s": round(setup, 2),
            "median_step_s": s, "mean_step_s": statistics.fmean(per_step), "pairs_per_s": pairs / s,
            "peak_mib": round(peak, 1), "peak_kind": kind, "rss_before_mib": round(rss0, 1), "steps": len(per_step), "pairs_per_step": pairs}


def main(args) -> int:
    import torch

    from ..train import load_config

    cfg = load_config(args.config)
    if cfg.trainer != "diffusion":
        raise ValueError(f"{args.config}: bench diffusion needs a trainer: diffusion config, got {cfg.trainer!r}")
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"
    import accelerate, diffusers, peft, transformers  # noqa: F401,E401 — imports out of the timed set-up

    from ..train import offline  # noqa: F401

    rows = [] if args.no_cache else [bench_one(cfg, args.steps, args.warmup, cache=True)]
    rows.append(bench_one(cfg, args.steps, args.warmup, cache=False))
    print(f"bench diffusion {args.config}: {cfg.model.path} ({cfg.data.resolution}px), "
          f"{'LoRA r' + str(cfg.model.lora.r) if cfg.model.lora else 'full fine-tuning'}, {rows[0]['pairs_per_step']} "
          f"pairs/step, {args.steps} timed steps after {args.warmup} warm-up; {device}")
    print(f"{'':14s} {'pairs/s':>9s} {'s/step':>8s} {'peak MiB':>9s} {'RSS before':>10s}  setup s")
    for r in rows:
        name = "latent cache" if r["cache"] else "no cache"
        print(f"{name:14s} {r['pairs_per_s']:9.2f} {r['median_step_s']:8.3f} {r['peak_mib']:9.1f} "
              f"{r['rss_before_mib']:10.1f}  {r['setup_s']:.1f}  ({r['peak_kind']}; set-up includes the caching pass)")
    if args.out:
        Path(args.out).write_text(json.dumps({"config": args.config, "device": device, "python": platform.python_version(),
                                              "torch": torch.__version__, "rows": rows}, indent=2))
    return 0
