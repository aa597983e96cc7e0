"""`diffalign toy report image`: how well the base toy pipeline follows held-out prompts.

Samples the committed toy pipeline on the held-out prompts (fixed seeds, the asset's default
sampling), scores the samples with toy_fidelity and toy_clip, prints means with 95% confidence
intervals next to the renderer's own ground truth for the same prompts (the ceiling), and writes
`report.json` and a labelled `grid.png` (green frame: colour and shape right; red: wrong).
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np


def run_image_report(n: int = 216, out: str | Path = "toy_report/image", asset_dir: str | Path | None = None,
                     seed: int = 0, grid_size: int = 64, threads: int = 2) -> dict:
    """Samples held-out prompts, scores them and writes report.json + grid.png.

    Args:
        n (int): samples; the held-out prompts are cycled (216 = 4 per prompt). Default is 216.
        out (str | Path): output folder. Default is "toy_report/image".
        asset_dir (str | Path | None): image asset folder; None uses the committed assets.
        seed (int): first sampling seed (sample i uses seed + i). Default is 0.
        grid_size (int): samples shown in the grid. Default is 64.
        threads (int): torch CPU threads. Default is 2.

    Returns:
        dict: the report (also written to report.json).
    """
    import torch

    from diffalign.eval.report import save_grid
    from diffalign.eval.winrate import mean_ci
    from diffalign.sampling.pipeline import sample
    from diffalign.toy.image.assets import image_asset_dir, load_pipeline, read_json, sampling_defaults
    from diffalign.toy.image.scorer import score_fidelity
    from diffalign.toy.image.world import ShapesWorld, render
    from diffalign.toy.image.clip import clip_scores, load_toy_clip
    from diffalign.toy.image.judge import judge_prompts, load_judge

    torch.set_num_threads(threads)
    asset_dir = Path(asset_dir) if asset_dir else image_asset_dir()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    held_out = read_json(asset_dir / "prompts.json")["held_out"]
    if held_out != ShapesWorld().held_out_prompts:
        raise ValueError(f"{asset_dir}/prompts.json does not match this version's held-out split; rebuild the assets")
    # interleave so that any prefix covers many prompts
    prompts = [held_out[i % len(held_out)] for i in range(n)]
    seeds = [seed + i for i in range(n)]
    sampling = sampling_defaults(asset_dir)
    import diffusers  # noqa: F401  (library imports are not part of the load time)
    import open_clip  # noqa: F401

    t0 = time.time()
    pipe = load_pipeline(asset_dir)
    load_s = time.time() - t0
    t0 = time.time()
    clip, tok = load_toy_clip(asset_dir / "toy_clip")
    clip_load_s = time.time() - t0
    t0 = time.time()
    images = sample(pipe, prompts, seeds, sampling["guidance_scale"], sampling["num_inference_steps"], batch_size=64,
                    progress=False)
    sample_s = time.time() - t0
    fid = score_fidelity(images, prompts)
    cs = clip_scores(clip, tok, images, prompts)
    truth = torch.from_numpy(render(ShapesWorld().sample_specs(prompts, seed=seed)))
    fid_true = score_fidelity(truth, prompts)
    cs_true = clip_scores(clip, tok, truth, prompts)
    judge = load_judge(asset_dir / "toy_judge")
    jd, jd_true = judge_prompts(judge, images, prompts), judge_prompts(judge, truth, prompts)

    def judged(r: dict) -> dict:  # the independent judge's verdicts (NaN rows: attribute not named)
        out = {"toy_judge_joint": mean_ci(r["joint"].float().numpy(), binary=True)}
        for a in ("colour", "shape", "background", "size"):
            v = r[f"{a}_ok"].numpy()
            out[f"toy_judge_{a}"] = mean_ci(v[~np.isnan(v)], binary=True)
        return out

    report = {
        "asset_dir": str(asset_dir),
        "prompts": "held_out",
        "n": n,
        "sampling": sampling,
        "seconds": {"load": round(load_s, 2), "toy_clip_load": round(clip_load_s, 2), "sample": round(sample_s, 1)},
        "base": {
            "toy_fidelity_graded": mean_ci(fid["graded"].numpy()),
            "joint_accuracy": mean_ci(fid["joint"].numpy(), binary=True),
            "colour_accuracy": mean_ci(fid["colour_ok"].numpy(), binary=True),
            "shape_accuracy": mean_ci(fid["shape_ok"].numpy(), binary=True),
            "background_accuracy": mean_ci(fid["background_ok"].numpy(), binary=True),
            "toy_clip": mean_ci(cs.numpy()),
            **judged(jd),
        },
        "ground_truth_renders": {
            "toy_fidelity_graded": mean_ci(fid_true["graded"].numpy()),
            "joint_accuracy": mean_ci(fid_true["joint"].numpy(), binary=True),
            "toy_clip": mean_ci(cs_true.numpy()),
            **judged(jd_true),
        },
    }
    k = min(grid_size, n)
    save_grid([images[i : i + 8] for i in range(0, k, 8)], out / "grid.png",
              captions=[prompts[i : i + 8] for i in range(0, k, 8)], ok=[jd["joint"][i : i + 8].tolist() for i in range(0, k, 8)])
    report["grid"] = str(out / "grid.png")
    (out / "report.json").write_text(json.dumps(report, indent=2))
    print(format_report(report))
    return report


def format_report(report: dict) -> str:
    """Human-readable table of a report dict."""
    s = report["sampling"]
    lines = [
        f"toy report image: {report['n']} samples on held-out prompts "
        f"(guidance {s['guidance_scale']}, {s['num_inference_steps']} DDIM steps; "
        f"pipeline load {report['seconds']['load']} s after imports, toy_clip load "
        f"{report['seconds']['toy_clip_load']} s, sampling {report['seconds']['sample']} s)",
        f"{'metric':<24}{'base pipeline [95% CI]':>28}{'ground-truth renders':>26}",
    ]
    for key in ["toy_fidelity_graded", "joint_accuracy", "colour_accuracy", "shape_accuracy",
                "background_accuracy", "toy_clip", "toy_judge_joint", "toy_judge_colour", "toy_judge_shape",
                "toy_judge_background", "toy_judge_size"]:
        b = report["base"][key]
        t = report["ground_truth_renders"].get(key)
        ref = f"{t['mean']:.3f}" if t else ""
        lines.append(f"{key:<24}{b['mean']:>10.3f} [{b['lo']:.3f}, {b['hi']:.3f}]{ref:>26}")
    lines.append("toy_fidelity labels the training pairs; toy_judge (trained on renders only) and toy_clip label nothing")
    lines.append(f"grid: {report['grid']} (frames: toy_judge, green = everything the prompt names is right)")
    return "\n".join(lines)
