"""The custom pipelines load with ``custom_pipeline=`` on the toy pipeline and reproduce ``diffalign.sampling``."""

from pathlib import Path

import pytest
import torch

from diffalign.sampling.ddim import ddim_invert, ddim_reconstruct, ddim_sample

ROOT = Path(__file__).resolve().parents[2]
TOY = str(ROOT / "assets/toy/image/pipeline")
PROMPTS = ["a small red circle on a grey background", "a large blue square on a white background"]
#: Round trip image → x_999 → image on the toy pipeline, relative latent MSE ‖rec − x_0‖²/‖x_0‖²:
#: measured 0.4–0.6% at 50 steps (bound 2%) and 5–13% at 10 steps (bound 20%).
ROUND_TRIP_BOUND = {50: 0.02, 10: 0.2}


def _load(name):
    from diffusers import DiffusionPipeline

    pipe = DiffusionPipeline.from_pretrained(TOY, custom_pipeline=str(ROOT / "pipelines" / name), trust_remote_code=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _gens(n=2):
    return [torch.Generator().manual_seed(s) for s in range(n)]


@pytest.fixture(scope="module")
def logprob_pipe():
    return _load("ddim_logprob.py")


@pytest.fixture(scope="module")
def inversion_pipe():
    return _load("ddim_inversion.py")


def test_logprob_pipeline_with_eta0_is_the_plain_sd_pipeline(logprob_pipe):
    from diffusers import StableDiffusionPipeline

    assert type(logprob_pipe).__name__ == "StableDiffusionLogProbPipeline"
    out = logprob_pipe(PROMPTS, num_inference_steps=10, guidance_scale=3.0, eta=0.0, generator=_gens(), output_type="pt")
    ref = StableDiffusionPipeline.from_pretrained(TOY)
    ref.set_progress_bar_config(disable=True)
    img = ref(PROMPTS, num_inference_steps=10, guidance_scale=3.0, generator=_gens(), output_type="pt").images
    torch.testing.assert_close(out.images, img, rtol=0, atol=1e-6)
    assert out.latents.shape == (2, 11, 4, 8, 8) and torch.equal(out.log_probs, torch.zeros(2, 10))


def test_logprob_pipeline_reproduces_diffalign_sampling(logprob_pipe):
    p = logprob_pipe
    out = p(PROMPTS, num_inference_steps=8, guidance_scale=3.0, eta=1.0, generator=_gens(), output_type="pt")
    # the same sampler through diffalign.sampling, with the pipeline's parts
    pos, neg = p.encode_prompt(PROMPTS, "cpu", 1, True)
    p.scheduler.set_timesteps(8)

    def eps_fn(x, t):
        e = p.unet(torch.cat([x, x]), torch.cat([t, t]), torch.cat([neg, pos])).sample
        u, c = e.chunk(2)
        return u + 3.0 * (c - u)

    gens = _gens()
    x_T = torch.stack([torch.randn(4, 8, 8, generator=g) for g in gens])
    x0, lat, lp = ddim_sample(eps_fn, x_T, [int(t) for t in p.scheduler.timesteps], p.scheduler.alphas_cumprod,
                              float(p.scheduler.final_alpha_cumprod), 1.0, gens)
    torch.testing.assert_close(out.latents, lat, rtol=0, atol=1e-6)
    torch.testing.assert_close(out.log_probs, lp, rtol=0, atol=1e-5)
    assert lp.shape == (2, 8) and bool(lp.abs().sum() > 0)


@pytest.mark.parametrize("steps", [50, 10])
def test_inversion_round_trip_error_is_below_the_documented_bound(inversion_pipe, steps, capsys):
    from diffusers import StableDiffusionPipeline

    ref = StableDiffusionPipeline.from_pretrained(TOY)
    ref.set_progress_bar_config(disable=True)
    images = ref(PROMPTS, num_inference_steps=25, guidance_scale=3.0, generator=_gens(), output_type="pt").images
    out = inversion_pipe(PROMPTS, image=images, num_inference_steps=steps, output_type="pt")
    err = out.reconstruction_error
    with capsys.disabled():
        print(f"\n[inversion round trip, toy pipeline, {steps} steps to t=999] relative latent MSE "
              f"{[round(float(e), 4) for e in err]} (bound {ROUND_TRIP_BOUND[steps]})")
    assert bool((err < ROUND_TRIP_BOUND[steps]).all())
    assert out.images.shape == images.shape and (out.images - images).abs().mean() < 0.1
    # the same through diffalign.sampling
    p = inversion_pipe
    emb, _ = p.encode_prompt(PROMPTS, "cpu", 1, False)
    eps_fn = lambda x, t, rows: p.unet(x, t, emb[rows]).sample  # noqa: E731
    t = torch.full((2,), 999)
    x_t = ddim_invert(eps_fn, out.latents, t, p.scheduler.alphas_cumprod, steps)
    torch.testing.assert_close(out.inverted_latents, x_t, rtol=0, atol=1e-6)
    rec = ddim_reconstruct(eps_fn, x_t, t, p.scheduler.alphas_cumprod, steps)
    torch.testing.assert_close(out.reconstructed_latents, rec, rtol=0, atol=1e-6)


def test_inversion_pipeline_takes_one_level_per_image(inversion_pipe):
    x0 = torch.randn(2, 4, 8, 8)
    out = inversion_pipe(PROMPTS, latents=x0, num_inference_steps=10, t=[100, 900], output_type="pt")
    a = inversion_pipe.scheduler.alphas_cumprod
    eps = (out.inverted_latents - a[[100, 900]].sqrt().view(-1, 1, 1, 1) * x0) / (1 - a[[100, 900]]).sqrt().view(-1, 1, 1, 1)
    assert 0.2 < float(eps[1].std()) < 2.0 and out.reconstruction_error.shape == (2,)
