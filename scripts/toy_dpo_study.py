"""Toy Diffusion-DPO study: train variants of a config, evaluate each at N and 2N steps.

Every variant trains once for ``2N`` steps (constant learning rate, so the policy at step N is
the policy an N-step run ends with) and is evaluated at steps N and 2N against the base
pipeline on the same prompts and seeds as ``diffalign train``'s own evaluation (toy_fidelity,
win rate and mean gain with 95% bootstrap CIs). The base images are sampled once per study.
One line per (variant, step) is appended to ``<out>/study.jsonl`` and a table is printed.

Usage (run alone: the machine has 2 cores)::

    python scripts/toy_dpo_study.py --steps 300 --variant default \\
        --variant "b2500:loss.beta=2500" --variant "lora:model.lora={r: 16, alpha: 16};train.lr=5e-4"

A variant is ``name`` (the config as is) or ``name:key=value;key=value`` (dotted overrides,
values in YAML, e.g. ``lora:model.lora={r: 16, alpha: 16};train.lr=5e-4``).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _variant(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition(":")
    return name, [o.strip() for o in rest.split(";") if o.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/toy/diffusion_dpo.yaml")
    ap.add_argument("--steps", type=int, default=None, help="N (default: the config's max_steps); runs 2N")
    ap.add_argument("--variant", action="append", default=[], help="name[:key=value;...] (repeatable)")
    ap.add_argument("--split", default="held_out", help="prompt split of the evaluation")
    ap.add_argument("--out", type=Path, default=Path("outputs/toy_dpo_study"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from diffalign.train import load_config
    from diffalign.eval import generate, read_prompts, winrate
    from diffalign.sampling.pipeline import sample
    from diffalign.rewards import Samples, load
    from diffalign.train.offline import DiffusionTrainer

    args.out.mkdir(parents=True, exist_ok=True)
    base_cfg = load_config(args.config)
    torch.set_num_threads(base_cfg.train.num_threads or 2)
    e = base_cfg.eval
    prompts = read_prompts(e.prompts, [args.split], e.max_prompts)[args.split]
    rows_p = [p for p in prompts for _ in range(e.seeds_per_prompt)]
    rows_s = [e.seed + k for _ in prompts for k in range(e.seeds_per_prompt)]
    reward = load(e.reward)

    def score(images: torch.Tensor) -> np.ndarray:
        return reward(Samples(images, rows_p)).scores.float().numpy()

    base_pipe = generate.load_pipeline(base_cfg.model.path)
    t0 = time.time()
    base_scores = score(sample(base_pipe, rows_p, rows_s, e.guidance_scale, e.num_inference_steps,
                                        e.batch_size, desc="base"))
    print(f"[study] base: {args.split} n={len(rows_p)} mean {base_scores.mean():.4f} ({time.time() - t0:.0f} s)",
          flush=True)

    results = []
    for text in args.variant or ["default"]:
        name, overrides = _variant(text)
        n = args.steps or base_cfg.train.max_steps
        cfg = load_config(args.config, overrides + [f"train.max_steps={2 * n}", "train.lr_schedule=constant",
                                                   f"train.output_dir={args.out / name}", "train.save_every=0"])
        trainer = DiffusionTrainer(cfg)
        unet = trainer.acc.unwrap_model(trainer.unet)
        pipe = StableDiffusionPipeline(**{**base_pipe.components, "unet": unet})
        pipe.set_progress_bar_config(disable=True)
        t_train = [time.time(), 0.0]

        def evaluate(step: int, metrics: dict) -> None:
            if step not in (n, 2 * n):
                return
            t_train[1] += time.time() - t_train[0]
            unet.eval()
            tuned = score(sample(pipe, rows_p, rows_s, e.guidance_scale, e.num_inference_steps,
                                          e.batch_size, desc=f"{name}@{step}"))
            unet.train()
            r = winrate.compare(base_scores, tuned)
            row = {"variant": name, "overrides": overrides, "step": step, "train_seconds": round(t_train[1], 1),
                   "win_rate": r["win_rate"], "gain": r["gain"], "base": r["base"]["mean"], "tuned": r["tuned"]["mean"],
                   "wins_ties_losses": [r["wins"], r["ties"], r["losses"]], "implicit_acc": metrics.get("implicit_acc"),
                   "loss": metrics.get("loss")}
            results.append(row)
            with open(args.out / "study.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            w, g = r["win_rate"], r["gain"]
            print(f"[study] {name} @ {step}: win {100 * w['mean']:.1f}% [{100 * w['lo']:.1f}, {100 * w['hi']:.1f}] "
                  f"gain {100 * g['mean']:+.2f} [{100 * g['lo']:+.2f}, {100 * g['hi']:+.2f}] points "
                  f"(train {t_train[1]:.0f} s)", flush=True)
            t_train[0] = time.time()

        trainer.train(on_step=evaluate)
        del trainer, pipe, unet

    print("\n| variant | overrides | step | train s | win rate [95% CI] | gain, points [95% CI] |")
    print("|---|---|---|---|---|---|")
    for r in results:
        w, g = r["win_rate"], r["gain"]
        print(f"| {r['variant']} | {', '.join(r['overrides']) or '—'} | {r['step']} | {r['train_seconds']:.0f} | "
              f"{100 * w['mean']:.1f}% [{100 * w['lo']:.1f}, {100 * w['hi']:.1f}] | "
              f"{100 * g['mean']:+.2f} [{100 * g['lo']:+.2f}, {100 * g['hi']:+.2f}] |")


if __name__ == "__main__":
    main()
