"""Stage 7 of the tones-world build (:mod:`diffalign.toy.audio.build`): preference pairs.

Pairs of base-pipeline clips of the same training prompt (two seeds), labelled by graded
``toy_pitch`` — pitch band and timbre (:func:`diffalign.toy.audio.scorer.score_pitch`) — with a
tie below ``cfg.tie_margin``. The parquet schema metadata records the provenance
(``diffalign.labelled_by`` = ``toy_pitch``), and ``metrics["prefs"]`` what fraction of pairs
differs in timbre correctness and in joint (band and timbre) correctness.
"""

from __future__ import annotations

import time
from pathlib import Path

__all__ = ["prefs_stage"]


def prefs_stage(pipe, sampling: dict, folder: Path, cfg, world, metrics: dict, stage) -> None:
    """7. preference pairs on training prompts, labelled on the stored (FLAC) audio."""
    import numpy as np
    import pyarrow as pa

    from diffalign.toy.audio.assets import decode_audio, flac_bytes, sample_audio, write_parquet_shards
    from diffalign.toy.audio.scorer import score_pitch

    t0 = time.time()
    rng = np.random.default_rng(cfg.seed + 50)
    draw_prompts = [world.train_prompts[i] for i in rng.integers(len(world.train_prompts), size=cfg.pair_draws)]
    seeds = [int(s) for s in rng.choice(2**31 - 1, size=2 * cfg.pair_draws, replace=False)]
    audio = sample_audio(pipe, [p for p in draw_prompts for _ in range(2)], seeds, **sampling)  # [2D, T]
    blobs = flac_bytes(audio.numpy())
    scored = score_pitch(decode_audio(blobs), [p for p in draw_prompts for _ in range(2)])
    graded, timbre_ok, joint = (scored[k].numpy() for k in ("graded", "timbre_correct", "joint"))
    g0, g1 = graded[0::2], graded[1::2]
    tb0, tb1, j0, j1 = timbre_ok[0::2], timbre_ok[1::2], joint[0::2], joint[1::2]  # what signal each pair carries
    label = np.where(g0 > g1 + cfg.tie_margin, 1.0, np.where(g1 > g0 + cfg.tie_margin, 0.0, 0.5))
    table = pa.table({
        "caption": draw_prompts, "audio_0": blobs[0::2], "audio_1": blobs[1::2], "label_0": label,
        "score_0": g0.astype(np.float32), "score_1": g1.astype(np.float32),
        "seed_0": seeds[0::2], "seed_1": seeds[1::2],
    }).replace_schema_metadata({"diffalign.labelled_by": "toy_pitch",
                                "diffalign.label_rule": f"graded toy_pitch (band and timbre), tie below {cfg.tie_margin}"})
    shards = write_parquet_shards(table, folder, "prefs_train")
    if len(table) < cfg.min_pairs:
        raise RuntimeError(f"only {len(table)} preference pairs (< {cfg.min_pairs})")
    metrics["prefs"] = {"pairs": len(table), "ties": int((label == 0.5).sum()), "label_0_mean": float(label.mean()),
                        "mean_abs_gap": float(np.abs(g0 - g1).mean()), "shards": [p.name for p in shards],
                        "train_prompts_only": True, "labelled_by": "toy_pitch",
                        "timbre_differs": float((tb0 != tb1).mean()), "joint_differs": float((j0 != j1).mean())}
    stage("prefs", t0)
