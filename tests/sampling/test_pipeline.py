"""The per-seed pipeline sampler: one generator per (prompt, seed), whatever the batching."""

import pytest
import torch

from diffalign.sampling.pipeline import sample


def test_samples_do_not_depend_on_batching(pipe):
    prompts, seeds = ["a red circle", "a blue square", "a red circle"], [3, 4, 5]
    kw = dict(guidance_scale=2.0, num_inference_steps=2, progress=False, height=16, width=16)
    a = sample(pipe, prompts, seeds, batch_size=3, **kw)
    b = sample(pipe, prompts, seeds, batch_size=1, **kw)
    assert a.shape == (3, 3, 16, 16) and 0 <= float(a.min()) and float(a.max()) <= 1
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    c = sample(pipe, prompts[:1], [seeds[2]], **kw)
    assert (c[0] - a[0]).abs().max() > 1e-3  # another seed, another image
    with pytest.raises(ValueError, match="3 prompts but 2 seeds"):
        sample(pipe, prompts, seeds[:2], **kw)


def test_explicit_latent_shape_draws_the_same_noise_as_the_pipeline(pipe):
    kw = dict(guidance_scale=2.0, num_inference_steps=2, progress=False, height=16, width=16)
    a = sample(pipe, ["a red circle"], [7], **kw)
    b = sample(pipe, ["a red circle"], [7], latent_shape=(4, 8, 8), **kw)
    torch.testing.assert_close(a, b, rtol=0, atol=0)
