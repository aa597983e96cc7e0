"""Prompt sets: JSON (a list, or ``{split: [prompts]}``), text (one per line) or parquet (a column).

Used by evaluation (fixed prompts and seeds) and by the online trainer (the prompts it samples).
Torch-free.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

__all__ = ["read_prompts", "spread"]


def spread(items: list, k: int | None, seed: int = 0) -> list:
    """``k`` of ``items`` by stratified sampling: the list is cut into ``k`` equal consecutive strata and one
    item is drawn from each (a seeded draw, so the same ``k`` always gives the same items); order kept. All
    items when ``k`` is None or ``k >= n``.

    Prompt files are usually ordered by attribute (the toy worlds' training lists run colour by colour,
    band by band): the first ``k`` would be a biased subset, and every ``n / k``-th would alias with an
    inner period (every third toy image prompt names no background). One draw per stratum keeps the coarse
    order balanced and the inner one mixed.
    """
    n = len(items)
    if k is None or k >= n:
        return list(items)
    if k < 1:
        raise ValueError(f"max_prompts must be at least 1, got {k}")
    rng = random.Random(seed)
    bounds = [(j * n) // k for j in range(k + 1)]
    return [items[lo + rng.randrange(hi - lo)] for lo, hi in zip(bounds[:-1], bounds[1:])]


def read_prompts(path: str | Path, splits: list[str] | None = None, max_prompts: int | None = None,
                 column: str = "caption") -> dict[str, list[str]]:
    """Prompts by split from a JSON list / ``{split: [...]}`` file, a text file (one per line) or a
    parquet file (the distinct values of ``column``, in first-seen order, as split ``prompts``).

    Returns:
        dict: split → prompts (``{"prompts": [...]}`` for a plain list); ``splits`` selects and
        orders the keys of a mapping; ``max_prompts`` keeps that many of each split, one from each of
        as many equal strata of it (:func:`spread`), not the first ones.
    """
    return {k: spread(v, max_prompts) for k, v in _read_prompts(path, splits, column).items()}


def _read_prompts(path: str | Path, splits: list[str] | None, column: str = "caption") -> dict[str, list[str]]:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"prompts: {p} does not exist")
    if p.suffix == ".parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(p, columns=[column]) if column in pq.read_schema(p).names else None
        if table is None:
            raise ValueError(f"{p}: no column {column!r} (columns: {', '.join(pq.read_schema(p).names)})")
        return {"prompts": list(dict.fromkeys(str(x) for x in table[column].to_pylist()))}
    if p.suffix == ".json":
        data = json.loads(p.read_text())
        if isinstance(data, list):
            return {"prompts": [str(x) for x in data]}
        if not isinstance(data, dict):
            raise ValueError(f"{p}: expected a list of prompts or a mapping split -> prompts")
        keys = splits or list(data)
        missing = [k for k in keys if k not in data]
        if missing:
            raise ValueError(f"{p}: no split(s) {missing} (has {sorted(data)})")
        return {k: [str(x) for x in data[k]] for k in keys}
    return {"prompts": [line.strip() for line in p.read_text().splitlines() if line.strip()]}


