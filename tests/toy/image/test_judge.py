"""The independent judge `toy_judge`: renders, VAE round trips, mismatched prompts, the reward plugin."""

import numpy as np
import pytest
import torch

from diffalign.toy.image.judge import ATTRIBUTES, JudgeConfig, check_judge, judge_prompts, mismatched
from diffalign.toy.image.world import ShapesWorld, render


@pytest.fixture(scope="module")
def judge(image_assets):
    from diffalign.toy.image.judge import load_judge

    return load_judge(image_assets / "toy_judge")


@pytest.fixture(scope="module")
def vae(image_assets):
    from diffusers import AutoencoderKL

    return AutoencoderKL.from_pretrained(image_assets / "pipeline" / "vae")


def test_committed_judge_reads_renders_round_trips_and_refuses_mismatches(judge, vae):
    out = check_judge(judge, ShapesWorld(), vae, 400, seed=123)  # seeds the build never used
    assert out["renders_joint"] >= 0.99
    assert out["vae_round_trip_joint"] >= 0.95
    assert out["mismatched_joint"] <= 0.05


def test_every_named_attribute_is_read_and_unnamed_ones_are_nan(judge):
    world = ShapesWorld()
    prompts = ["a small red circle on a grey background", "a blue square", "a large orange triangle"]
    images = torch.from_numpy(render(world.sample_specs(prompts, seed=7)))
    out = judge_prompts(judge, images, prompts)
    assert out["joint"].all() and (out["p_all"] > 0.5).all()
    assert torch.isnan(out["background_ok"][1:]).all() and torch.isnan(out["size_ok"][1]) and out["size_ok"][2] == 1
    # p_all is the product over what the prompt names
    by_hand = out["p_colour"][0] * out["p_shape"][0] * out["p_background"][0] * out["p_size"][0]
    torch.testing.assert_close(out["p_all"][0], by_hand)
    wrong_bg = judge_prompts(judge, images[:1], ["a small red circle on a white background"])
    assert not wrong_bg["joint"][0] and wrong_bg["background_ok"][0] == 0 and wrong_bg["p_all"][0] < 0.1
    blank = torch.full((1, 3, 32, 32), 0.5)  # nothing drawn on grey
    assert not judge_prompts(judge, blank, ["a red circle"])["joint"][0]
    rng = np.random.default_rng(0)
    assert all(mismatched(p, rng).split()[-2:] != p.split()[-2:] or "background" in p for p in prompts)


def test_reward_plugin_conforms_and_reads_lenient_prompts(image_assets, no_network=None):
    from diffalign.rewards import Samples, load
    from diffalign.rewards.conformance import check_reward

    reward = load("toy_judge")
    check_reward(reward)
    world = ShapesWorld()
    images = torch.from_numpy(render(world.sample_specs(["a red circle"] * 2, seed=1)))
    out = reward(Samples(images, prompts=["a red circle", "a dog barking"]))
    assert out.scores[0] > 0.5 and out.scores[1] == 0  # nothing of the world named: nothing to follow
    assert set(out.details) >= {"joint", *(f"{a}_ok" for a in ATTRIBUTES), "raw"}


def test_quick_training_runs_and_saves(tmp_path):
    from diffalign.toy.image.judge import load_judge, save_judge, train_judge

    model, metrics = train_judge(ShapesWorld(), None, JudgeConfig.quick(), seed=0, log=lambda s: None)
    assert metrics["vae_round_trips"] == 0 and metrics["train_images"] == 256
    save_judge(model, JudgeConfig.quick(), tmp_path / "j", metrics)
    again = load_judge(tmp_path / "j")
    x = torch.rand(2, 3, 32, 32)
    assert all(torch.equal(model(x)[a], again(x)[a]) for a in ATTRIBUTES)
    assert not list((tmp_path / "j").glob("*.bin")) and not list((tmp_path / "j").glob("*.pt"))
