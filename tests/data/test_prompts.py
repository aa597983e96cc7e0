"""Prompt sets: JSON lists and splits, text files, parquet columns."""

import json

import pytest

from diffalign.data.prompts import read_prompts, spread


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


def test_max_prompts_spreads_over_the_split_instead_of_taking_the_first(tmp_path):
    # an attribute-ordered list (as the toy worlds' training lists are): the first 3 would all be "low"
    prompts = [f"{band} {i}" for band in ("low", "mid", "high") for i in range(3)]
    (tmp_path / "p.json").write_text(json.dumps({"train": prompts, "held_out": ["x", "y"]}))
    got = read_prompts(tmp_path / "p.json", ["train", "held_out"], max_prompts=3)
    assert [p.split()[0] for p in got["train"]] == ["low", "mid", "high"] and got["held_out"] == ["x", "y"]
    assert got == read_prompts(tmp_path / "p.json", ["train", "held_out"], max_prompts=3)  # reproducible
    assert spread(prompts, None) == prompts and spread(prompts, 9) == prompts
    with pytest.raises(ValueError, match="at least 1"):
        spread(prompts, 0)
    # one draw per stratum, not every n/k-th: an inner period of the list does not alias
    inner = [i % 3 for i in spread(list(range(300)), 100)]
    assert {0, 1, 2} <= set(inner) and max(inner.count(r) for r in range(3)) < 50


def test_toy_evaluation_prompts_cover_every_attribute():
    # the toy configs evaluate 54 of the 162 training prompts: every band × timbre / colour × shape, and
    # every background and loudness form, must be in them
    from diffalign.toy.audio.world import parse_prompt as parse_tone
    from diffalign.toy.image.world import parse_prompt as parse_shape

    tones = [parse_tone(p) for p in read_prompts("assets/toy/audio/prompts.json", ["train"], 54)["train"]]
    assert len({(p.band, p.timbre) for p in tones}) == 9 and len({p.loudness for p in tones}) == 3
    shapes = [parse_shape(p) for p in read_prompts("assets/toy/image/prompts.json", ["train"], 54)["train"]]
    assert len({(p.colour, p.shape) for p in shapes}) == 18
    assert len({p.background for p in shapes}) == 4 and len({p.size for p in shapes}) == 3
