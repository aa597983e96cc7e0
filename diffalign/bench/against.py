"""``diffalign bench diffusion --against diffusers-script PATH``: our offline trainer side by side
with diffusers' research script ``examples/research_projects/diffusion_dpo/train_diffusion_dpo.py``.

Both programs train the same random-weight pipeline (``bench/world.py``: ``--arch sd-small``, the
24.25 M-param U-Net, or ``sd15``, the SD 1.5 architectures) on the same Pick-a-Pic-style pairs with
the same numerics: fp32, LoRA r = α on ``to_q/to_k/to_v/to_out.0`` (gaussian init), AdamW lr 5e-4
constant, weight decay 1e-2, gradient clipping 1, random h-flip, centre crop, the same batch of
pairs and number of steps, Eq. 14 with paper β (the script's ``--beta_dpo`` is β/2). Each run is a
fresh process timed by ``bench/step_timer.py`` (an optimiser post-step hook; steady pairs/s over
steps ``skip+1..N``, peak RSS of the process or CUDA peak allocation). Runs are interleaved —
script, ours without the cache, ours with it, then ours with the cache and each ``--ablate``
override (one row per speed option), for each batch, ``--repeats`` times — and medians are
compared, since run-to-run noise on a shared machine is ±10% (±25% seen on this 2-core one).

Ours may add speed options (``--ours-set train.compile=true``…); they are printed with the figures.
"""

from __future__ import annotations

import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

from .step_timer import steady_rate

__all__ = ["main", "HOW_TO_GET", "paired_ratios"]

HOW_TO_GET = """\
bench diffusion --against diffusers-script needs a copy of diffusers' research script (it is not in the pip package):
  git clone --depth 1 https://github.com/huggingface/diffusers /tmp/diffusers
  diffalign bench diffusion --against diffusers-script /tmp/diffusers/examples/research_projects/diffusion_dpo/train_diffusion_dpo.py
It imports wandb at module top and logs to TensorBoard: pip install wandb tensorboard
(measured against diffusers commit 58eb52c0, 983 lines)."""


def _env(work: Path) -> dict:
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="disabled",
               WANDB_DISABLED="true", TOKENIZERS_PARALLELISM="false", PYTHONUNBUFFERED="1",
               HF_HOME=str(work / "hf_home"))
    return env


def _our_config(model: Path, data: Path, out: Path, batch: int, steps: int, res: int, cache: bool, beta: float,
                lr: float, rank: int, sets: list[str], precision: str = "no", cache_dir: Path | None = None) -> dict:
    cfg = {
        "trainer": "diffusion",
        "method": {"name": "diffusion_dpo", "t_min": 0, "t_max": 1000},
        "model": {"path": str(model), "lora": {"r": rank, "alpha": rank, "init": "gaussian"}},
        "reference": {"strategy": "adapter_off"},
        "data": {"source": str(data / "data" / "train-00000-of-00001.parquet"), "resolution": res, "crop": "center",
                 "hflip": True, "ties": "drop", "cache": cache, "cache_dir": str(cache_dir or out / "cache")},
        "loss": {"kinds": "sigmoid", "beta": beta},
        "train": {"output_dir": str(out / "run"), "seed": 0, "batch_size": batch, "max_steps": steps, "lr": lr,
                  "lr_schedule": "constant", "weight_decay": 0.01, "max_grad_norm": 1.0, "log_every": 1,
                  "mixed_precision": precision},
    }
    for s in sets:  # key.path=value, the value as YAML
        import yaml

        key, _, val = s.partition("=")
        node = cfg
        *parents, leaf = key.split(".")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = yaml.safe_load(val)
    return cfg


def _run(cmd: list[str], env: dict, log: Path, timing: Path) -> dict:
    with open(log, "w") as f:
        rc = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
    rec = json.loads(timing.read_text()) if timing.is_file() else {"step_end_s": [], "exit": rc}
    rec["rc"] = rc
    return rec


def _peer_losses(run_dir: Path) -> tuple[float | None, float | None]:
    """First and last ``loss`` the script logged to TensorBoard (None when unreadable)."""
    try:
        from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    except ImportError:
        return None, None
    for ev in sorted(run_dir.rglob("events.out.tfevents.*")):
        acc = EventAccumulator(str(ev))
        acc.Reload()
        if "loss" in acc.Tags().get("scalars", []):
            vals = [e.value for e in acc.Scalars("loss")]
            return vals[0], vals[-1]
    return None, None


def _our_losses(run_dir: Path) -> tuple[float | None, float | None]:
    f = run_dir / "metrics.jsonl"
    if not f.is_file():
        return None, None
    vals = [json.loads(x)["loss"] for x in f.read_text().splitlines() if x.strip()]
    return (vals[0], vals[-1]) if vals else (None, None)


def _check_peer_deps(py: str) -> str | None:
    r = subprocess.run([py, "-c", "import wandb, tensorboard"], capture_output=True, text=True)
    return None if r.returncode == 0 else ("the script imports wandb at module top and logs to TensorBoard; "
                                           f"install both into {py}: pip install wandb tensorboard")


def main(args) -> int:
    from .world import build_pairs, build_pipeline

    against = args.against or []
    if against[0] != "diffusers-script":
        raise ValueError(f"bench diffusion --against takes diffusers-script PATH, got {against[0]!r}")
    if len(against) < 2:
        print(HOW_TO_GET)
        return 2
    script = Path(against[1]).resolve()
    if not script.is_file():
        print(f"no such file: {script}\n\n{HOW_TO_GET}")
        return 2
    py = sys.executable
    missing = _check_peer_deps(py) if "import wandb" in script.read_text(errors="replace") else None
    if missing:
        print(f"error: {missing}", file=sys.stderr)
        return 2
    res = args.resolution or (128 if args.arch == "sd-small" else 256)
    work = Path(args.workdir or f"outputs/bench/against-{args.arch}-{res}").resolve()
    model, data = work / "model", work / "pairs"
    info = build_pipeline(model, args.arch, res)
    build_pairs(data, args.pairs, res)
    env = _env(work)
    timer = [py, "-m", "diffalign.bench.step_timer"]
    beta, lr, rank, skip = 5000.0, 5e-4, 4, args.skip
    prec = args.mixed_precision
    flops = None
    try:
        import torch

        from .flops import pair_flops

        dev = "cuda" if torch.cuda.is_available() else "cpu"
        flops = pair_flops(str(model), res, rank, dev, {"no": None, "fp16": torch.float16, "bf16": torch.bfloat16}[prec])
    except Exception as e:  # noqa: BLE001 — the figures stand without it
        print(f"[bench] FLOP count failed ({type(e).__name__}: {e}); no MFU")
    # (name, cache, extra overrides): the script, ours without / with the cache, then each --ablate
    # override on top of ours with the cache — one row per change, measured in the same interleaving
    variants = [("script", None, [])] + ([] if args.cache == "on" else [("ours_cache_off", False, [])]) + \
               ([] if args.cache == "off" else [("ours_cache_on", True, [])]) + \
               [(f"+{a}", True, [a]) for a in args.ablate or []]
    print(f"bench diffusion --against diffusers-script: {args.arch} ({info['unet_params'] / 1e6:.2f} M-param U-Net, "
          f"VAE {info['vae_params'] / 1e6:.2f} M) at {res} px, LoRA r{rank}, fp32, lr {lr:g}, β {beta:g} "
          f"(script --beta_dpo {int(beta / 2)}), h-flip, {args.steps} steps, pairs/s over steps {skip + 1}..{args.steps}, "
          f"{args.repeats} interleaved repeats; {_device()}, precision {'fp32' if prec == 'no' else prec}"
          + (f"; {flops / 1e9:.1f} GFLOP per pair" if flops else "")
          + (f"; ours with {' '.join(args.ours_set)}" if args.ours_set else "")
          + (f"; script with {' '.join(args.script_args)}" if args.script_args else "")
          + "\n  (the latent cache is built once, by the first run that uses it, and shared by the later ones)")
    rows = []
    for rep in range(1, args.repeats + 1):
        for b in args.batch:
            for vi, (name, cache, extra) in enumerate(variants):
                who = "script" if name == "script" else "ours"
                tag = name if name[0] != "+" else f"ablate{vi}"
                out = work / "runs" / f"{tag}_b{b}_rep{rep}"
                if out.exists():
                    import shutil

                    shutil.rmtree(out)
                out.mkdir(parents=True)
                timing = out / "step_times.json"
                if who == "script":
                    cmd = [*timer, "--out", str(timing), "--", str(script), "--pretrained_model_name_or_path", str(model),
                           "--dataset_name", str(data), "--dataset_split_name", "train", "--output_dir", str(out / "run"),
                           "--resolution", str(res), "--train_batch_size", str(b), "--max_train_steps", str(args.steps),
                           "--mixed_precision", prec, "--seed", "0", "--checkpointing_steps", "100000000",
                           "--report_to", "tensorboard", "--dataloader_num_workers", "0", "--beta_dpo", str(int(beta / 2)),
                           "--learning_rate", str(lr), "--rank", str(rank), "--lr_scheduler", "constant",
                           *shlex.split(args.script_args)]
                else:
                    cfg = _our_config(model, data, out, b, args.steps, res, cache, beta, lr, rank,
                                      [*(args.ours_set or []), *extra], prec, work / "cache")
                    (out / "cfg.yaml").write_text(json.dumps(cfg, indent=1))  # JSON is YAML
                    cmd = [*timer, "--out", str(timing), "--", "-m", "diffalign.cli", "train", str(out / "cfg.yaml")]
                rec = _run(cmd, env, out / "log.txt", timing)
                rate = steady_rate(rec["step_end_s"], b, skip)
                first, last = (_peer_losses if who == "script" else _our_losses)(out / "run")
                mem = rec.get("cuda_peak_allocated_mib") or rec.get("peak_rss_mib")
                step_mem = rec.get("cuda_peak_steps_mib") or rec.get("peak_rss_steps_mib")  # loading excluded
                row = {"who": name, "batch": b, "rep": rep, "pairs_per_s": rate, "peak_mib": mem,
                       "step_peak_mib": step_mem, "rc": rec["rc"],
                       "steps": len(rec["step_end_s"]), "t_first_step_s": rec["step_end_s"][0] if rec["step_end_s"] else None,
                       "loss_first": first, "loss_last": last}
                rows.append(row)
                print(f"  {name:28s} b{b} rep{rep}: " + (f"{rate:6.3g} pairs/s" if rate else "   n/a pairs/s")
                      + f", peak {mem:.0f} MiB (steps {step_mem or float('nan'):.0f}), first step ends at {row['t_first_step_s'] or float('nan'):.1f} s, loss "
                      f"{_f(first)} → {_f(last)}" + ("" if rec["rc"] == 0 else f"  [exit {rec['rc']}: see {out / 'log.txt'}]"),
                      flush=True)
    _summary(rows, args.batch, flops, prec)
    if args.out:
        Path(args.out).write_text(json.dumps({"arch": args.arch, "resolution": res, "model": info, "rows": rows,
                                              "ours_set": args.ours_set, "device": _device(),
                                              "precision": prec, "pair_flops": flops}, indent=1))
    return 0 if all(r["rc"] == 0 for r in rows) else 1


def _f(x) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _device() -> str:
    import torch

    return torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU ({torch.get_num_threads()} threads)"


def paired_ratios(rows: list[dict], batch: int, name: str) -> list[float]:
    """``name``'s pairs/s over the script's in the same repeat, one ratio per repeat: robust to the
    machine speeding up or slowing down between repeats, which shifts both runs of a repeat alike."""
    script = {r["rep"]: r["pairs_per_s"] for r in rows if r["batch"] == batch and r["who"] == "script" and r["pairs_per_s"]}
    return [r["pairs_per_s"] / script[r["rep"]] for r in rows
            if r["batch"] == batch and r["who"] == name and r["pairs_per_s"] and r["rep"] in script]


def _summary(rows: list[dict], batches: list[int], flops: float | None = None, prec: str = "no") -> None:
    import torch

    from .flops import peak_flops

    peak = peak_flops(torch.cuda.get_device_name(), prec) if torch.cuda.is_available() else None
    print(f"\n{'batch':>5s} {'program':28s} {'median pairs/s':>14s} {'× script':>9s} {'paired × script [range]':>24s}"
          f" {'median peak MiB':>15s} {'× script':>9s} {'steps only':>10s} {'× script':>9s} {'TFLOP/s':>8s} {'MFU':>6s}")
    for b in batches:
        med = {}
        for name in dict.fromkeys(r["who"] for r in rows if r["batch"] == b):
            rates = [r["pairs_per_s"] for r in rows if r["batch"] == b and r["who"] == name and r["pairs_per_s"]]
            mems = [r["peak_mib"] for r in rows if r["batch"] == b and r["who"] == name and r["peak_mib"]]
            steps = [r["step_peak_mib"] for r in rows if r["batch"] == b and r["who"] == name and r.get("step_peak_mib")]
            med[name] = tuple(statistics.median(v) if v else None for v in (rates, mems, steps))
        base = med.get("script", (None, None, None))
        for name, (rate, mem, smem) in med.items():
            rx = f"{rate / base[0]:.2f}×" if rate and base[0] else "—"
            mx = f"{mem / base[1]:.2f}×" if mem and base[1] else "—"
            sx = f"{smem / base[2]:.2f}×" if smem and base[2] else "—"
            pr = paired_ratios(rows, b, name) if name != "script" else []
            px = f"{statistics.median(pr):.2f}× [{min(pr):.2f}, {max(pr):.2f}]" if pr else "—"
            achieved = rate * flops if rate and flops else None
            print(f"{b:5d} {name:28s} {rate or float('nan'):14.3g} {rx:>9s} {px:>24s} {mem or float('nan'):15.0f} {mx:>9s}"
                  f" {smem or float('nan'):10.0f} {sx:>9s}"
                  f" {achieved / 1e12 if achieved else float('nan'):8.3f} "
                  + (f"{achieved / peak:6.1%}" if achieved and peak else f"{'n/a':>6s}"))
