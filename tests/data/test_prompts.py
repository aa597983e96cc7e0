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
    assert got == {"train": ["low 0", "mid 0", "high 0"], "held_out": ["x", "y"]}
    assert spread(prompts, 4) == ["low 0", "low 2", "mid 1", "high 0"]
    assert spread(prompts, None) == prompts and spread(prompts, 9) == prompts
    with pytest.raises(ValueError, match="at least 1"):
        spread(prompts, 0)


def test_toy_evaluation_prompts_cover_every_band_and_colour():
    # the toy configs evaluate 54 of the 162 training prompts: every band × timbre / colour × shape must be in them
    from diffalign.toy.audio.world import parse_prompt as parse_tone
    from diffalign.toy.image.world import parse_prompt as parse_shape

    tones = read_prompts("assets/toy/audio/prompts.json", ["train"], 54)["train"]
    assert len({(p.band, p.timbre) for p in map(parse_tone, tones)}) == 9
    shapes = read_prompts("assets/toy/image/prompts.json", ["train"], 54)["train"]
    assert len({(p.colour, p.shape) for p in map(parse_shape, shapes)}) == 18
