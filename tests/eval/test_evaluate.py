"""``diffalign.eval.evaluate`` and ``read_prompts``: base vs tuned on fixed prompts and seeds, reports."""

import json

import pytest

from diffalign.eval import evaluate, read_prompts
from diffalign.rewards.base import Reward, RewardResult, RewardSpec


class Brightness(Reward):
    """Mean pixel value: a stateless reward for tests."""

    spec = RewardSpec(name="brightness", modality="image", needs_prompt=False)

    def score(self, samples):
        return RewardResult(samples.data.mean(dim=(1, 2, 3)))


def test_read_prompts(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"train": ["a"], "held_out": ["b", "c"]}))
    assert read_prompts(tmp_path / "p.json", ["held_out", "train"]) == {"held_out": ["b", "c"], "train": ["a"]}
    with pytest.raises(ValueError, match=r"no split\(s\) \['test'\]"):
        read_prompts(tmp_path / "p.json", ["test"])
    (tmp_path / "p.txt").write_text("x\n\ny\n")
    assert read_prompts(tmp_path / "p.txt") == {"prompts": ["x", "y"]}


def test_evaluate_writes_grid_and_reports(sd_path, lora_out, tmp_path, capsys):
    prompts = {"held_out": ["a red circle", "a blue square"], "train": ["a green triangle"]}
    res = evaluate(sd_path, lora_out, prompts, Brightness(), tmp_path / "ev", seeds_per_prompt=2,
                   guidance_scale=3.0, num_inference_steps=2, grid_columns=3)
    assert set(res) == {"held_out", "train"} and res["held_out"]["n"] == 4 and res["train"]["n"] == 2
    r = res["held_out"]
    assert r["wins"] + r["ties"] + r["losses"] == 4 and r["win_rate"]["lo"] <= r["win_rate"]["mean"] <= r["win_rate"]["hi"]
    out = capsys.readouterr().out
    assert "held_out: n=4 brightness win rate vs base" in out and "gain" in out
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["settings"]["lora"] is True and rep["results"]["train"]["n"] == 2
    assert "| held_out | 4 |" in (tmp_path / "ev" / "report.md").read_text()
    from PIL import Image

    grid = Image.open(tmp_path / "ev" / "grid.png")
    assert grid.size == (3 * (96 + 6) + 6, 2 * (96 + 6) + 24 + 6)  # 3 columns × 2 rows (base, tuned + captions) of 96 px cells
    sc = json.loads((tmp_path / "ev" / "scores.json").read_text())["held_out"]
    assert sc["seeds"] == [0, 1, 0, 1] and sc["prompts"][:2] == ["a red circle"] * 2


def test_grid_columns_spread_over_the_distinct_prompts():
    from diffalign.eval.report import spread

    prompts = [p for p in ["a", "b", "c", "d", "e", "f"] for _ in range(4)]
    assert spread(prompts, 3) == [0, 8, 16]  # prompts a, c, e — not the first three rows (all "a")
    assert spread(["a", "a", "b", "b"], 3) == [0, 2, 1]  # fewer prompts than columns: every prompt, then seeds
