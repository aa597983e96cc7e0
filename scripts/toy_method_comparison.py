"""Toy comparison of the denoising methods at an equal training budget (issue: the house, InPO, NCP).

Each config trains once (same data, steps, batch, lr, β, seed — they differ in the method) and its
policy is evaluated every ``--every`` steps against the base pipeline on the held-out prompts (54 ×
4 seeds, the quickstart's evaluation rows), and at the last step also on the training prompts with
new seeds. Scorers, all with 95% paired-bootstrap CIs:

* ``toy_fidelity`` — graded (win rate vs base, mean gain) and binary ``joint`` (colour and shape
  right). **It labelled the training pairs**: reported beside the others, never alone.
* ``toy_judge`` — the independent judge (a CNN trained on renders only): win rate of its
  probability that everything the prompt names is right, and its per-attribute accuracies (joint,
  colour, shape, background, size) with paired CIs;
* ``toy_clip`` — a tiny CLIP trained on the world's renders (win rate vs base); it labels nothing either.

"Steps to reach" is the first evaluated step at which a method's held-out win rate reaches the
Diffusion-DPO run's final held-out win rate (per scorer). Rows go to ``<out>/comparison.jsonl``;
the tables are printed in Markdown. Run alone (2 cores)::

    python scripts/toy_method_comparison.py --config configs/toy/diffusion_dpo.yaml \\
        --config configs/toy/inpo.yaml --config configs/toy/ncp_dpo.yaml --every 50
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ATTRS = ("joint", "colour", "shape", "background", "size")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", action="append", required=True,
                    help="a training config, optionally with overrides: path[:name:key=value;key=value] "
                         "(repeatable; the first is the reference run)")
    ap.add_argument("--override", action="append", default=[], help="key=value applied to every config")
    ap.add_argument("--every", type=int, default=50, help="evaluate every N optimiser steps")
    ap.add_argument("--out", type=Path, default=Path("outputs/toy_method_comparison"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from diffusers import StableDiffusionPipeline

    from diffalign.eval import generate, read_prompts, sample_rows, winrate
    from diffalign.rewards import Samples, load
    from diffalign.sampling.pipeline import sample
    from diffalign.train import load_config
    from diffalign.train.offline import DiffusionTrainer

    args.out.mkdir(parents=True, exist_ok=True)
    runs = [_run_spec(c) for c in args.config]
    first = load_config(runs[0][1], args.override + runs[0][2])
    torch.set_num_threads(first.train.num_threads or 2)
    e = first.eval
    splits = read_prompts(e.prompts, ["held_out", "train"], e.max_prompts)
    rows = {"held_out": sample_rows(splits["held_out"], e.seeds_per_prompt, e.seed, e.shared_noise),
            "train_new_seeds": sample_rows(splits["train"], e.seeds_per_prompt, 1000 + e.seed, e.shared_noise)}
    fidelity, clip, judge = load("toy_fidelity"), load("toy_clip"), load("toy_judge")

    def scores(images: torch.Tensor, prompts: list[str]) -> dict[str, np.ndarray]:
        s = Samples(images, prompts)
        fid = fidelity(s)
        j = judge(s)
        out = {"graded": fid.scores.numpy(), "clip": clip(s).scores.float().numpy(), "judge": j.scores.float().numpy()}
        out.update({k: j.details["joint" if k == "joint" else f"{k}_ok"].float().numpy() for k in ATTRS})
        return out

    def draw(pipe, split: str) -> dict[str, np.ndarray]:
        ps, ss = rows[split]
        return scores(sample(pipe, ps, ss, e.guidance_scale, e.num_inference_steps, e.batch_size, progress=False), ps)

    base_pipe = generate.load_pipeline(first.model.path)
    base = {split: draw(base_pipe, split) for split in rows}
    for split, b in base.items():
        print(f"[base] {split}: " + ", ".join(f"{k} {v.mean():.3f}" for k, v in b.items()), flush=True)

    results: list[dict] = []
    for name, path, extra in runs:
        cfg = load_config(path, args.override + extra + [f"train.output_dir={args.out / name}", "train.save_every=0"])
        trainer = DiffusionTrainer(cfg)
        unet = trainer.acc.unwrap_model(trainer.unet)
        pipe = StableDiffusionPipeline(**{**base_pipe.components, "unet": unet})
        pipe.set_progress_bar_config(disable=True)
        clock = {"start": time.time(), "train": 0.0}
        total = trainer.total_steps()

        def evaluate(step: int, metrics: dict) -> None:
            if step % args.every and step != total:
                return
            clock["train"] += time.time() - clock["start"]
            unet.eval()
            for split in ["held_out"] + (["train_new_seeds"] if step == total else []):
                tuned = draw(pipe, split)
                b = base[split]
                row = {"config": name, "overrides": extra, "method": cfg.method.name, "space": getattr(cfg.method, "space", None) and
                       cfg.method.space.kind, "split": split, "step": step, "train_seconds": round(clock["train"], 1),
                       "fidelity": winrate.compare(b["graded"], tuned["graded"]),
                       "clip": winrate.compare(b["clip"], tuned["clip"]),
                       "judge": winrate.compare(b["judge"], tuned["judge"]),
                       "attributes": winrate.attributes({k: b[k] for k in ATTRS}, {k: tuned[k] for k in ATTRS}),
                       "implicit_acc": metrics.get("implicit_acc"), "loss": metrics.get("loss")}
                results.append(row)
                with open(args.out / "comparison.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
                a = row["attributes"]
                print(f"[{name} @ {step}] {split}: fidelity win {pct(row['fidelity']['win_rate'])} · judge win "
                      f"{pct(row['judge']['win_rate'])} · judge joint {acc(a['joint'])} · shape {pts(a['shape']['gain'])}"
                      f" · background {pts(a['background']['gain'])} · toy_clip win {pct(row['clip']['win_rate'])}"
                      f" (train {clock['train']:.0f} s)", flush=True)
            unet.train()
            clock["start"] = time.time()

        trainer.train(on_step=evaluate)
        del trainer, pipe, unet
    table(results, [name for name, _, _ in runs])


def _run_spec(text: str) -> tuple[str, str, list[str]]:
    """``path`` or ``path:name:key=value;key=value`` → (run name, config path, overrides)."""
    path, _, rest = text.partition(":")
    name, _, over = rest.partition(":")
    return name or Path(path).stem, path, [o.strip() for o in over.split(";") if o.strip()]


def pct(ci: dict) -> str:
    return f"{100 * ci['mean']:.1f}% [{100 * ci['lo']:.1f}, {100 * ci['hi']:.1f}]"


def pts(ci: dict) -> str:
    return f"{100 * ci['mean']:+.1f} [{100 * ci['lo']:+.1f}, {100 * ci['hi']:+.1f}]"


def acc(a: dict) -> str:
    return f"{100 * a['base']['mean']:.1f} → {100 * a['tuned']['mean']:.1f}% ({pts(a['gain'])})"


def table(results: list[dict], names: list[str]) -> None:
    """Markdown tables: the last step of every run (held-out and training prompts), and steps to reach."""
    final = {}
    for r in results:
        final[(r["config"], r["split"])] = r
    print("\n| config | prompts | steps | train s | toy_fidelity win rate (labeller) | toy_judge win rate | judge joint acc "
          "base → tuned (gain, pts) | judge colour / shape / background / size gain, pts | toy_clip win rate |")
    print("|---|---|---|---|---|---|---|---|---|")
    for (name, split), r in final.items():
        a = r["attributes"]
        print(f"| {name} | {split} | {r['step']} | {r['train_seconds']:.0f} | {pct(r['fidelity']['win_rate'])} | "
              f"{pct(r['judge']['win_rate'])} | {acc(a['joint'])} | "
              f"{' / '.join(pts(a[k]['gain']) for k in ATTRS[1:])} | {pct(r['clip']['win_rate'])} |")
    ref_name = names[0]
    ref = final.get((ref_name, "held_out"))
    if ref is None:
        return
    goal = ref["attributes"]["joint"]["gain"]["mean"]
    print(f"\nSteps to reach {ref_name}'s final held-out judge joint gain ({pts(ref['attributes']['joint']['gain'])}) "
          f"and its toy_fidelity win rate ({pct(ref['fidelity']['win_rate'])}):\n")
    print("| config | judge joint gain | toy_fidelity win rate |")
    print("|---|---|---|")
    for name in names:
        held = [r for r in results if r["config"] == name and r["split"] == "held_out"]
        hit_j = next((r["step"] for r in held if r["attributes"]["joint"]["gain"]["mean"] >= goal), None)
        hit_f = next((r["step"] for r in held if r["fidelity"]["win_rate"]["mean"] >= ref["fidelity"]["win_rate"]["mean"]),
                     None)
        cells = [str(h) if h is not None else f"not reached in {held[-1]['step']}" for h in (hit_j, hit_f)]
        print(f"| {name} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
