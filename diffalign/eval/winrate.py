"""Paired comparison statistics: mean reward with a 95% CI, gain and win rate against the base.

Base and tuned images share prompt and seed, so samples are paired. A tuned sample *wins* when
its reward is higher, *ties* (counting half) when equal, *loses* otherwise. Intervals are
percentile bootstraps over the paired samples (i.i.d. resampling of (prompt, seed) rows,
seeded, 10,000 resamples). Torch-free (numpy only).
"""

from __future__ import annotations

import numpy as np

__all__ = ["bootstrap_ci", "mean_ci", "compare", "attributes"]

N_BOOT = 10_000


def bootstrap_ci(values: np.ndarray, level: float = 0.95, n_boot: int = N_BOOT, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean of ``values`` ``[n]``."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for a in range(0, n_boot, 1000):  # chunks keep the index matrix small
        idx = rng.integers(0, values.size, size=(min(1000, n_boot - a), values.size))
        means[a : a + idx.shape[0]] = values[idx].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def mean_ci(values: np.ndarray, level: float = 0.95, seed: int = 0, binary: bool = False) -> dict:
    """``{"mean", "lo", "hi", "n"}`` of ``values``: a percentile bootstrap, or for 0/1 data
    (``binary``) the Wilson score interval (exact-ish at small n and near 0 or 1)."""
    x = np.asarray(values, dtype=np.float64)
    n = int(x.size)
    if n == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "n": 0}
    m = float(x.mean())
    if binary:
        from statistics import NormalDist

        z = NormalDist().inv_cdf((1 + level) / 2)
        centre = (m + z * z / (2 * n)) / (1 + z * z / n)
        half = z * np.sqrt(m * (1 - m) / n + z * z / (4 * n * n)) / (1 + z * z / n)
        return {"mean": m, "lo": float(centre - half), "hi": float(centre + half), "n": n}
    lo, hi = bootstrap_ci(x, level, seed=seed)
    return {"mean": m, "lo": lo, "hi": hi, "n": n}


def compare(base: np.ndarray, tuned: np.ndarray, tie_eps: float = 0.0, level: float = 0.95, seed: int = 0) -> dict:
    """Paired comparison of rewards of the same prompts and seeds.

    Args:
        base, tuned (np.ndarray): ``[n]`` rewards (higher is better), row i of both from the
            same prompt and seed.
        tie_eps (float): ``|tuned − base| ≤ tie_eps`` is a tie (counts half). Default 0.

    Returns:
        dict: ``n``, ``base`` / ``tuned`` (mean with CI), ``gain`` (mean tuned − base with CI),
        ``win_rate`` (with CI), ``wins``, ``ties``, ``losses``.
    """
    base, tuned = np.asarray(base, dtype=np.float64), np.asarray(tuned, dtype=np.float64)
    if base.shape != tuned.shape or base.ndim != 1:
        raise ValueError(f"base and tuned must be equal-length vectors, got {base.shape} and {tuned.shape}")
    ok = np.isfinite(base) & np.isfinite(tuned)  # a reward may be not applicable (NaN)
    base, tuned = base[ok], tuned[ok]
    diff = tuned - base
    tie = np.abs(diff) <= tie_eps
    win = np.where(tie, 0.5, (diff > 0).astype(np.float64))
    return {
        "n": int(base.size),
        "base": mean_ci(base, level, seed),
        "tuned": mean_ci(tuned, level, seed + 1),
        "gain": mean_ci(diff, level, seed + 2),
        "win_rate": mean_ci(win, level, seed + 3),
        "wins": int(((diff > 0) & ~tie).sum()),
        "ties": int(tie.sum()),
        "losses": int(((diff < 0) & ~tie).sum()),
    }


def attributes(base: dict[str, np.ndarray], tuned: dict[str, np.ndarray], level: float = 0.95) -> dict:
    """Per-attribute accuracies of base and tuned samples of the same prompts and seeds.

    Args:
        base, tuned (dict): ``<attr>_ok`` (and ``joint``) → ``[n]`` 1/0 per sample, NaN where the
            attribute does not apply (the prompt does not name it).

    Returns:
        dict: attr → ``{"n", "base", "tuned"}`` (Wilson intervals) and ``"gain"`` (paired bootstrap of
        tuned − base over the rows where it applies).
    """
    out = {}
    for key in base:
        if key not in tuned:
            continue
        b, t = np.asarray(base[key], dtype=np.float64), np.asarray(tuned[key], dtype=np.float64)
        ok = np.isfinite(b) & np.isfinite(t)
        if not ok.any():
            continue
        name = key[:-3] if key.endswith("_ok") else key
        out[name] = {"n": int(ok.sum()), "base": mean_ci(b[ok], level, binary=True),
                     "tuned": mean_ci(t[ok], level, binary=True), "gain": mean_ci(t[ok] - b[ok], level, seed=2)}
    return out
