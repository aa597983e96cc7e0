"""Kill-and-resume bench: ``diffalign bench kill --config CONFIG [--kills 24]``.

It measures the promise "a run killed at any moment resumes to exactly the weights it would have
had". One uninterrupted run of the config is the reference. Then, for each kill point, a fresh run
of the same config (its own output and cache folders, ``train.resume=latest``) is SIGKILLed and
the same command is run again until it exits 0. A chain passes when

* every tensor of every safetensors file under ``final/`` is bit-identical to the reference's,
* ``metrics.jsonl`` holds each step once, the reference's steps, with the reference's losses,
* ``summary.json`` is written (with the reference's evaluation figures, where the config
  evaluates) and no temporary or trash folder is left behind.

Kill points are drawn three ways: at a random time uniform over the reference run's wall time (so
they land where the run spends its time, start-up included), at a random time after start-up (from
the reference's first logged step), and (``--site-fraction``) at fault sites
(:mod:`diffalign.faults`: latent or reference caching, between an update and its metrics line,
inside a checkpoint write, while pruning, inside the final save, during the closing evaluation),
each at a random one of the times the reference run reached it.
The phase each kill hit is read from what it left on disk. The figures are printed as a table and
optionally written as JSON (``--out``).
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import torch
import yaml
from safetensors import safe_open

__all__ = ["main", "classify", "compare_final"]

_LOSS_KEYS = ("loss", "loss/total")


def _cmd(config: str, out: Path, trainer: str) -> list[str]:
    over = [f"train.output_dir={out}", "train.resume=latest"]
    if trainer == "diffusion":
        over.append(f"data.cache_dir={out / 'cache'}")
    elif trainer == "text":
        over.append(f"reference.cache_dir={out / 'refcache'}")
    return [sys.executable, "-m", "diffalign.cli", "train", config, *over]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIFFALIGN_FAULT")}
    return {**env, "PYTHONUNBUFFERED": "1", "HF_HUB_OFFLINE": "1", **extra}


def _run(cmd: list[str], log: Path, env: dict, kill_after: float | None = None,
         watch: Path | None = None) -> tuple[int, float, float | None]:
    """Run ``cmd`` (its own process group), SIGKILL it after ``kill_after`` s.

    Returns (return code, seconds, seconds until ``watch`` first existed or None)."""
    t0 = time.perf_counter()
    seen = None
    with open(log, "ab") as fh:
        p = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        while True:
            now = time.perf_counter() - t0
            if watch is not None and seen is None and watch.exists():
                seen = now
            wait = 0.05 if watch is not None and seen is None else None
            if kill_after is not None:
                wait = max(0.0, kill_after - now) if wait is None else min(wait, max(0.0, kill_after - now))
            try:
                rc = p.wait(timeout=wait)
                break
            except subprocess.TimeoutExpired:
                if kill_after is not None and time.perf_counter() - t0 >= kill_after:
                    os.killpg(p.pid, signal.SIGKILL)
                    rc = p.wait()
                    break
    return rc, time.perf_counter() - t0, seen


def _metrics(out: Path) -> list[dict]:
    f = out / "metrics.jsonl"
    rows = []
    for line in (f.read_text().splitlines() if f.is_file() else []):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            rows.append({"step": "torn"})
    return rows


def classify(out: Path, trainer: str, max_steps: int) -> str:
    """The phase a kill landed in, read from the folder it left."""
    if any(out.glob(".trash-*")):
        return "pruning an old checkpoint"
    if any(out.glob(".tmp-checkpoint-*")):
        return "inside a checkpoint write"
    if (out / ".tmp-final").exists():
        return "inside the final save"
    if (out / "final" / "COMPLETE").is_file():
        return "closing evaluation" if not (out / "summary.json").is_file() else "exiting (summary written)"
    steps = len([r for r in _metrics(out) if isinstance(r.get("step"), int)])
    if steps == 0:
        if trainer == "diffusion":
            cache = [d for d in (out / "cache").glob("*") if d.is_dir()]
            if cache and not all((d / "COMPLETE").is_file() for d in cache):
                return "latent caching"
            return "start-up (after caching)" if cache else "start-up (loading)"
        if trainer == "text":
            ref = list((out / "refcache").glob("*.safetensors"))
            return "start-up / reference caching" if len(ref) < 2 else "start-up / held-out evaluation"
        return "start-up / first rollout"
    if steps >= max_steps:
        return "after the last step (evaluation or final save)"
    return "training steps"


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt") as h:
        return {k: h.get_tensor(k) for k in h.keys()}


def compare_final(ref: Path, got: Path) -> tuple[bool, str]:
    """Whether every tensor of every safetensors file under ``ref/final`` equals ``got/final`` bit for bit."""
    files = sorted(p.relative_to(ref) for p in (ref / "final").rglob("*.safetensors"))
    if not files:
        return False, "the reference has no safetensors under final/"
    n = 0
    for rel in files:
        if not (got / rel).is_file():
            return False, f"{rel} is missing"
        a, b = _tensors(ref / rel), _tensors(got / rel)
        if a.keys() != b.keys():
            return False, f"{rel}: different tensor names"
        for k in a:
            x, y = a[k].contiguous(), b[k].contiguous()
            if x.dtype != y.dtype or x.shape != y.shape or not torch.equal(x.view(torch.uint8), y.view(torch.uint8)):
                return False, f"{rel}:{k} differs (max abs {float((x.float() - y.float()).abs().max()):.3g})"
            n += 1
    return True, f"{n} tensors in {len(files)} files identical"


def _check_chain(ref: Path, out: Path) -> dict:
    same, why = compare_final(ref, out)
    rm, gm = _metrics(ref), _metrics(out)
    steps = [r.get("step") for r in gm]
    metrics_ok = steps == [r.get("step") for r in rm] and len(set(steps)) == len(steps)
    loss_ok = metrics_ok and all(a.get(k) == b.get(k) for a, b in zip(rm, gm) for k in _LOSS_KEYS)
    summary_ok = (out / "summary.json").is_file()
    eval_ok = None
    if summary_ok:
        rs, gs = json.loads((ref / "summary.json").read_text()), json.loads((out / "summary.json").read_text())
        if isinstance(rs.get("eval"), dict):
            eval_ok = _strip(rs["eval"]) == _strip(gs.get("eval"))
    left = [p.name for p in out.glob(".tmp-*")] + [p.name for p in out.glob(".trash-*")]
    return {"identical": same, "detail": why, "metrics_once": metrics_ok, "losses_equal": loss_ok,
            "summary": summary_ok, "eval_equal": eval_ok, "leftovers": left}


def _strip(d):
    """Evaluation figures without timings and paths (which differ between output folders)."""
    if isinstance(d, dict):
        return {k: _strip(v) for k, v in d.items() if "second" not in k and k not in ("out", "output", "grid", "dir")}
    if isinstance(d, list):
        return [_strip(v) for v in d]
    if isinstance(d, str) and ("/" in d):
        return None
    return d


def main(args) -> int:
    cfg = yaml.safe_load(Path(args.config).read_text())
    trainer = cfg.get("trainer", "diffusion")
    max_steps = int(cfg["train"]["max_steps"])
    work = Path(args.workdir or f"outputs/killbench/{Path(args.config).stem}")
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = random.Random(args.seed)

    ref = work / "ref"
    faults = work / "ref-sites.log"
    rc, t_ref, t_train = _run(_cmd(args.config, ref, trainer), work / "ref.log", _env(DIFFALIGN_FAULT_LOG=str(faults)),
                              watch=ref / "metrics.jsonl")
    if rc != 0:
        print(f"error: the uninterrupted run failed (exit {rc}); see {work / 'ref.log'}", file=sys.stderr)
        return 1
    hits = Counter(faults.read_text().split()) if faults.is_file() else Counter()
    t_train = t_train or 0.0
    print(f"[kill] reference run: {t_ref:.1f} s (first step logged at {t_train:.1f} s); "
          f"fault sites reached: {dict(hits)}")

    # Kill points: a share at fault sites; the rest at a random time, half of them uniform over the
    # whole run, half uniform over its part after start-up (from the first logged step).
    n_site = round(args.kills * args.site_fraction) if hits else 0
    n_time = args.kills - n_site
    plan = [("time", None)] * (n_time - n_time // 2) + [("train-time", None)] * (n_time // 2)
    sites = sorted(hits)
    plan += [("site", f"{s}:{rng.randint(1, hits[s])}") for s in (rng.choice(sites) for _ in range(n_site))]
    rng.shuffle(plan)

    rows, attempts = [], 0
    while len(rows) < args.kills and attempts < 3 * args.kills:
        kind, site = plan[len(rows)]
        attempts += 1
        out = work / f"chain-{attempts:02d}"
        log = work / f"chain-{attempts:02d}.log"
        cmd = _cmd(args.config, out, trainer)
        if kind != "site":
            at = rng.uniform(0.0 if kind == "time" else min(t_train, t_ref), t_ref)
            rc, t, _ = _run(cmd, log, _env(), kill_after=at)
            where = f"{at:.2f} s"
        else:
            rc, t, _ = _run(cmd, log, _env(DIFFALIGN_FAULT=site))
            where = f"{site} ({t:.2f} s)"
        if rc == 0:  # the run finished before the kill: not a kill point; draw the next within its time
            t_ref = min(t_ref, t)
            shutil.rmtree(out, ignore_errors=True)
            log.unlink(missing_ok=True)
            continue
        phase = classify(out, trainer, max_steps)
        resumes, t_resume = 0, 0.0
        while True:
            resumes += 1
            rc, t, _ = _run(cmd, log, _env())
            t_resume += t
            if rc == 0 or resumes >= 3:
                break
        warned = sum("[resume] warning" in line for line in log.read_text(errors="replace").splitlines())
        row = {"chain": attempts, "kind": kind, "at": where, "phase": phase, "resume_exit": rc,
               "resume_seconds": round(t_resume, 1), "fallback_warnings": warned}
        row.update(_check_chain(ref, out) if rc == 0 else {"identical": False, "detail": f"resume exit {rc}"})
        rows.append(row)
        mark = "ok " if row["identical"] and row.get("metrics_once") and row.get("summary") else "BAD"
        print(f"[kill] {len(rows):2d}/{args.kills} {mark} {kind:10s} {where:28s} {phase:40s} {row['detail']}",
              flush=True)
        if not args.keep and mark == "ok ":
            shutil.rmtree(out, ignore_errors=True)

    ok = [r for r in rows if r["identical"] and r.get("metrics_once") and r.get("summary") and not r.get("leftovers")]
    phases = Counter(r["phase"] for r in rows)
    print(f"\n{args.config}: {len(ok)}/{len(rows)} kills resumed to bit-identical final weights "
          f"(metrics once each, summary written, no leftovers); reference run {t_ref:.1f} s")
    print(f"  losses equal to the reference: {sum(bool(r.get('losses_equal')) for r in rows)}/{len(rows)}; "
          f"evaluation figures equal: {sum(r.get('eval_equal') is True for r in rows)}/"
          f"{sum(r.get('eval_equal') is not None for r in rows)}")
    print("  kill points by phase:")
    for p, n in phases.most_common():
        good = sum(1 for r in ok if r["phase"] == p)
        print(f"    {p:45s} {n:3d}  ({good} identical)")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"config": args.config, "reference_seconds": round(t_ref, 1),
                                              "sites": dict(hits), "chains": rows}, indent=1))
    return 0 if len(ok) == len(rows) and rows else 1
