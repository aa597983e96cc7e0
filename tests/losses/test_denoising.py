"""The diffusion adapter of the loss core: the β convention, targets, errors, shared (t, ε) per pair."""

import pytest
import torch

from diffalign.losses import LossParams
from diffalign.losses.denoising import (
    LatentDistance,
    core_params,
    denoising_target,
    min_snr_weight,
    noise_pairs,
    per_sample_error,
    predicted_x0,
    snr,
)

B = 3
BETA = 5000.0


@pytest.fixture(scope="module")
def sch():
    from diffusers import DDPMScheduler

    return DDPMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")


def test_beta_convention_is_one_halving():
    p = LossParams(beta=BETA, label_smoothing=0.1)
    q = core_params(p)
    assert q.beta == BETA / 2 and q.label_smoothing == 0.1 and p.beta == BETA


def test_noise_and_timestep_are_shared_within_each_pair(sch):
    chosen, rejected = torch.randn(B, 4, 8, 8), torch.randn(B, 4, 8, 8)
    n = noise_pairs(sch, chosen, rejected, (0, 1000), "epsilon")
    assert torch.equal(n.t[:B], n.t[B:]) and torch.equal(n.noise[:B], n.noise[B:])
    assert len(set(n.t[:B].tolist())) > 1 or B == 1  # but not shared across pairs
    assert not torch.equal(n.noise[0], n.noise[1])


def test_targets_and_errors(sch):
    x0, eps, t = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.tensor([0, 10, 500, 999])
    assert torch.equal(denoising_target(sch, x0, eps, t, "epsilon"), eps)
    assert torch.equal(denoising_target(sch, x0, eps, t, "sample"), x0)
    a = sch.alphas_cumprod[t].view(-1, 1, 1, 1)
    torch.testing.assert_close(denoising_target(sch, x0, eps, t, "v_prediction"), a.sqrt() * eps - (1 - a).sqrt() * x0)
    with pytest.raises(ValueError, match="prediction_type"):
        denoising_target(sch, x0, eps, t, "flow")
    e = per_sample_error(x0.half(), eps.half())
    assert e.dtype == torch.float32 and e.shape == (4,)
    torch.testing.assert_close(e, ((x0.half().float() - eps.half().float()) ** 2).mean(dim=(1, 2, 3)))
    s = snr(sch, t)
    torch.testing.assert_close(min_snr_weight(sch, t, 5.0, "epsilon"), torch.clamp(s, max=5) / s)
    torch.testing.assert_close(min_snr_weight(sch, t, 5.0, "v_prediction"), torch.clamp(s, max=5) / (s + 1))


def test_noised_pairs_carry_x0_and_the_latent_distance_is_the_mse(sch):
    chosen, rejected = torch.randn(B, 4, 8, 8), torch.randn(B, 4, 8, 8)
    n = noise_pairs(sch, chosen, rejected, (0, 1000), "epsilon")
    assert torch.equal(n.x0, torch.cat([chosen, rejected]))
    pred = torch.randn_like(n.noise)
    d = LatentDistance()
    d.prepare(n, None)
    assert torch.equal(d(pred, n, None), per_sample_error(pred, n.target))


@pytest.mark.parametrize("kind", ["epsilon", "v_prediction", "sample"])
def test_predicted_x0_inverts_the_target(sch, kind):
    x0, eps, t = torch.randn(4, 4, 8, 8), torch.randn(4, 4, 8, 8), torch.tensor([1, 10, 500, 990])
    x_t = sch.add_noise(x0, eps, t)
    target = denoising_target(sch, x0, eps, t, kind)
    torch.testing.assert_close(predicted_x0(sch, x_t, t, target, kind), x0, rtol=1e-4, atol=2e-4)


def test_per_pair_noise_does_not_depend_on_the_batch():
    from diffusers import DDPMScheduler

    from diffalign.losses.denoising import noise_pairs

    sch = DDPMScheduler()
    x = torch.randn(3, 4, 8, 8)
    full = noise_pairs(sch, x, -x, (0, 1000), "epsilon", seeds=torch.tensor([11, 22, 33]))
    part = noise_pairs(sch, x[1:], -x[1:], (0, 1000), "epsilon", seeds=torch.tensor([22, 33]))
    assert torch.equal(full.t[1:3], part.t[:2]) and torch.equal(full.noise[1:3], part.noise[:2])
    assert torch.equal(full.noise[:3], full.noise[3:])  # one ε per pair, shared by both halves
    other = noise_pairs(sch, x, -x, (0, 1000), "epsilon", seeds=torch.tensor([12, 22, 33]))
    assert not torch.equal(other.noise[0], full.noise[0])
