"""Preference pairs and exemplars of the shapes world, as parquet tables.

Preference pairs use the Pick-a-Pic v2 columns — `caption`, `jpg_0`, `jpg_1` (encoded image bytes;
here lossless PNG, so the stored pixels are the scored pixels) and `label_0` (1: image 0 preferred,
0: image 1 preferred, 0.5: tie) — plus the evidence behind each label: `score_0`, `score_1`
(graded toy_fidelity), `joint_0`, `joint_1` (every named attribute right), `<attr>_ok_0/1` per
attribute, `seed_0`, `seed_1` (sampling seeds), `sampled_prompt` (what was sampled; it differs from
the caption for background groups), `group` and `pair_kind` ("extremes": best vs worst of the
group, "middle": the two middle samples; "+background" for background groups). The table's
metadata records its provenance: `diffalign.labelled_by` = `toy_fidelity`.

Each group samples `group_size` images from the base pipeline, ranks them joint-correctness first
and graded fidelity second, and pairs best with worst, second with second-worst, … so every image
is used once and a pair that differs in correctness is labelled by it.
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


LABELLED_BY = "toy_fidelity"  # the provenance written into the parquet metadata and build_info.json
ATTRS = ("colour", "shape", "background", "size")


def draw_groups(prompts: list[str], n_groups: int, rng: np.random.Generator, background_groups: int = 0
                ) -> list[tuple[str, str, str]]:
    """``(sampled prompt, caption, kind)`` of each group.

    ``n_groups`` groups sample their caption (prompts cycled in shuffled rounds, so each is used about
    equally often). ``background_groups`` more groups take a caption that names a background but
    sample the same prompt *without* it: the model then draws any background, and the samples on the
    wrong one become losers of pairs that teach the named background (base samples of the captions
    themselves are right on the background 99.6% of the time, too rarely to teach it).
    """
    order: list[str] = []
    while len(order) < n_groups:
        order += [prompts[i] for i in rng.permutation(len(prompts))]
    groups = [(p, p, "caption") for p in order[:n_groups]]
    named = [p for p in prompts if " on a " in p]
    if background_groups and not named:
        raise ValueError("background_groups needs prompts that name a background")
    for k in rng.integers(len(named), size=background_groups) if background_groups else []:
        caption = named[k]
        groups.append((caption.split(" on a ")[0], caption, "background"))
    return groups


def rank_key(joint: np.ndarray, graded: np.ndarray) -> np.ndarray:
    """Joint correctness first (everything the caption names), graded evidence only to break ties."""
    return joint.astype(np.float64) * 10.0 + graded


def sample_preference_pairs(
    pipe,
    groups: list[tuple[str, str, str]],
    group_size: int,
    seed: int,
    tie_margin: float,
    sampling: dict,
    log: Callable[[str], None] = print,
):
    """Samples groups from the pipeline, scores them against their captions and forms labelled pairs.

    Each group is ranked by ``rank_key`` (joint correctness under ``toy_fidelity`` first — colour,
    shape, background and size, whatever the caption names — then graded fidelity) and paired best
    with worst, second with second-worst, … so every image is used once. A pair whose images differ
    in joint correctness is labelled for the right one; otherwise by the graded gap, a tie (0.5)
    below ``tie_margin``.

    Args:
        pipe: the base StableDiffusionPipeline.
        groups (list): ``(sampled prompt, caption, kind)`` per group (``draw_groups``).
        group_size (int): samples per group (even).
        seed (int): seeds the sampling seeds and the pair order.
        tie_margin (float): graded gap below which a pair of equal joint correctness is a tie.
        sampling (dict): guidance_scale and num_inference_steps.

    Returns:
        tuple: (pyarrow.Table of pairs with ``diffalign.labelled_by`` metadata, stats dict).
    """
    import pyarrow as pa

    if group_size < 2 or group_size % 2:
        raise ValueError(f"group_size must be even and >= 2, got {group_size}")
    rng = np.random.default_rng(seed)
    n_groups = len(groups)
    flat_prompts = [g[0] for g in groups for _ in range(group_size)]
    flat_captions = [g[1] for g in groups for _ in range(group_size)]
    seeds = rng.choice(2**31 - 1, size=len(flat_prompts), replace=False).tolist()
    images = sample(pipe, flat_prompts, seeds, sampling["guidance_scale"], sampling["num_inference_steps"],
                    batch_size=64, desc="sample")  # [G * K, 3, 32, 32]
    # Score what is stored (PNG is lossless but quantises to 8 bits), against the caption.
    blobs = png_bytes(images)
    scores = score_fidelity(decode_images(blobs), flat_captions)
    graded, joint = scores["graded"].numpy(), scores["joint"].numpy()
    oks = {a: scores[f"{a}_ok"].numpy() for a in ATTRS}
    key = rank_key(joint, graded)
    cols = [*PREF_COLUMNS, "score_0", "score_1", "joint_0", "joint_1", *(f"{a}_ok_{i}" for a in ATTRS for i in (0, 1)),
            "seed_0", "seed_1", "sampled_prompt", "group", "pair_kind"]
    rows: dict[str, list] = {k: [] for k in cols}
    for g in range(n_groups):
        idx = np.arange(g * group_size, (g + 1) * group_size)
        ranked = idx[np.argsort(-key[idx], kind="stable")]  # best first
        for r in range(group_size // 2):
            a, b = ranked[r], ranked[-1 - r]  # r-th best vs r-th worst
            if rng.random() < 0.5:
                a, b = b, a  # random position of the preferred image
            if joint[a] != joint[b]:
                label = float(joint[a])
            else:
                gap = graded[a] - graded[b]
                label = 0.5 if abs(gap) < tie_margin else float(gap > 0)
            rows["caption"].append(groups[g][1])
            rows["sampled_prompt"].append(groups[g][0])
            rows["jpg_0"].append(blobs[a])
            rows["jpg_1"].append(blobs[b])
            rows["label_0"].append(label)
            rows["score_0"].append(float(graded[a]))
            rows["score_1"].append(float(graded[b]))
            rows["joint_0"].append(bool(joint[a]))
            rows["joint_1"].append(bool(joint[b]))
            for att in ATTRS:
                rows[f"{att}_ok_0"].append(bool(oks[att][a]))
                rows[f"{att}_ok_1"].append(bool(oks[att][b]))
            rows["seed_0"].append(int(seeds[a]))
            rows["seed_1"].append(int(seeds[b]))
            rows["group"].append(g)
            rows["pair_kind"].append(("extremes" if r == 0 else "middle") + ("" if groups[g][2] == "caption" else "+background"))
    table = pa.table(rows).replace_schema_metadata({"diffalign.labelled_by": LABELLED_BY,
                                                    "diffalign.label_rule": "joint correctness first, graded gap second"})
    gaps = np.abs(np.array(rows["score_0"]) - np.array(rows["score_1"]))
    labels = np.array(rows["label_0"])
    differ = {a: int((np.array(rows[f"{a}_ok_0"]) != np.array(rows[f"{a}_ok_1"])).sum()) for a in ATTRS}
    stats = {
        "pairs": len(labels),
        "images": len(flat_prompts),
        "groups": n_groups,
        "background_groups": sum(g[2] == "background" for g in groups),
        "group_size": group_size,
        "ties": int((labels == 0.5).sum()),
        "label_0_share": float((labels == 1).mean()),
        "mean_graded_gap": float(gaps.mean()),
        "median_graded_gap": float(np.median(gaps)),
        "pairs_differing_in_joint": int((np.array(rows["joint_0"]) != np.array(rows["joint_1"])).sum()),
        "pairs_differing_in": differ,
        "signal_share": {"joint": float(np.mean(np.array(rows["joint_0"]) != np.array(rows["joint_1"]))),
                         **{a: v / max(1, len(labels)) for a, v in differ.items()},
                         "graded_only": float(np.mean((np.array(rows["joint_0"]) == np.array(rows["joint_1"]))
                                                      & (labels != 0.5)))},
        "sample_graded_mean": float(graded.mean()),
        "sample_joint_mean": float(joint.mean()),
        "tie_margin": tie_margin,
        "labelled_by": LABELLED_BY,
        "label_rule": "joint correctness (every named attribute) first, graded gap second",
    }
    log(f"pairs: {stats['pairs']} from {stats['images']} samples, ties {stats['ties']}, differing in joint "
        f"{stats['pairs_differing_in_joint']}, per attribute {differ}; sample joint {stats['sample_joint_mean']:.3f}")
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
