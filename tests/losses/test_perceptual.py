"""NCP's distance: closed forms, the identity-encoder reduction, shared draws."""

import pytest
import torch

from diffalign.losses.denoising import LatentDistance, noise_pairs, per_sample_error, predicted_x0
from diffalign.losses.perceptual import PerceptualDistance, feature_distance


@pytest.fixture(scope="module")
def sch():
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def identity(z, s, cond):
    return [z]


def test_one_level_is_the_per_sample_mse_and_levels_normalise_by_channel():
    p, t = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    assert torch.equal(feature_distance([p], [t]), per_sample_error(p, t))
    # two levels: the 4×4 one is pooled to 2×2; each channel divided by the target's RMS over (batch, h, w)
    q, u = torch.randn(3, 1, 2, 2), torch.randn(3, 1, 2, 2)
    pp, tp = torch.nn.functional.avg_pool2d(p, 2), torch.nn.functional.avg_pool2d(t, 2)
    rms_t = tp.pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
    rms_u = u.pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
    by_hand = torch.cat([(pp - tp) / rms_t, (q - u) / rms_u], dim=1).pow(2).mean(dim=(1, 2, 3))
    torch.testing.assert_close(feature_distance([p, q], [t, u], normalize=True), by_hand)
    with pytest.raises(ValueError, match="as many predicted as target levels"):
        feature_distance([p], [t, u])


def test_identity_encoder_on_direct_target_is_the_latent_distance(sch):
    n = noise_pairs(sch, torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), (0, 1000), "epsilon")
    pred = torch.randn_like(n.noise, requires_grad=True)
    d = PerceptualDistance(identity, sch, "epsilon", "direct")
    d.prepare(n, None)
    assert torch.equal(d(pred, n, None), LatentDistance()(pred, n, None))


def test_t_minus_1_is_the_ddpm_posterior_step_with_shared_noise(sch):
    """With an identity encoder: ẑ − z* = c₀·(x̂₀ − x₀), c₀ = √ᾱ_{t−1}·β_t/(1 − ᾱ_t) (Ho et al. Eq. 7)."""
    torch.manual_seed(0)
    n = noise_pairs(sch, torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), (1, 1000), "epsilon")
    pred = torch.randn_like(n.noise)
    d = PerceptualDistance(identity, sch, "epsilon", "t-1")
    d.prepare(n, None)
    assert torch.equal(n.aux["z"][:2], n.aux["z"][2:]) and torch.equal(n.aux["s"], n.t - 1)  # shared by the pair
    a_t, a_s = sch.alphas_cumprod[n.t], sch.alphas_cumprod[n.t - 1]
    c0 = (a_s.sqrt() * (1 - a_t / a_s) / (1 - a_t)).view(-1, 1, 1, 1)
    x0_hat = predicted_x0(sch, n.x_t, n.t, pred, "epsilon")
    torch.testing.assert_close(d(pred, n, None), per_sample_error(c0 * x0_hat, c0 * n.x0), rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("target", ["uniform", "x0"])
def test_other_targets_compare_clean_predictions(sch, target):
    torch.manual_seed(1)
    n = noise_pairs(sch, torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8), (0, 1000), "epsilon")
    d = PerceptualDistance(identity, sch, "epsilon", target)
    d.prepare(n, None)
    exact = d(n.noise, n, None)  # the true noise predicts x_0 exactly: distance 0
    assert float(exact.abs().max()) < 1e-6
    assert float(d(torch.randn_like(n.noise), n, None).min()) > 0
    if target == "uniform":
        assert torch.equal(n.aux["t_prime"][:2], n.aux["t_prime"][2:])
    with pytest.raises(ValueError, match="space.target must be one of"):
        PerceptualDistance(identity, sch, "epsilon", "t+1")
