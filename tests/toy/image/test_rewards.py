"""toy_fidelity and toy_clip as reward plugins: conformance, ground truth vs mismatches, the registry."""

import numpy as np
import pytest
import torch

from diffalign.rewards.base import Samples
from diffalign.rewards.conformance import check_reward
from diffalign.toy.image.rewards import build_toy_clip, build_toy_fidelity
from diffalign.toy.image.world import COLOURS, SHAPES, ShapesWorld, parse_prompt, render


@pytest.fixture(scope="module")
def truth():
    world = ShapesWorld()
    rng = np.random.default_rng(4)
    prompts = [world.prompts[i].text for i in rng.integers(len(world.prompts), size=200)]
    images = torch.from_numpy(render(world.sample_specs(prompts, seed=5)))
    wrong = []
    for text in prompts:
        p = parse_prompt(text)
        c = [x for x in COLOURS if x != p.colour][rng.integers(5)]
        s = [x for x in SHAPES if x != p.shape][rng.integers(2)]
        wrong.append(f"a {c} {s}")
    return images, prompts, wrong


@pytest.fixture(scope="module")
def toy_clip_reward(image_assets):
    return build_toy_clip()  # default weights: the shipped assets


def test_toy_fidelity_conformance_and_scores(truth):
    reward = build_toy_fidelity()
    check_reward(reward)  # generic prompts ("a dog barking twice") and 40×48 images included
    images, prompts, wrong = truth
    right = reward(Samples(images, prompts=prompts))
    assert right.details["joint"].mean() >= 0.95 and right.scores.mean() >= 0.9
    mismatched = reward(Samples(images, prompts=wrong))
    assert mismatched.details["joint"].mean() <= 0.2 and mismatched.scores.mean() <= 0.2
    upscaled = torch.nn.functional.interpolate(images[:20], size=64, mode="nearest")
    assert reward(Samples(upscaled, prompts=prompts[:20])).details["joint"].mean() >= 0.95
    assert reward(Samples(images[:2], prompts=["a dog barking", "x"])).scores.abs().max() == 0
    with pytest.raises(ValueError, match="takes no weights"):
        build_toy_fidelity(weights="some/path")


def test_toy_clip_conformance_and_scores(toy_clip_reward, truth):
    check_reward(toy_clip_reward)
    assert toy_clip_reward.spec.name == "toy_clip"
    images, prompts, wrong = truth
    right = toy_clip_reward(Samples(images, prompts=prompts)).scores
    mism = toy_clip_reward(Samples(images, prompts=wrong)).scores
    assert (right > mism).float().mean() >= 0.95
    assert (mism > (right.mean() + mism.mean()) / 2).float().mean() <= 0.2


def test_registry_finds_toy_rewards(image_assets):
    from diffalign.rewards import available, load

    assert {"toy_fidelity", "toy_clip"} <= set(available())
    assert load("toy_fidelity").spec.name == "toy_fidelity"
