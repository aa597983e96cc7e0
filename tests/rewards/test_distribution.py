"""FAD / Vendi / leave-one-out maths against closed forms, scipy and brute force."""

import math

import numpy as np
import pytest
import torch

from diffalign.rewards.base import Samples
from diffalign.rewards.distribution import (
    ReferenceStats,
    frechet_distance,
    frechet_distance_inf,
    gaussian_stats,
    leave_one_out,
    leave_one_out_frechet,
    leave_one_out_vendi2,
    vendi_score,
)
from diffalign.rewards.fad import FrechetDistance, PerSampleFrechet
from diffalign.rewards.set_reward import FlattenEmbedder, LeaveOneOut
from diffalign.rewards.vendi import Vendi

scipy_linalg = pytest.importorskip("scipy.linalg")


def _scipy_fd(x_ref, x_gen):
    mu1, mu2 = x_ref.mean(0), x_gen.mean(0)
    s1, s2 = np.cov(x_ref, rowvar=False), np.cov(x_gen, rowvar=False)
    covmean = scipy_linalg.sqrtm(s1 @ s2)
    covmean = covmean.real if np.iscomplexobj(covmean) else covmean
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("n,d", [(200, 16), (40, 8)])
def test_frechet_matches_scipy_sqrtm(n, d):
    rng = np.random.default_rng(0)
    x_ref = rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    x_gen = 0.5 + rng.normal(size=(n, d)) @ rng.normal(size=(d, d))
    mu1, s1 = gaussian_stats(torch.from_numpy(x_ref))
    mu2, s2 = gaussian_stats(torch.from_numpy(x_gen))
    ours = frechet_distance(mu1, s1, mu2, s2).item()
    ref = _scipy_fd(x_ref, x_gen)
    assert abs(ours - ref) < 1e-8, (ours, ref)  # absolute; measured ~5e-12
    assert frechet_distance(mu1, s1, mu1, s1).abs().item() < 1e-6  # identical Gaussians


def test_frechet_gradients_are_finite_even_when_rank_deficient():
    ref = torch.randn(64, 16, dtype=torch.float64)
    x = torch.randn(8, 16, dtype=torch.float64, requires_grad=True)  # n < d: singular covariance
    mu_r, cov_r = gaussian_stats(ref)
    mu, cov = gaussian_stats(x)
    frechet_distance(mu_r, cov_r, mu, cov).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_fad_inf_recovers_the_intercept_of_a_b_over_n():
    torch.manual_seed(0)
    ref = torch.randn(4000, 4, dtype=torch.float64)
    x = torch.randn(400, 4, dtype=torch.float64)
    mu_r, cov_r = gaussian_stats(ref)
    a, b = frechet_distance_inf(x, mu_r, cov_r, generator=torch.Generator().manual_seed(0))
    plain = frechet_distance(mu_r, cov_r, *gaussian_stats(x))
    assert b > 0 and a < plain  # same distribution: FD(n) shrinks with n, the intercept lies below FD(N)
    assert abs(a.item()) < 0.05


def test_vendi_orthogonal_identical_and_q2_closed_form():
    eye = torch.eye(6)
    for q in (1, 2, 0.5, math.inf):
        assert vendi_score(eye, q=q).item() == pytest.approx(6.0, abs=1e-9)
        assert vendi_score(torch.ones(6, 4), q=q).item() == pytest.approx(1.0, abs=1e-9)
    x = torch.randn(10, 5, dtype=torch.float64)
    xn = torch.nn.functional.normalize(x, dim=1)
    lam = torch.linalg.eigvalsh(xn @ xn.T / 10).clamp_min(0)
    assert vendi_score(x, q=2).item() == pytest.approx((1 / lam.pow(2).sum()).item(), rel=1e-10)
    assert vendi_score(x, q=1).item() == pytest.approx(math.exp(-(lam[lam > 0] * lam[lam > 0].log()).sum().item()), rel=1e-10)
    assert vendi_score(torch.randn(30, 4), q=1).item() <= 4 + 1e-9  # dual form: rank <= D


def test_loo_frechet_and_vendi2_match_brute_force():
    torch.manual_seed(0)
    ref = torch.randn(50, 6, dtype=torch.float64)
    x = torch.randn(12, 6, dtype=torch.float64) + 0.3
    mu_r, cov_r = gaussian_stats(ref)
    fd = lambda e: frechet_distance(mu_r, cov_r, *gaussian_stats(e))  # noqa: E731
    fast, brute = leave_one_out_frechet(x, mu_r, cov_r, chunk=5), leave_one_out(fd, x)
    assert torch.allclose(fast, brute, atol=1e-9)
    assert fast.sum().item() == pytest.approx(brute.sum().item(), abs=1e-9)
    fast_v, brute_v = leave_one_out_vendi2(x), leave_one_out(lambda e: vendi_score(e, q=2), x)
    assert torch.allclose(fast_v, brute_v, atol=1e-10)


def test_reference_stats_roundtrip_npz(tmp_path):
    stats = ReferenceStats.from_embeddings(torch.randn(20, 3))
    stats.save(tmp_path / "ref.npz")
    back = ReferenceStats.load(tmp_path / "ref.npz")
    assert torch.equal(back.mu, stats.mu) and torch.equal(back.cov, stats.cov) and back.n == 20
    np.savez(tmp_path / "fadtk.npz", **{"clap.mu": np.zeros(3), "clap.cov": np.eye(3)})
    assert torch.equal(ReferenceStats.load(tmp_path / "fadtk.npz", key="clap").cov, torch.eye(3, dtype=torch.float64))


def test_fad_reward_set_scope_loo_wrapper_and_per_sample():
    torch.manual_seed(0)
    ref = torch.rand(40, 1, 8) * 2 - 1
    fad = FrechetDistance(FlattenEmbedder(), reference=ref.reshape(40, -1), sample_rate=8000)
    x = (torch.rand(6, 1, 8) * 2 - 1).requires_grad_()
    out = fad(Samples(x, sample_rate=8000))
    assert out.scores.shape == () and out.scores.dtype == torch.float32 and not fad.spec.higher_is_better
    out.scores.backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    loo = LeaveOneOut(fad)(Samples(x.detach(), sample_rate=8000))
    assert loo.scores.shape == (6,)
    brute = leave_one_out(fad.score_embeddings, x.detach().reshape(6, -1))
    assert torch.allclose(loo.scores.double(), brute, atol=1e-5)

    class Frames(torch.nn.Module):
        def embed_frames(self, samples):  # [B, 1, T] -> [B, T/2, 2]
            return samples.data.reshape(samples.data.shape[0], -1, 2)

    ps = PerSampleFrechet(Frames(), reference=ref.reshape(-1, 2), sample_rate=8000)
    scores = ps(Samples(x.detach(), sample_rate=8000)).scores
    mu_r, cov_r = gaussian_stats(ref.reshape(-1, 2))
    one = frechet_distance(mu_r, cov_r, *gaussian_stats(x.detach()[2].reshape(-1, 2)))
    assert scores.shape == (6,) and scores[2].item() == pytest.approx(one.item(), rel=1e-5)


def test_fad_without_reference_says_so():
    fad = FrechetDistance(FlattenEmbedder(), sample_rate=8000)
    with pytest.raises(RuntimeError, match="no reference statistics"):
        fad(Samples(torch.rand(4, 1, 8), sample_rate=8000))


def test_vendi_reward_and_nan_set():
    v = Vendi(q=1)
    x = torch.zeros(4, 3, 2, 2)
    for i in range(4):
        x[i].view(-1)[i] = 1.0  # orthogonal images
    assert v(Samples(x)).scores.item() == pytest.approx(4.0, abs=1e-5)
    assert v(Samples(x[:1].expand(4, -1, -1, -1).clone())).scores.item() == pytest.approx(1.0, abs=1e-5)
    x[0, 0, 0, 0] = math.nan
    assert torch.isnan(v(Samples(x)).scores)
