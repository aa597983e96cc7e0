"""The Reward base class: validation, NaN passthrough, chunking, grad mode, resampling, WeightedSum."""

import math

import pytest
import torch

from diffalign.rewards.base import Reward, RewardResult, RewardSpec, Samples, resample
from diffalign.rewards.combine import WeightedSum


class Brightness(Reward):
    """Mean pixel value; counts its calls to observe chunking."""

    spec = RewardSpec("brightness", "image", needs_prompt=False, differentiable=True)

    def __init__(self):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.tensor(2.0))
        self.calls = []

    def score(self, samples):
        self.calls.append(len(samples))
        raw = samples.data.mean(dim=(1, 2, 3))
        return RewardResult(self.scale * raw, {"raw": raw})


class PromptLength(Reward):
    spec = RewardSpec("prompt_length", "image", needs_prompt=True, differentiable=False)

    def score(self, samples):
        return RewardResult(torch.tensor([float(len(p)) for p in samples.prompts]) + 0 * samples.data.sum((1, 2, 3)))


class Loudness(Reward):
    spec = RewardSpec("loudness", "audio", needs_prompt=False, differentiable=True, sample_rate=8000, higher_is_better=False)

    def score(self, samples):
        assert samples.sample_rate == 8000
        return RewardResult(samples.data.pow(2).mean(dim=(1, 2)))


def test_spec_validation():
    with pytest.raises(ValueError, match="modality"):
        RewardSpec("x", "video")
    with pytest.raises(ValueError, match="scope"):
        RewardSpec("x", "image", scope="batch")
    with pytest.raises(ValueError, match="sample_rate"):
        RewardSpec("x", "audio")


def test_forward_shapes_nan_and_chunking():
    r = Brightness()
    x = torch.rand(5, 3, 8, 8)
    x[2, 0, 0, 0] = math.nan
    full = r(Samples(x))
    assert full.scores.dtype == torch.float32 and full.scores.shape == (5,)
    assert torch.isnan(full.scores[2]) and torch.isfinite(full.scores[[0, 1, 3, 4]]).all()
    assert torch.allclose(full.details["raw"][[0, 1]], x[[0, 1]].mean(dim=(1, 2, 3)))
    r.calls.clear()
    r.max_batch_size = 2
    chunked = r(Samples(x))
    assert r.calls == [2, 2]  # 4 finite rows in chunks of 2; the NaN row never reaches score()
    assert torch.allclose(full.scores, chunked.scores, equal_nan=True)


def test_grad_only_when_differentiable():
    x = torch.rand(2, 3, 4, 4, requires_grad=True)
    out = Brightness()(Samples(x))
    out.scores.sum().backward()
    assert x.grad is not None and torch.allclose(x.grad, torch.full_like(x, 2.0 / 48))
    y = torch.rand(2, 3, 4, 4, requires_grad=True)
    assert not PromptLength()(Samples(y, ["ab", "abc"])).scores.requires_grad


def test_prompts_required_and_none_prompt_is_nan():
    r = PromptLength()
    with pytest.raises(ValueError, match="one prompt per sample"):
        r(Samples(torch.rand(2, 3, 4, 4)))
    out = r(Samples(torch.rand(3, 3, 4, 4), ["ab", None, "abcd"]))
    assert out.scores[0] == 2 and math.isnan(out.scores[1]) and out.scores[2] == 4


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        Brightness()(Samples(torch.rand(2, 1, 4, 4)))
    with pytest.raises(ValueError, match="sample_rate"):
        Loudness()(Samples(torch.rand(2, 1, 16)))


def test_resample_matches_a_sine_and_is_identity_at_same_rate():
    t = torch.arange(1600, dtype=torch.float64) / 16000
    x = torch.sin(2 * math.pi * 440 * t)[None, None]
    y = resample(x, 16000, 48000)
    assert y.shape == (1, 1, 4800)
    t3 = torch.arange(4800, dtype=torch.float64) / 48000
    ref = torch.sin(2 * math.pi * 440 * t3)
    assert (y[0, 0, 200:-200] - ref[200:-200]).abs().max() < 1e-2  # edges see zero padding
    assert resample(x, 16000, 16000) is x


def test_audio_forward_resamples():
    x = 0.5 * torch.ones(2, 1, 16000)
    out = Loudness()(Samples(x, sample_rate=16000))
    assert torch.allclose(out.scores, torch.full((2,), 0.25), atol=2e-2)


def test_weighted_sum_is_nan_aware_and_logs_components():
    x = torch.rand(3, 3, 4, 4)
    ws = WeightedSum({"b": 1.0, "p": 0.5}, rewards={"b": Brightness(), "p": PromptLength()})
    assert ws.spec.needs_prompt and not ws.spec.differentiable
    out = ws(Samples(x, ["a", "bb", "ccc"]))
    b = 2 * x.mean(dim=(1, 2, 3))
    assert torch.allclose(out.scores, b + 0.5 * torch.tensor([1.0, 2.0, 3.0]))
    assert set(out.details) >= {"b", "p", "b/raw", "p/raw", "raw"}
    x[1, 0, 0, 0] = math.nan  # not applicable to any component -> NaN
    assert torch.isnan(ws(Samples(x, ["a", "bb", "ccc"])).scores[1])


def test_weighted_sum_negates_distances_and_rejects_mixed_modalities():
    ws = WeightedSum({"l": 2.0}, rewards={"l": Loudness()})
    out = ws(Samples(0.5 * torch.ones(1, 1, 8000), sample_rate=8000))
    assert torch.allclose(out.scores, torch.tensor([-0.5]), atol=1e-4)
    with pytest.raises(ValueError, match="modalities"):
        WeightedSum({"b": 1.0, "l": 1.0}, rewards={"b": Brightness(), "l": Loudness()})
