"""Every registered reward (built-ins and toy plugins) passes the conformance suite offline."""

import importlib.util

import pytest

from diffalign.rewards import available, list_rewards
from diffalign.rewards.conformance import check_reward


@pytest.mark.parametrize("name", sorted(available()))
def test_conformance(name, built_rewards, no_network):
    reward = built_rewards(name)
    assert reward.spec.name == name
    with no_network():
        check_reward(reward)


def test_list_rewards_rows_match_built_specs(built_rewards):
    rows = {row.name: row for row in list_rewards()}
    for name in ("clip_score", "pickscore", "vendi", "fad"):
        spec = built_rewards(name).spec
        assert tuple(rows[name]) == (name, spec.modality, spec.scope, spec.differentiable)
    assert rows["fad"].scope == "set" and rows["clap"].modality == "audio"


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("laion_clap") is None, reason="laion extra (laion_clap) not installed")
def test_laion_clap_backend_is_deterministic_and_differentiable(no_network):
    """One forward/backward only: HTSAT-tiny at full size costs seconds per 10 s window on CPU."""
    import torch

    from diffalign.rewards import Samples, load

    with no_network():
        reward = load("clap", backend="laion_clap")
        x = (torch.rand(2, 1, 4000) * 1.6 - 0.8).requires_grad_(True)
        one = reward(Samples(x[:1], ["a dog barks"], sample_rate=16000))
        assert one.scores.shape == (1,) and one.scores.dtype == torch.float32
        one.scores.sum().backward()
        assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
        with torch.no_grad():  # no random crop, batch-independent
            two = reward(Samples(x.detach(), ["a dog barks", "rain"], sample_rate=16000))
        assert torch.allclose(two.scores[:1], one.scores.detach(), atol=1e-5)
