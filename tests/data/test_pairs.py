"""Preference-pair sources, checks of bad rows, explicit splits."""

import json

import numpy as np
import pytest

from diffalign.data.pairs import BadRow, load_pairs
from tests.helpers import pair_rows, png, write_parquet


def test_parquet_ties_drop_or_half(pairs_parquet):
    drop = load_pairs(pairs_parquet)
    assert len(drop) == 8 and drop.ties == 4 and drop.skipped == 0
    half = load_pairs(pairs_parquet, ties="half")
    assert len(half) == 12 and {p.label for p in half.pairs} == {1.0, 0.5}
    p = drop.pairs[1]  # row 1 has label_0 = 0: image 1 is chosen
    assert p.row == 1 and p.chosen == 1
    chosen, rejected = drop.images(1)
    src = drop.source
    assert chosen == src.image_bytes(1, "jpg_1") and rejected == src.image_bytes(1, "jpg_0")
    assert load_pairs(pairs_parquet, max_pairs=3).pairs[-1].row == 3  # row 2 is a dropped tie


@pytest.mark.parametrize(
    "field,value,column,match",
    [
        ("jpg_1", b"not an image at all", "jpg_1", "image does not decode"),
        ("caption", "", "caption", "expected a non-empty caption"),
        ("caption", None, "caption", "expected a non-empty caption"),
        ("label_0", 2.0, "label_0", "label must be 0, 0.5 or 1, got 2.0"),
        ("label_0", 0.7, "label_0", "label must be 0, 0.5 or 1"),
    ],
)
def test_bad_rows_name_dataset_row_and_column_or_are_skipped(tmp_path, field, value, column, match):
    rows = pair_rows(5)
    rows[3][field] = value
    path = write_parquet(rows, tmp_path / "bad.parquet")
    with pytest.raises(BadRow, match=rf"bad\.parquet: row 3: column '{column}': {match}"):
        load_pairs(path)
    ok = load_pairs(path, on_bad_row="skip")
    assert len(ok) == 4 and ok.skipped == 1 and [p.row for p in ok.pairs] == [0, 1, 2, 4]


def test_missing_column_is_named(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "label_0"} for r in pair_rows(2)]
    with pytest.raises(BadRow, match="row 0: column 'label_0' is missing"):
        load_pairs(write_parquet(rows, tmp_path / "x.parquet"))


def test_datasets_folder_needs_an_explicit_split(tmp_path):
    import datasets

    rows = pair_rows(4)
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows), "validation": datasets.Dataset.from_list(rows[:2])})
    dd.save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match=r"holds splits \['train', 'validation'\]; name one"):
        load_pairs(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="'validation' is an evaluation split"):
        load_pairs(str(tmp_path / "ds"), split="validation")
    assert len(load_pairs(str(tmp_path / "ds"), split="validation", allow_eval_split=True)) == 2
    assert len(load_pairs(str(tmp_path / "ds"), split="train")) == 4
    with pytest.raises(ValueError, match="single parquet file without splits"):
        load_pairs(write_parquet(rows, tmp_path / "one.parquet"), split="train")


def test_parquet_shards_by_split_and_folder_of_pairs(tmp_path):
    d = tmp_path / "repo" / "data"
    d.mkdir(parents=True)
    write_parquet(pair_rows(3), d / "train-00000-of-00002.parquet")
    write_parquet(pair_rows(2, seed=1), d / "train-00001-of-00002.parquet")
    write_parquet(pair_rows(1), d / "validation-00000-of-00001.parquet")
    with pytest.raises(ValueError, match="holds splits"):
        load_pairs(str(tmp_path / "repo"))
    assert len(load_pairs(str(tmp_path / "repo"), split="train")) == 5
    # a folder of image files with index.jsonl
    f = tmp_path / "folder"
    (f / "img").mkdir(parents=True)
    rng = np.random.default_rng(0)
    lines = []
    for i in range(3):
        for k in (0, 1):
            (f / "img" / f"{i}_{k}.png").write_bytes(png(rng))
        lines.append(json.dumps({"caption": f"p{i}", "jpg_0": f"img/{i}_0.png", "jpg_1": f"img/{i}_1.png", "label_0": 1}))
    lines.append(json.dumps({"caption": "p3", "jpg_0": "img/missing.png", "jpg_1": "img/0_1.png", "label_0": 0}))
    (f / "index.jsonl").write_text("\n".join(lines))
    with pytest.raises(BadRow, match="row 3: column 'jpg_0': no such sample file"):
        load_pairs(str(f))
    ps = load_pairs(str(f), on_bad_row="skip")
    assert len(ps) == 3 and ps.skipped == 1 and ps.caption(2) == "p2"


def test_provenance_comes_from_the_parquet_metadata(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(pair_rows(2)).replace_schema_metadata({"diffalign.labelled_by": "toy_fidelity"})
    pq.write_table(table, tmp_path / "p.parquet")
    assert load_pairs(str(tmp_path / "p.parquet")).labelled_by == "toy_fidelity"
    assert load_pairs(write_parquet(pair_rows(2), tmp_path / "q.parquet")).labelled_by is None
