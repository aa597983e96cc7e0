"""``diffalign bench text``: throughput and memory of text DPO, ours and (optionally) TRL's.

Each system runs in its own fresh subprocess, one after the other (never concurrently), on the
same model (built from the config with the same seed), data, batch size, max length, β, lr and
threads. Printed per system: pairs/s, non-pad tokens/s (attention-mask tokens of the policy
forward), seconds per step, set-up seconds (includes precomputing reference log-probs where
used) and peak memory (CUDA: ``max_memory_allocated``; CPU: peak RSS of the process).

    diffalign bench text --config configs/text/toy_dpo.yaml --steps 30 --against trl
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

__all__ = ["main"]


def _peak_mb() -> float:
    import torch

    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _worker_ours(config: str, warmup: int, steps: int, overrides: list[str]) -> dict:
    from ..train import load_config
    from ..train.text import TextDPOTrainer

    t0 = time.perf_counter()
    cfg = load_config(config, overrides + [f"train.max_steps={warmup + steps}", "train.save_every=null",
                                           "train.output_dir=/tmp/diffalign-bench-text"])
    trainer = TextDPOTrainer(cfg)
    setup = time.perf_counter() - t0
    rss0 = _rss_mb()
    marks: list[tuple[float, float]] = []
    trainer.train(on_step=lambda step, m: marks.append((time.perf_counter(), m["num_tokens"])))
    timed = marks[warmup:]  # warmup ≥ 1: time from the end of the last warm-up step
    dt = timed[-1][0] - marks[warmup - 1][0]
    toks = sum(t for _, t in timed)
    n = len(timed)
    pairs = n * cfg.train.batch_size * cfg.train.grad_accum
    return {"system": f"diffalign ({trainer.strategy} reference)", "setup_s": setup, "steps": n,
            "s_per_step": dt / n, "pairs_per_s": pairs / dt, "tokens_per_s": toks / dt,
            "peak_mb": _peak_mb(), "rss_before_train_mb": rss0}


def _worker_trl(config: str, warmup: int, steps: int, overrides: list[str], precompute: bool) -> dict:
    import torch
    import trl
    from datasets import Dataset
    from transformers import TrainerCallback

    from ..train import load_config
    from ..data.text import read_rows
    from ..train.text import TextDPOTrainer

    t0 = time.perf_counter()
    cfg = load_config(config, overrides + ["reference.strategy=frozen_copy", "train.output_dir=/tmp/diffalign-bench-trl"])
    ours = TextDPOTrainer(cfg)  # only to build the identical model (same config, same seed) and tokenizer
    model, ref, tok = ours.model, ours.ref_model, ours.tokenizer
    d, loop = cfg.data, cfg.train
    rows = [{"prompt": r[d.prompt_column], "chosen": r[d.chosen_column], "rejected": r[d.rejected_column]}
            for r in read_rows(d.train)]
    args = trl.DPOConfig(
        output_dir="/tmp/diffalign-bench-trl", beta=cfg.loss.beta, loss_type=["sigmoid"], learning_rate=loop.lr,
        per_device_train_batch_size=loop.batch_size, gradient_accumulation_steps=loop.grad_accum,
        max_steps=warmup + steps, max_length=d.max_length, gradient_checkpointing=loop.gradient_checkpointing,
        bf16=False, fp16=False, use_cpu=not torch.cuda.is_available(), report_to=[], logging_steps=10**9,
        save_strategy="no", precompute_ref_log_probs=precompute, seed=loop.seed, dataloader_num_workers=0,
        disable_dropout=True, lr_scheduler_type="constant",
    )
    trainer = trl.DPOTrainer(model=model, ref_model=None if precompute else ref, args=args,
                             train_dataset=Dataset.from_list(rows), processing_class=tok)
    if precompute:  # TRL precomputes lazily inside train(); force it here so set-up time holds it
        trainer.get_train_dataloader()
    setup = time.perf_counter() - t0
    rss0 = _rss_mb()
    marks: list[tuple[float, float]] = []

    class _Clock(TrainerCallback):
        def on_step_end(self, a, state, control, **kw):
            marks.append((time.perf_counter(), float(trainer._total_train_tokens)))

    trainer.add_callback(_Clock())
    trainer.train()
    dt = marks[-1][0] - marks[warmup - 1][0]
    toks = marks[-1][1] - marks[warmup - 1][1]
    n = len(marks) - warmup
    pairs = n * loop.batch_size * loop.grad_accum
    name = "TRL DPOTrainer (" + ("precomputed" if precompute else "live frozen-copy") + " reference)"
    return {"system": name, "setup_s": setup, "steps": n, "s_per_step": dt / n, "pairs_per_s": pairs / dt,
            "tokens_per_s": toks / dt, "peak_mb": _peak_mb(), "rss_before_train_mb": rss0}


def _spawn(kind: str, args, overrides: list[str]) -> dict:
    cmd = [sys.executable, "-m", "diffalign.bench.text", "--worker", kind, args.config, str(args.warmup), str(args.steps),
           json.dumps(overrides)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if r.returncode != 0 or not lines:
        raise RuntimeError(f"bench worker {kind} failed: {r.stderr.strip().splitlines()[-1] if r.stderr.strip() else r.returncode}")
    return json.loads(lines[-1])


def main(args) -> int:
    """Run the benchmark workers one after another and print the table."""
    if args.warmup < 1:
        raise ValueError("--warmup must be ≥ 1 (the first steps include one-off costs)")
    overrides: list[str] = []
    rows = [_spawn("ours", args, overrides)]
    if args.against:
        if args.against != ["trl"]:
            raise ValueError(f"bench text --against takes trl, got {' '.join(args.against)!r}")
        rows.append(_spawn("trl-live", args, overrides))
        rows.append(_spawn("trl-precompute", args, overrides))
    print(f"{'system':44s} {'pairs/s':>9s} {'tokens/s':>10s} {'s/step':>8s} {'setup s':>8s} {'peak MB':>9s}")
    for r in rows:
        print(f"{r['system']:44s} {r['pairs_per_s']:9.2f} {r['tokens_per_s']:10.0f} {r['s_per_step']:8.3f} "
              f"{r['setup_s']:8.1f} {r['peak_mb']:9.0f}")
    for r in rows[1:]:
        print(f"ratio diffalign / {r['system']}: tokens/s ×{rows[0]['tokens_per_s'] / r['tokens_per_s']:.2f}, "
              f"peak memory ×{rows[0]['peak_mb'] / r['peak_mb']:.2f}")
    if args.out:
        with open(args.out, "w") as f:
            json.dump(rows, f, indent=2)
    return 0


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "--worker":
    _, _, kind, config, warmup, steps, ov = sys.argv
    if kind == "ours":
        res = _worker_ours(config, int(warmup), int(steps), json.loads(ov))
    else:
        res = _worker_trl(config, int(warmup), int(steps), json.loads(ov), precompute=kind == "trl-precompute")
    print(json.dumps(res))
