"""Toy recipe study under the independent judge: train variants, evaluate each at N and 2N steps.

Works for the offline trainer (``configs/toy/diffusion_dpo.yaml``, the default) and the online one
(``--config configs/toy/dragon_fidelity.yaml``).

Every variant trains once for ``2N`` steps (constant learning rate, so the policy at step N is the
policy an N-step run ends with) and is evaluated at steps N and 2N against the base pipeline on a
**validation split that is never reported**: the training prompts with seeds from ``1000`` (the
report uses seeds ``k``; the held-out prompts are not looked at). Scorers: ``toy_judge`` (the
independent judge: joint accuracy and per-attribute accuracies with paired-bootstrap CIs) beside
``toy_fidelity`` (the labeller: win rate). Choose a default here, then report it with ``diffalign
train`` on the held-out and training prompts. The base images are sampled once per study. One line
per (variant, step) is appended to ``<out>/study.jsonl`` and a table is printed.

Usage (run alone: the machine has 2 cores)::

    python scripts/toy_dpo_study.py --steps 300 --variant default \\
        --variant "b2500:loss.beta=2500" --variant "lora:model.lora={r: 16, alpha: 16};train.lr=5e-4"

A variant is ``name`` (the config as is) or ``name:key=value;key=value`` (dotted overrides,
values in YAML, e.g. ``lora:model.lora={r: 16, alpha: 16};train.lr=5e-4``).

``--save`` keeps the policy at N and 2N steps as pipeline folders (LoRA folders for LoRA runs), so that the variant the study picks is
reported on the held-out and training rows (``diffalign eval --config … --tuned <out>/<variant>/step<N>``)
without training it again.

``--evaluate NAME=FOLDER`` (repeatable) trains nothing and scores saved policies on the validation rows —
with ``--all-prompts --seed-offset 2000``, on a larger set than either the study or the report uses, to
decide between variants the 216-sample sets cannot separate.

``--train-seeds 0 1 2`` trains every variant once per training seed (``train.seed``: the rollouts,
the pair order, ``t`` and ``ε``) and ends with the mean gain over the seeds and their range: on the
toy worlds one run's gain moves by ±4 points with the training seed alone (README), as much as most
variants differ, so rank variants on the seed means.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ATTRS = ("joint", "colour", "shape", "background", "size")


def _variant(text: str) -> tuple[str, list[str]]:
    name, _, rest = text.partition(":")
    return name, [o.strip() for o in rest.split(";") if o.strip()]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/toy/diffusion_dpo.yaml")
    ap.add_argument("--steps", type=int, default=None, help="N (default: the config's max_steps); runs 2N")
    ap.add_argument("--variant", action="append", default=[], help="name[:key=value;...] (repeatable)")
    ap.add_argument("--seed-offset", type=int, default=1000, help="validation seeds: offset + row (every row its own noise)")
    ap.add_argument("--train-seeds", type=int, nargs="+", default=None,
                    help="train each variant once per training seed (default: the config's train.seed only)")
    ap.add_argument("--out", type=Path, default=Path("outputs/toy_dpo_study"))
    ap.add_argument("--save", action="store_true",
                    help="also write the policy at N and 2N steps (<out>/<variant>/step<N>: a pipeline folder, a LoRA "
                         "folder for LoRA runs) for `diffalign eval --tuned` on the reported rows")
    ap.add_argument("--evaluate", action="append", default=[], metavar="NAME=FOLDER",
                    help="train nothing: score saved policies (pipeline or LoRA folders, e.g. from --save) on the "
                         "validation rows instead (repeatable)")
    ap.add_argument("--all-prompts", action="store_true",
                    help="validate on every training prompt instead of the config's eval.max_prompts")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from diffalign.eval import evaluate as _  # noqa: F401  (import side effects out of the timings)
    from diffalign.eval import generate, read_prompts, sample_rows, winrate
    from diffalign.models.lora import save_lora
    from diffalign.rewards import Samples, load
    from diffalign.sampling.pipeline import sample
    from diffalign.train import load_config
    from diffalign.train.offline import DiffusionTrainer
    from diffalign.train.online import OnlineTrainer

    args.out.mkdir(parents=True, exist_ok=True)
    base_cfg = load_config(args.config)
    torch.set_num_threads(base_cfg.train.num_threads or 2)
    e = base_cfg.eval
    prompts = read_prompts(e.prompts, ["train"], None if args.all_prompts else e.max_prompts)["train"]
    rows_p, rows_s = sample_rows(prompts, e.seeds_per_prompt, args.seed_offset + e.seed, e.shared_noise)
    fidelity, judge = load("toy_fidelity"), load("toy_judge")

    def score(images: torch.Tensor) -> dict:
        s = Samples(images, rows_p)
        j = judge(s)
        out = {"fidelity": fidelity(s).scores.float().numpy(), "judge_p": j.scores.float().numpy()}
        out.update({a: j.details["joint" if a == "joint" else f"{a}_ok"].float().numpy() for a in ATTRS})
        return out

    def against_base(tuned: dict) -> dict:
        """The judge's and the labeller's paired comparisons, and the judge's per-attribute accuracies."""
        return {"judge": winrate.compare(base["judge_p"], tuned["judge_p"]),
                "attributes": winrate.attributes({a: base[a] for a in ATTRS}, {a: tuned[a] for a in ATTRS}),
                "fidelity": winrate.compare(base["fidelity"], tuned["fidelity"])}

    base_pipe = generate.load_pipeline(base_cfg.model.path)
    t0 = time.time()
    base = score(sample(base_pipe, rows_p, rows_s, e.guidance_scale, e.num_inference_steps, e.batch_size, desc="base"))
    print(f"[study] base (validation: training prompts, seeds {args.seed_offset}+): "
          + ", ".join(f"{a} {np.nanmean(base[a]):.3f}" for a in ATTRS) + f" ({time.time() - t0:.0f} s)", flush=True)

    results = []
    for text in args.evaluate:  # saved policies: score them on the same rows, train nothing
        name, _, folder = text.partition("=")
        lora = generate.is_lora(folder)
        pipe = generate.load_pipeline(base_cfg.model.path, lora=folder) if lora else generate.load_pipeline(folder)
        tuned = score(sample(pipe, rows_p, rows_s, e.guidance_scale, e.num_inference_steps, e.batch_size, desc=name))
        row = {"variant": name, "folder": folder, "n": len(rows_p), "seed_offset": args.seed_offset,
               **against_base(tuned)}
        results.append(row)
        with open(args.out / "evaluate.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"[study] {name}: " + _cells(row), flush=True)
        del pipe
    if args.evaluate:
        return

    runs = [(text, seed) for text in args.variant or ["default"] for seed in (args.train_seeds or [None])]
    for text, seed in runs:
        base_name, overrides = _variant(text)
        name = base_name if seed is None else f"{base_name}/s{seed}"
        if seed is not None:
            overrides = overrides + [f"train.seed={seed}"]
        n = args.steps or base_cfg.train.max_steps
        cfg = load_config(args.config, overrides + [f"train.max_steps={2 * n}", "train.lr_schedule=constant",
                                                   f"train.output_dir={args.out / name}", "train.save_every=null"])
        trainer = (OnlineTrainer if hasattr(cfg, "rollout") else DiffusionTrainer)(cfg)
        unet = trainer.acc.unwrap_model(trainer.unet)
        pipe = StableDiffusionPipeline(**{**base_pipe.components, "unet": unet})
        pipe.set_progress_bar_config(disable=True)
        clock = [time.time(), 0.0]

        def evaluate(step: int, metrics: dict) -> None:
            if step not in (n, 2 * n):
                return
            clock[1] += time.time() - clock[0]
            unet.eval()
            tuned = score(sample(pipe, rows_p, rows_s, e.guidance_scale, e.num_inference_steps, e.batch_size,
                                 desc=f"{name}@{step}"))
            unet.train()
            if args.save:  # a LoRA folder for LoRA runs (a full save would carry peft's keys, which plain diffusers drops)
                folder = args.out / name / f"step{step}"
                if getattr(unet, "peft_config", None):
                    save_lora(unet, StableDiffusionPipeline, folder)
                else:
                    pipe.save_pretrained(folder, safe_serialization=True)
            row = {"variant": name, "base_variant": base_name, "train_seed": seed, "overrides": overrides,
                   "step": step, "train_seconds": round(clock[1], 1), **against_base(tuned),
                   "implicit_acc": metrics.get("implicit_acc")}
            results.append(row)
            with open(args.out / "study.jsonl", "a") as f:
                f.write(json.dumps(row) + "\n")
            print(f"[study] {name} @ {step}: " + _cells(row) + f" (train {clock[1]:.0f} s)", flush=True)
            clock[0] = time.time()

        trainer.train(on_step=evaluate)
        del trainer, pipe, unet

    print("\n| variant | overrides | step | train s | judge joint, base → tuned (gain, pts) | colour / shape / background "
          "/ size gain, pts | toy_fidelity win rate (labeller) |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        a = r["attributes"]
        print(f"| {r['variant']} | {', '.join(r['overrides']) or '—'} | {r['step']} | {r['train_seconds']:.0f} | "
              f"{_acc(a['joint'])} | {' / '.join(_gain(a[k]) for k in ATTRS[1:])} | {_pct(r['fidelity']['win_rate'])} |")
    if args.train_seeds and len(args.train_seeds) > 1:
        print("\n| variant | step | seeds | judge joint gain, mean over seeds [min, max], pts | colour / shape / background "
              "/ size, mean gain, pts |")
        print("|---|---|---|---|---|")
        for line in _seed_means(results):
            print(line)


def _seed_means(results: list[dict]) -> list[str]:
    """One table row per (variant, step): the gains averaged over the training seeds' runs."""
    import numpy as np

    groups: dict[tuple[str, int], list[dict]] = {}
    for r in results:
        groups.setdefault((r["base_variant"], r["step"]), []).append(r)
    out = []
    for (name, step), rs in groups.items():
        gains = {k: [100 * r["attributes"][k]["gain"]["mean"] for r in rs] for k in ATTRS}
        j = gains["joint"]
        out.append(f"| {name} | {step} | {len(rs)} | {np.mean(j):+.1f} [{min(j):+.1f}, {max(j):+.1f}] | "
                   + " / ".join(f"{np.mean(gains[k]):+.1f}" for k in ATTRS[1:]) + " |")
    return out


def _pct(ci: dict) -> str:
    return f"{100 * ci['mean']:.1f}% [{100 * ci['lo']:.1f}, {100 * ci['hi']:.1f}]"


def _gain(a: dict) -> str:
    g = a["gain"]
    return f"{100 * g['mean']:+.1f} [{100 * g['lo']:+.1f}, {100 * g['hi']:+.1f}]"


def _acc(a: dict) -> str:
    return f"{100 * a['base']['mean']:.1f} → {100 * a['tuned']['mean']:.1f}% ({_gain(a)})"


def _cells(r: dict) -> str:
    a = r["attributes"]
    return (f"judge joint {_acc(a['joint'])}; " + ", ".join(f"{k} {_gain(a[k])}" for k in ATTRS[1:])
            + f"; toy_fidelity win {_pct(r['fidelity']['win_rate'])}")


if __name__ == "__main__":
    main()
