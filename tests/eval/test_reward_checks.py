"""A reward that cannot work is caught on a first small batch, before the whole evaluation samples."""

import math

import pytest
import torch

from diffalign.eval import evaluate
from diffalign.rewards.base import Reward, RewardResult, RewardSpec
from tests.helpers import MESSAGES


class Raises(Reward):
    spec = RewardSpec(name="raises", modality="image", needs_prompt=False)

    def score(self, samples):
        raise KeyError("model_head")


class AllNaN(Reward):
    spec = RewardSpec(name="all_nan", modality="image", needs_prompt=False)

    def score(self, samples):
        return RewardResult(torch.full((samples.data.shape[0],), math.nan))


class WrongShape(Reward):
    spec = RewardSpec(name="wrong_shape", modality="image", needs_prompt=False)

    def score(self, samples):
        return RewardResult(torch.zeros(samples.data.shape[0], 2))


class Fine(Reward):
    spec = RewardSpec(name="fine", modality="image", needs_prompt=False)

    def score(self, samples):
        return RewardResult(samples.data.mean(dim=(1, 2, 3)))


@pytest.mark.parametrize(
    "case,judge,match",
    [
        ("reward: plugin raises", Raises(), r"eval reward 'raises' failed on a first batch of 2 images: KeyError: 'model_head'"),
        ("reward: returns NaN", AllNaN(), r"eval reward 'all_nan' returned no finite score for a first batch of 2 images"),
        ("reward: wrong shape", WrongShape(), r"eval reward 'wrong_shape' failed on a first batch of 2 images: "
                                              r"RuntimeError: .*returned \[2, 2\], expected \[2\]"),
    ],
)
def test_a_broken_reward_fails_on_the_first_batch(sd_path, lora_out, tmp_path, monkeypatch, case, judge, match):
    import diffalign.sampling.pipeline as pipeline

    calls, real = [], pipeline.sample

    def counting(pipe, prompts, *a, **k):
        calls.append(len(prompts))
        return real(pipe, prompts, *a, **k)

    monkeypatch.setattr(pipeline, "sample", counting)
    prompts = {"held_out": ["a red circle", "a blue square", "a green triangle"]}
    with pytest.raises(RuntimeError, match=match) as e:
        evaluate(sd_path, lora_out, prompts, Fine(), tmp_path / "ev", seeds_per_prompt=2, guidance_scale=3.0,
                 num_inference_steps=2, batch_size=2, judges=[judge])
    assert calls == [2]  # only the first small batch was sampled
    assert not (tmp_path / "ev").exists()
    MESSAGES[case] = f"error: RuntimeError: {e.value}"
