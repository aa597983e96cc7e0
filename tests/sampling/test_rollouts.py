"""Rollouts: groups of clean latents and decoded samples; overlapped scoring equals synchronous scoring."""

import pytest
import torch

from diffalign.sampling.rollouts import roll_out


def _decode(pipe):
    def decode(z):
        return ((pipe.vae.decode(z / pipe.vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)

    return decode


def _score(samples, prompts):
    red = samples[:, 0].mean(dim=(1, 2))
    return red * 2, {"red": red}


def test_overlapped_scoring_equals_synchronous_scoring(pipe):
    prompts, seeds = ["a red circle", "a blue square", "a green triangle"], [5, 6, 7, 8, 9, 10]
    kw = dict(guidance_scale=2.0, num_inference_steps=2, score=_score, chunk=4)
    a = roll_out(pipe, _decode(pipe), prompts, 2, seeds, overlap=True, **kw)
    b = roll_out(pipe, _decode(pipe), prompts, 2, seeds, overlap=False, **kw)
    assert torch.equal(a.scores, b.scores) and torch.equal(a.details["red"], b.details["red"])
    assert torch.equal(a.latents, b.latents) and a.latents.shape == (6, 4, 8, 8) and a.samples.shape == (6, 3, 16, 16)
    assert a.prompt_of(3) == "a blue square" and a.seeds == seeds
    # a sample depends only on its seed: the same seed in another chunk gives the same latent
    c = roll_out(pipe, _decode(pipe), ["a blue square"], 2, [7, 8], overlap=False, **kw)
    torch.testing.assert_close(c.latents, a.latents[2:4], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="6 samples but 5 seeds"):
        roll_out(pipe, _decode(pipe), prompts, 2, seeds[:5], **kw)
