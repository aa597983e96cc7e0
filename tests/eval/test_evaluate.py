"""``diffalign.eval.evaluate`` and ``read_prompts``: base vs tuned on fixed prompts and seeds, reports."""

import json

import pytest
import torch

from diffalign.eval import evaluate
from diffalign.rewards.base import Reward, RewardResult, RewardSpec


class Brightness(Reward):
    """Mean pixel value: a stateless reward for tests."""

    spec = RewardSpec(name="brightness", modality="image", needs_prompt=False)

    def score(self, samples):
        return RewardResult(samples.data.mean(dim=(1, 2, 3)))


class Redness(Reward):
    """A judge with per-attribute verdicts: `red_ok` (mean red channel above 0.5), `square_ok` (NaN: never named)."""

    spec = RewardSpec(name="redness", modality="image", needs_prompt=True)

    def score(self, samples):
        red = samples.data[:, 0].mean(dim=(1, 2))
        ok = (red > 0.5).float()
        nan = torch.full_like(ok, float("nan"))
        return RewardResult(red, {"red_ok": ok, "square_ok": nan, "joint": ok})


def test_evaluate_writes_grid_and_reports(sd_path, lora_out, tmp_path, capsys):
    prompts = {"held_out": ["a red circle", "a blue square"], "train": ["a green triangle"]}
    res = evaluate(sd_path, lora_out, prompts, Brightness(), tmp_path / "ev", seeds_per_prompt=2,
                   guidance_scale=3.0, num_inference_steps=2, grid_columns=3, judges=[Redness()],
                   labelled_by="brightness")
    assert set(res) == {"held_out", "train"} and res["held_out"]["n"] == 4 and res["train"]["n"] == 2
    r = res["held_out"]["scorers"]["brightness"]
    assert r["wins"] + r["ties"] + r["losses"] == 4 and r["win_rate"]["lo"] <= r["win_rate"]["mean"] <= r["win_rate"]["hi"]
    assert r["labelled_training_data"] and not res["held_out"]["scorers"]["redness"]["labelled_training_data"]
    attrs = res["held_out"]["attributes"]["redness"]
    assert set(attrs) == {"red", "joint"} and attrs["red"]["n"] == 4  # the all-NaN attribute is left out
    assert attrs["red"]["base"]["lo"] <= attrs["red"]["base"]["mean"] <= attrs["red"]["base"]["hi"]
    out = capsys.readouterr().out
    assert "held_out: n=4 brightness win rate vs base" in out and "[labelled the training data]" in out
    assert "held_out: n=4 redness win rate vs base" in out and "held_out: redness accuracy base → tuned" in out
    assert "warning" not in out  # an independent judge is present
    rep = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert rep["settings"]["lora"] is True and rep["results"]["train"]["n"] == 2 and rep["settings"]["judges"] == ["redness"]
    md = (tmp_path / "ev" / "report.md").read_text()
    assert "| held_out | brightness (labeller) | 4 |" in md and "| held_out | redness | red | 4 |" in md
    from PIL import Image

    grid = Image.open(tmp_path / "ev" / "grid.png")
    assert grid.size == (3 * (96 + 6) + 6, 2 * (96 + 6) + 24 + 6)  # 3 columns × 2 rows (base, tuned + captions) of 96 px cells
    sc = json.loads((tmp_path / "ev" / "scores.json").read_text())["held_out"]
    assert sc["seeds"] == [0, 1, 2, 3] and sc["prompts"][:2] == ["a red circle"] * 2  # every row its own noise
    assert len(sc["redness"]["tuned"]) == 4 and rep["settings"]["shared_noise"] is False


def test_sample_rows_give_every_row_its_own_seed_unless_noise_is_shared():
    from diffalign.eval import sample_rows

    ps = ["a", "b", "c"]
    rows, seeds = sample_rows(ps, 2, seed=10)
    assert rows == ["a", "a", "b", "b", "c", "c"] and seeds == [10, 11, 12, 13, 14, 15]
    # the old scheme: every prompt starts from the same two noises (rows correlated across prompts)
    assert sample_rows(ps, 2, seed=10, shared_noise=True) == (rows, [10, 11, 10, 11, 10, 11])


def test_evaluate_warns_when_the_only_scorer_labelled_the_data(sd_path, lora_out, tmp_path, capsys):
    evaluate(sd_path, lora_out, {"p": ["a red circle"]}, Brightness(), tmp_path / "ev", num_inference_steps=2,
             labelled_by="brightness")
    assert "warning: the only evaluation reward, brightness, labelled the training data" in capsys.readouterr().out


def test_grid_columns_spread_over_the_distinct_prompts():
    from diffalign.eval.report import spread

    prompts = [p for p in ["a", "b", "c", "d", "e", "f"] for _ in range(4)]
    assert spread(prompts, 3) == [0, 8, 16]  # prompts a, c, e — not the first three rows (all "a")
    assert spread(["a", "a", "b", "b"], 3) == [0, 2, 1]  # fewer prompts than columns: every prompt, then seeds
