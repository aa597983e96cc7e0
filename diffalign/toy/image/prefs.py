"""Preference pairs and exemplars of the shapes world, as parquet tables.

Preference pairs use the Pick-a-Pic v2 columns — `caption`, `jpg_0`, `jpg_1` (encoded image bytes;
here lossless PNG, so the stored pixels are the scored pixels) and `label_0` (1: image 0 preferred,
0: image 1 preferred, 0.5: tie) — plus the evidence behind each label: `score_0`, `score_1`
(graded toy_fidelity), `joint_0`, `joint_1` (binary correctness), `seed_0`, `seed_1` (sampling
seeds), `group` (pairs from the same prompt draw) and `pair_kind` ("extremes": best vs worst of the
group, "middle": the two middle samples).

Each group samples `group_size` images of one prompt from the base pipeline, ranks them by graded
fidelity and pairs best with worst, second with second-worst, … so every image is used once and
most pairs carry a clear preference.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from diffalign.sampling.pipeline import sample
from diffalign.toy.image.scorer import score_fidelity
from diffalign.toy.image.world import ShapesWorld, parse_prompt, render, to_uint8

PREF_COLUMNS = ["caption", "jpg_0", "jpg_1", "label_0"]


def png_bytes(images: torch.Tensor | np.ndarray) -> list[bytes]:
    """[N, 3, H, W] floats in [0, 1] -> N PNG files as bytes."""
    from PIL import Image

    arr = to_uint8(images.numpy() if isinstance(images, torch.Tensor) else images)
    out = []
    for a in arr:
        buf = io.BytesIO()
        Image.fromarray(a).save(buf, format="PNG", optimize=True)
        out.append(buf.getvalue())
    return out


def decode_images(blobs: list[bytes]) -> torch.Tensor:
    """Encoded images (e.g. a `jpg_0` column) -> [N, 3, H, W] float in [0, 1]."""
    from PIL import Image

    arr = np.stack([np.asarray(Image.open(io.BytesIO(b)).convert("RGB")) for b in blobs])
    return torch.from_numpy(arr.astype(np.float32) / 255.0).permute(0, 3, 1, 2).contiguous()


def sample_preference_pairs(
    pipe,
    prompts: list[str],
    n_groups: int,
    group_size: int,
    seed: int,
    tie_margin: float,
    sampling: dict,
    log: Callable[[str], None] = print,
):
    """Samples groups from the pipeline, scores them and forms labelled pairs.

    Args:
        pipe: the base StableDiffusionPipeline.
        prompts (list[str]): prompt pool (the training prompts for training pairs); groups cycle
            through it in shuffled rounds so every prompt is used about equally often.
        n_groups (int): prompt draws; each gives group_size // 2 pairs.
        group_size (int): samples per draw (even).
        seed (int): seeds the prompt order, the sampling seeds and the pair order.
        tie_margin (float): |score_0 - score_1| below this is labelled a tie (0.5).
        sampling (dict): guidance_scale and num_inference_steps.

    Returns:
        tuple: (pyarrow.Table of pairs, stats dict).
    """
    import pyarrow as pa

    if group_size < 2 or group_size % 2:
        raise ValueError(f"group_size must be even and >= 2, got {group_size}")
    rng = np.random.default_rng(seed)
    order: list[str] = []
    while len(order) < n_groups:
        order += [prompts[i] for i in rng.permutation(len(prompts))]
    group_prompts = order[:n_groups]
    flat_prompts = [p for p in group_prompts for _ in range(group_size)]
    seeds = rng.choice(2**31 - 1, size=len(flat_prompts), replace=False).tolist()
    images = sample(pipe, flat_prompts, seeds, sampling["guidance_scale"], sampling["num_inference_steps"],
                    batch_size=64, desc="sample")  # [G * K, 3, 32, 32]
    # Score what is stored: PNG is lossless but quantises to 8 bits.
    blobs = png_bytes(images)
    scores = score_fidelity(decode_images(blobs), flat_prompts)
    graded, joint = scores["graded"].numpy(), scores["joint"].numpy()
    rows: dict[str, list] = {k: [] for k in
                             [*PREF_COLUMNS, "score_0", "score_1", "joint_0", "joint_1", "seed_0", "seed_1",
                              "group", "pair_kind"]}
    for g in range(n_groups):
        idx = np.arange(g * group_size, (g + 1) * group_size)
        ranked = idx[np.argsort(-graded[idx], kind="stable")]  # best first
        for r in range(group_size // 2):
            a, b = ranked[r], ranked[-1 - r]  # r-th best vs r-th worst
            if rng.random() < 0.5:
                a, b = b, a  # random position of the preferred image
            gap = graded[a] - graded[b]
            rows["caption"].append(group_prompts[g])
            rows["jpg_0"].append(blobs[a])
            rows["jpg_1"].append(blobs[b])
            rows["label_0"].append(0.5 if abs(gap) < tie_margin else float(gap > 0))
            rows["score_0"].append(float(graded[a]))
            rows["score_1"].append(float(graded[b]))
            rows["joint_0"].append(bool(joint[a]))
            rows["joint_1"].append(bool(joint[b]))
            rows["seed_0"].append(int(seeds[a]))
            rows["seed_1"].append(int(seeds[b]))
            rows["group"].append(g)
            rows["pair_kind"].append("extremes" if r == 0 else "middle")
    table = pa.table(rows)
    gaps = np.abs(np.array(rows["score_0"]) - np.array(rows["score_1"]))
    labels = np.array(rows["label_0"])
    stats = {
        "pairs": len(labels),
        "images": len(flat_prompts),
        "groups": n_groups,
        "group_size": group_size,
        "ties": int((labels == 0.5).sum()),
        "label_0_share": float((labels == 1).mean()),
        "mean_graded_gap": float(gaps.mean()),
        "median_graded_gap": float(np.median(gaps)),
        "pairs_differing_in_joint": int((np.array(rows["joint_0"]) != np.array(rows["joint_1"])).sum()),
        "sample_graded_mean": float(graded.mean()),
        "sample_joint_mean": float(joint.mean()),
        "tie_margin": tie_margin,
    }
    log(f"pairs: {stats['pairs']} from {stats['images']} samples, ties {stats['ties']}, "
        f"mean gap {stats['mean_graded_gap']:.3f}, sample fidelity {stats['sample_graded_mean']:.3f} "
        f"(joint {stats['sample_joint_mean']:.3f})")
    return table, stats


def exemplar_table(world: ShapesWorld, per_prompt: int, seed: int):
    """Rendered ground truth for instance-to-set rewards: `per_prompt` images of each training prompt.

    Columns: `caption`, `image` (PNG bytes), `colour`, `shape`, `size`, `background` (the drawn
    one), `split` ("train").

    Returns:
        pyarrow.Table
    """
    import pyarrow as pa

    prompts = [p for p in world.train_prompts for _ in range(per_prompt)]
    specs = world.sample_specs(prompts, seed=seed)
    parsed = [parse_prompt(p) for p in prompts]
    return pa.table({
        "caption": prompts,
        "image": png_bytes(render(specs)),
        "colour": [p.colour for p in parsed],
        "shape": [p.shape for p in parsed],
        "size": [p.size or "" for p in parsed],
        "background": [s.background for s in specs],
        "split": ["train"] * len(prompts),
    })


def write_parquet(table, path: str | Path) -> Path:
    """Writes a table with zstd compression."""
    import pyarrow.parquet as pq

    pq.write_table(table, str(path), compression="zstd")
    return Path(path)
