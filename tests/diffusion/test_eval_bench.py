"""Evaluation against the base (statistics, report, CLI) and ``diffalign bench diffusion``."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from diffalign.eval import evaluate, read_prompts
from diffalign.eval.winrate import bootstrap_ci, compare
from diffalign.rewards.base import Reward, RewardResult, RewardSpec


class Brightness(Reward):
    """Mean pixel value: a stateless reward for tests."""

    spec = RewardSpec(name="brightness", modality="image", needs_prompt=False)

    def score(self, samples):
        return RewardResult(samples.data.mean(dim=(1, 2, 3)))


def test_compare_counts_ties_half_and_gives_cis():
    base = np.array([0.1, 0.5, 0.5, 0.9, np.nan])
    tuned = np.array([0.2, 0.5, 0.4, 1.0, 0.3])
    r = compare(base, tuned)
    assert r["n"] == 4 and (r["wins"], r["ties"], r["losses"]) == (2, 1, 1)
    assert r["win_rate"]["mean"] == pytest.approx((2 + 0.5) / 4)
    assert r["gain"]["mean"] == pytest.approx(np.mean([0.1, 0.0, -0.1, 0.1]))
    lo, hi = bootstrap_ci(np.r_[np.ones(70), np.zeros(30)])
    assert 0.6 < lo < 0.7 < hi < 0.8  # ≈ 0.7 ± 1.96·√(0.21/100)
    assert bootstrap_ci(np.arange(5.0)) == bootstrap_ci(np.arange(5.0))  # seeded


def test_read_prompts(tmp_path):
    (tmp_path / "p.json").write_text(json.dumps({"train": ["a"], "held_out": ["b", "c"]}))
    assert read_prompts(tmp_path / "p.json", ["held_out", "train"]) == {"held_out": ["b", "c"], "train": ["a"]}
    with pytest.raises(ValueError, match=r"no split\(s\) \['test'\]"):
        read_prompts(tmp_path / "p.json", ["test"])
    (tmp_path / "p.txt").write_text("x\n\ny\n")
    assert read_prompts(tmp_path / "p.txt") == {"prompts": ["x", "y"]}


@pytest.fixture(scope="module")
def lora_out(sd_path, tmp_path_factory):
    """A perturbed LoRA of the tiny SD, saved for diffusers."""
    from diffalign.models.families import load_components
    from diffalign.models.lora import add_lora, save_lora

    comp = load_components(sd_path)
    add_lora(comp.unet, 4, 4, 0.0, ["to_k", "to_q", "to_v", "to_out.0"], "gaussian")
    with torch.no_grad():
        for n, p in comp.unet.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.5)
    return str(save_lora(comp.unet, "sd", tmp_path_factory.mktemp("lora") / "final"))


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
    assert grid.size[0] == 3 * grid.size[1] // 2  # 3 columns × 2 rows of square images
    sc = json.loads((tmp_path / "ev" / "scores.json").read_text())["held_out"]
    assert sc["seeds"] == [0, 1, 0, 1] and sc["prompts"][:2] == ["a red circle"] * 2


def test_eval_commands_import_without_torch():
    code = "import sys, diffalign.eval.commands, diffalign.train.offline_config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_eval_and_bench(dcfg, sd_path, lora_out, tmp_path, capsys):
    import yaml

    from diffalign.cli import main
    from diffalign.config import to_dict

    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps(["a red circle"]))
    assert main(["eval", "--base", sd_path, "--tuned", lora_out, "--prompts", str(prompts), "--reward", "nope",
                 "--steps", "2"]) != 0  # unknown reward: one clear line
    assert "nope" in capsys.readouterr().err
    assert main(["eval", "--base", sd_path]) == 2
    assert "needs --config, or --tuned, --prompts, --reward" in capsys.readouterr().err
    cfg = to_dict(dcfg(train={"batch_size": 2}))
    path = tmp_path / "c.yaml"
    path.write_text("# diffalign train c.yaml\n" + yaml.safe_dump(cfg))
    out = tmp_path / "bench.json"
    assert main(["bench", "diffusion", "--config", str(path), "--steps", "1", "--warmup", "0", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "latent cache" in text and "no cache" in text and "pairs/s" in text
    rows = json.loads(out.read_text())["rows"]
    assert [r["cache"] for r in rows] == [True, False] and all(r["pairs_per_s"] > 0 and r["steps"] == 1 for r in rows)
