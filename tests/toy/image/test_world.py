"""Renderer, grammar and split of the shapes world; the graded fidelity scorer on ground truth."""

import numpy as np
import pytest
import torch

from diffalign.toy.image.scorer import score_fidelity
from diffalign.toy.image.world import BACKGROUNDS, COLOURS, SHAPES, ShapesWorld, parse_prompt, render


@pytest.fixture(scope="module")
def world():
    return ShapesWorld()


@pytest.fixture(scope="module")
def truth(world):
    """600 renders of random prompts (held-out triples included) and their prompts."""
    rng = np.random.default_rng(0)
    prompts = [world.prompts[i].text for i in rng.integers(len(world.prompts), size=600)]
    images = torch.from_numpy(render(world.sample_specs(prompts, seed=1)))
    return images, prompts


def test_grammar_round_trip_and_errors(world):
    assert len(world.prompts) == 216
    for p in world.prompts:
        assert parse_prompt(p.text) == p
    assert parse_prompt("A small blue square on a white background.").size == "small"
    for bad in ["a pink circle", "red circle", "a red circle on white", "a red hexagon"]:
        with pytest.raises(ValueError, match="shapes grammar"):
            parse_prompt(bad)


def test_split_is_fixed_disjoint_and_balanced(world):
    train, held = set(world.train_prompts), set(world.held_out_prompts)
    assert not train & held and len(train) == 162 and len(held) == 54
    assert held == set(ShapesWorld().held_out_prompts)  # fixed, not drawn per run
    # held-out prompts all name a background: one per colour×shape, each background once per colour
    assert all(parse_prompt(p).background for p in held)
    for colour in COLOURS:
        assert sorted(world.held_out_triples[(colour, s)] for s in SHAPES) == sorted(BACKGROUNDS)
    # the held-out (colour, shape) x background combinations are never named in a training prompt
    named = {(p.colour, p.shape, p.background) for p in map(parse_prompt, train)}
    assert not any((c, s, b) in named for (c, s), b in world.held_out_triples.items())


def test_renderer_deterministic_with_jitter(world):
    prompts = ["a red circle"] * 8
    a = render(world.sample_specs(prompts, seed=7))
    b = render(world.sample_specs(prompts, seed=7))
    assert a.shape == (8, 3, 32, 32) and a.dtype == np.float32
    assert np.array_equal(a, b) and 0 <= a.min() and a.max() <= 1
    assert np.abs(a[0] - a[1]).max() > 0.1  # size / position / colour jitter
    # anti-aliased edges: intermediate values exist
    assert ((a > 0.02) & (a < 0.98)).any()


def test_fidelity_on_ground_truth_at_least_95_percent(truth):
    images, prompts = truth
    out = score_fidelity(images, prompts)
    assert out["joint"].float().mean() >= 0.95
    assert out["graded"].mean() >= 0.9
    assert out["background_ok"].float().mean() >= 0.95 and out["size_ok"].float().mean() >= 0.95
    assert ((out["graded"] >= 0) & (out["graded"] <= 1)).all()


def test_fidelity_on_mismatched_pairs_at_most_20_percent(truth):
    images, prompts = truth
    rng = np.random.default_rng(1)
    colours, shapes = list(COLOURS), list(SHAPES)
    both, colour_only, shape_only = [], [], []
    for text in prompts:
        p = parse_prompt(text)
        c = [x for x in colours if x != p.colour][rng.integers(5)]
        s = [x for x in shapes if x != p.shape][rng.integers(2)]
        both.append(f"a {c} {s}")
        colour_only.append(f"a {c} {p.shape}")
        shape_only.append(f"a {p.colour} {s}")
    out = score_fidelity(images, both)
    assert out["joint"].float().mean() <= 0.2 and out["graded"].mean() <= 0.2
    truth_graded = score_fidelity(images, prompts)["graded"]
    for wrong in (colour_only, shape_only):
        o = score_fidelity(images, wrong)
        assert o["joint"].float().mean() <= 0.2
        assert (o["graded"] < truth_graded).float().mean() >= 0.95


def test_fidelity_is_graded_and_robust(truth):
    images, prompts = truth
    noisy = (images + 0.05 * torch.randn(images.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 1)
    out = score_fidelity(noisy, prompts)
    assert out["joint"].float().mean() >= 0.9
    assert out["graded"].unique().numel() >= 0.99 * len(prompts)  # no ties in practice
    # an empty image matches nothing
    blank = torch.ones(2, 3, 32, 32)
    assert score_fidelity(blank, ["a red circle", "a blue square"])["graded"].max() < 0.05
    with pytest.raises(ValueError, match="2 images but 1 prompts"):
        score_fidelity(blank, ["a red circle"])
