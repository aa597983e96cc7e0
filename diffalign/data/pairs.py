"""Image and audio preference pairs with Pick-a-Pic columns (methods.md §0.4), checked row by row.

Sources (``data.source``):

* a ``.parquet`` file, or a folder of parquet shards (with splits: files named ``<split>-*.parquet``
  or under ``<split>/``, as a downloaded hub dataset repo has them);
* a local HF ``datasets`` folder (``save_to_disk``; a ``DatasetDict`` needs ``data.split``);
* a folder of image files with an ``index.jsonl`` whose rows name the files relative to it.

Columns: ``caption``, ``jpg_0``, ``jpg_1`` (encoded image bytes, an HF ``Image`` dict, or a file
path) and ``label_0`` (1: image 0 preferred, 0: image 1 preferred, 0.5: tie). Audio pairs have
``audio_0`` / ``audio_1`` instead: encoded WAV/FLAC bytes, a path, or an HF ``Audio`` dict
(``{"array", "sampling_rate"}``), checked by ``data/audio.py``. The split is never
guessed: a source with several splits needs ``data.split``, and an evaluation split (validation,
test) is refused for training unless ``data.allow_eval_split`` (methods.md §7 #5).

A bad row — missing or empty caption, label outside {0, 0.5, 1}, an image that does not decode,
audio that does not decode, is silent or has another sample rate —
raises an error naming the dataset, row and column, or (``on_bad_row: skip``) is dropped and
counted. Ties are dropped and counted (``ties: drop``, the official recipe) or kept with label
0.5 (``ties: half``).
"""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BadRow", "RowSource", "Pair", "PairSet", "open_source", "load_pairs"]

EVAL_SPLIT = re.compile(r"^(val|valid|validation|test|eval|dev)(_.*)?$", re.IGNORECASE)


class BadRow(ValueError):
    """A row that cannot be used; the message names the dataset, row and column."""


class RowSource:
    """Random access to rows of a table-like source.

    Args:
        name (str): shown in errors (path and split).
        table (pyarrow.Table): the rows (memory-mapped where the source allows).
        root (Path | None): folder that relative image paths are resolved against.
    """

    def __init__(self, name: str, table, root: Path | None = None):
        self.name, self.table, self.root = name, table, root

    def __len__(self) -> int:
        return len(self.table)

    @property
    def labelled_by(self) -> str | None:
        """The reward that labelled the rows (parquet schema metadata ``diffalign.labelled_by``), if recorded."""
        meta = self.table.schema.metadata or {}
        v = meta.get(b"diffalign.labelled_by")
        return v.decode() if v else None

    def column_names(self) -> list[str]:
        return list(self.table.column_names)

    def get(self, i: int, column: str):
        if column not in self.table.column_names:
            raise BadRow(f"{self.name}: row {i}: column {column!r} is missing (columns: {', '.join(self.table.column_names)})")
        return self.table[column][i].as_py()

    def image_bytes(self, i: int, column: str) -> bytes:
        """Encoded bytes of an image cell: bytes, ``{"bytes": …, "path": …}`` or a path."""
        return self.sample_value(i, column, arrays=False)

    def sample_value(self, i: int, column: str, arrays: bool = True):
        """A sample cell as encoded bytes (from bytes, ``{"bytes": …, "path": …}`` or a path), or,
        with ``arrays``, an ``{"array", "sampling_rate"}`` dict as it is."""
        v = self.get(i, column)
        if arrays and isinstance(v, dict) and v.get("array") is not None:
            return v
        if isinstance(v, dict):
            v = v.get("bytes") or v.get("path")
        if isinstance(v, (bytes, bytearray)):
            return bytes(v)
        if isinstance(v, str) and v:
            p = Path(v) if self.root is None or Path(v).is_absolute() else self.root / v
            if not p.is_file():
                raise BadRow(f"{self.name}: row {i}: column {column!r}: no such sample file {p}")
            return p.read_bytes()
        raise BadRow(f"{self.name}: row {i}: column {column!r}: expected encoded bytes or a path, got {type(v).__name__}")


def _parquet_files(folder: Path, split: str | None) -> tuple[list[Path], list[str]]:
    files = sorted(folder.rglob("*.parquet"))
    splits = sorted({m.group(1) for f in files if (m := re.match(r"([A-Za-z_]+)-\d+", f.name))}
                    | {f.parent.name for f in files if f.parent != folder and f.parent.name != "data"})
    if split is None:
        return files, splits
    return [f for f in files if f.name.startswith(f"{split}-") or f.parent.name == split], splits


def open_source(path: str, split: str | None, allow_eval_split: bool = False) -> RowSource:
    """Open ``path`` (see the module docstring) at ``split``.

    Raises:
        FileNotFoundError: no such path. ValueError: a missing, unknown or evaluation split.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"data.source: {path} does not exist")
    if split is not None and EVAL_SPLIT.match(split) and not allow_eval_split:
        raise ValueError(
            f"data.split {split!r} is an evaluation split; train on 'train' (or set data.allow_eval_split: true)"
        )
    name = f"{path}" + (f" [{split}]" if split else "")
    if p.is_file() and p.suffix == ".parquet":
        if split is not None:
            raise ValueError(f"data.split: {path} is a single parquet file without splits; remove data.split")
        import pyarrow.parquet as pq

        return RowSource(name, pq.read_table(p, memory_map=True), p.parent)
    if p.is_dir() and (p / "index.jsonl").is_file():
        if split is not None:
            raise ValueError(f"data.split: {path} is a folder of pairs without splits; remove data.split")
        import pyarrow as pa

        rows = []
        for i, line in enumerate((p / "index.jsonl").read_text().splitlines()):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise BadRow(f"{p / 'index.jsonl'}: row {i}: not valid JSON ({e.msg})") from None
        return RowSource(name, pa.Table.from_pylist(rows), p)
    if p.is_dir() and ((p / "dataset_dict.json").is_file() or (p / "state.json").is_file()):
        import datasets

        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            if split is None or split not in ds:
                raise ValueError(f"data.split: {path} holds splits {sorted(ds)}; name one (got {split!r})")
            ds = ds[split]
        elif split is not None:
            raise ValueError(f"data.split: {path} is a single dataset without splits; remove data.split")
        return RowSource(name, ds.data.table, p)
    if p.is_dir():
        files, splits = _parquet_files(p, split)
        if split is None and len(splits) > 1:
            raise ValueError(f"data.split: {path} holds splits {splits}; name one")
        if not files:
            raise ValueError(f"data.source: {path} has no parquet files" + (f" for split {split!r} (splits: {splits})" if split else ""))
        import pyarrow as pa
        import pyarrow.parquet as pq

        return RowSource(name, pa.concat_tables([pq.read_table(f, memory_map=True) for f in files]), p)
    raise ValueError(f"data.source: {path}: use a .parquet file, a folder of parquet shards, a datasets folder "
                     "or a folder with index.jsonl")


@dataclass
class Pair:
    """A usable pair: its source row, which image is chosen, and the label."""

    row: int
    chosen: int  # 0 or 1: the column of the preferred image
    label: float  # 1.0, or 0.5 for a kept tie


@dataclass
class PairSet:
    """The pairs kept from a source, and what was dropped.

    Attributes:
        source (RowSource): the rows. pairs (list[Pair]): kept pairs in row order.
        columns (tuple[str, str, str, str]): caption, image 0, image 1, label column names.
        skipped (int): bad rows skipped (``on_bad_row: skip``). ties (int): ties dropped.
    """

    source: RowSource
    pairs: list[Pair]
    columns: tuple[str, str, str, str]
    skipped: int = 0
    ties: int = 0
    bad: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.pairs)

    @property
    def labelled_by(self) -> str | None:
        """Provenance: the reward that labelled the pairs, when the source records it."""
        return self.source.labelled_by

    def caption(self, k: int) -> str:
        return self.source.get(self.pairs[k].row, self.columns[0])

    def images(self, k: int) -> tuple:
        """(chosen, rejected) sample cells of pair ``k``: encoded bytes (or audio array dicts)."""
        p = self.pairs[k]
        a = self.source.sample_value(p.row, self.columns[1 + p.chosen])
        b = self.source.sample_value(p.row, self.columns[2 - p.chosen])
        return a, b

    def where(self, k: int, which: int) -> str:
        """``<dataset>: row r: column 'c'`` of the chosen (``which`` 0) or rejected (1) sample of pair ``k``."""
        p = self.pairs[k]
        col = self.columns[1 + (p.chosen if which == 0 else 1 - p.chosen)]
        return f"{self.source.name}: row {p.row}: column {col!r}"


def _check_image(data: bytes, where: str) -> None:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            im.verify()  # structure and checksums without a full decode
    except Exception as e:  # noqa: BLE001 — PIL raises many types for corrupt data
        why = re.sub(r" <_io\.BytesIO object at 0x[0-9a-f]+>", " bytes", str(e))  # no object addresses in messages
        raise BadRow(f"{where}: image does not decode ({type(e).__name__}: {why})") from None


def _check_audio(value, where: str, sample_rate: int, resample: bool) -> None:
    from .audio import decode_cell

    try:
        decode_cell(value, where, sample_rate, resample)
    except ValueError as e:
        raise BadRow(str(e)) from None


def load_pairs(
    source: str,
    split: str | None = None,
    columns: tuple[str, str, str, str] = ("caption", "jpg_0", "jpg_1", "label_0"),
    on_bad_row: str = "error",
    ties: str = "drop",
    max_pairs: int | None = None,
    allow_eval_split: bool = False,
    check_images: bool = True,
    modality: str = "image",
    sample_rate: int = 16000,
    resample: bool = False,
) -> PairSet:
    """Open, check and orient the pairs of a source.

    Args:
        source (str), split (str | None): see ``open_source``.
        columns: caption, image 0, image 1 and label column names (label ``None``: chosen/rejected
            datasets such as Audio-Alpaca, where sample 0 is always the preferred one).
        on_bad_row (str): ``error`` (stop, naming dataset, row and column) or ``skip`` (drop and count).
        ties (str): ``drop`` (count them) or ``half`` (keep, label 0.5).
        max_pairs (int | None): keep at most this many pairs (the first ones).
        check_images (bool): verify every image up front (structure and checksums), or decode and
            check every clip (``modality: audio``).
        modality (str): ``image`` or ``audio`` (the model family's). sample_rate (int), resample
            (bool): audio only (``data/audio.decode_cell``).

    Returns:
        PairSet
    """
    src = open_source(source, split, allow_eval_split)
    cap_c, im0_c, im1_c, lab_c = columns
    pairs, skipped, n_ties, bad = [], 0, 0, []
    for i in range(len(src)):
        if max_pairs is not None and len(pairs) >= max_pairs:
            break
        try:
            cap = src.get(i, cap_c)
            if not isinstance(cap, str) or not cap.strip():
                raise BadRow(f"{src.name}: row {i}: column {cap_c!r}: expected a non-empty caption, got {cap!r}"[:200])
            lab = 1.0 if lab_c is None else src.get(i, lab_c)  # no label column: sample 0 is the chosen one
            if isinstance(lab, bool) or not isinstance(lab, (int, float)) or float(lab) not in (0.0, 0.5, 1.0):
                raise BadRow(f"{src.name}: row {i}: column {lab_c!r}: label must be 0, 0.5 or 1, got {lab!r}")
            if check_images:
                for c in (im0_c, im1_c):
                    where = f"{src.name}: row {i}: column {c!r}"
                    if modality == "audio":
                        _check_audio(src.sample_value(i, c), where, sample_rate, resample)
                    else:
                        _check_image(src.image_bytes(i, c), where)
        except BadRow as e:
            if on_bad_row != "skip":
                raise
            skipped += 1
            bad.append(str(e))
            continue
        lab = float(lab)
        if lab == 0.5:
            n_ties += 1
            if ties == "drop":
                continue
        pairs.append(Pair(i, 0 if lab >= 0.5 else 1, 0.5 if lab == 0.5 else 1.0))
    if not pairs:
        raise ValueError(f"{src.name}: no usable pairs ({skipped} bad rows skipped, {n_ties} ties)")
    return PairSet(src, pairs, columns, skipped, n_ties if ties == "drop" else 0, bad)
