"""Prompt sets: JSON lists and splits, text files, parquet columns."""

import json

import pytest

from diffalign.data.prompts import read_prompts


def test_read_prompts(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"train": ["a"], "held_out": ["b", "c"]}))
    assert read_prompts(tmp_path / "p.json", ["held_out", "train"]) == {"held_out": ["b", "c"], "train": ["a"]}
    with pytest.raises(ValueError, match=r"no split\(s\) \['test'\]"):
        read_prompts(tmp_path / "p.json", ["test"])
    (tmp_path / "p.txt").write_text("x\n\ny\n")
    assert read_prompts(tmp_path / "p.txt") == {"prompts": ["x", "y"]}


def test_parquet_prompts_are_the_distinct_captions(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"caption": ["b", "a", "b"], "x": [1, 2, 3]}), tmp_path / "p.parquet")
    assert read_prompts(tmp_path / "p.parquet") == {"prompts": ["b", "a"]}
    with pytest.raises(ValueError, match="no column 'prompt'"):
        read_prompts(tmp_path / "p.parquet", column="prompt")
