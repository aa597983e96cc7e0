"""Distribution-level maths on embeddings: Fréchet distance, FAD-∞, Vendi score, leave-one-out.

Everything here is plain torch on ``[N, D]`` embeddings (no model, no I/O), float64 inside,
differentiable with respect to the generated embeddings.

References:
    * Fréchet distance of Gaussians (Dowson & Landau 1982); FID, Heusel et al., arXiv:1706.08500;
      FAD, Kilgour et al., arXiv:1812.08466; FAD-∞ / per-song FAD, Gui et al. (fadtk), arXiv:2311.01616;
      unbiased FID-∞, Chong & Forsyth, arXiv:1911.07023.
    * Vendi score, Friedman & Dieng, arXiv:2210.02410; order-q Vendi, Pasarkar & Dieng, arXiv:2310.12952.
    * Leave-one-out attribution of a set reward: DRAGON, Bai et al., arXiv:2504.15217.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

__all__ = [
    "ReferenceStats",
    "frechet_distance",
    "frechet_distance_inf",
    "gaussian_stats",
    "leave_one_out",
    "leave_one_out_frechet",
    "leave_one_out_vendi2",
    "sqrtm_psd",
    "vendi_score",
]


# ---------------------------------------------------------------------------------------------- Fréchet
def gaussian_stats(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and unbiased covariance (``ddof=1``) of ``x`` ``[N, D]``, in float64.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``mu`` ``[D]`` and ``cov`` ``[D, D]``.
    """
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"gaussian_stats needs [N >= 2, D] embeddings, got {list(x.shape)}")
    x = x.double()
    mu = x.mean(dim=0)
    xc = x - mu
    return mu, xc.T @ xc / (x.shape[0] - 1)


def sqrtm_psd(a: torch.Tensor) -> torch.Tensor:
    """Symmetric square root of a positive semi-definite matrix via ``eigh`` (negative eigenvalues → 0)."""
    lam, v = torch.linalg.eigh(a)
    return (v * lam.clamp_min(0).sqrt()) @ v.T


def frechet_distance(
    mu_ref: torch.Tensor,
    cov_ref: torch.Tensor,
    mu: torch.Tensor,
    cov: torch.Tensor,
    sqrt_cov_ref: torch.Tensor | None = None,
    eps: float = 1e-12,
) -> torch.Tensor:
    """Fréchet distance between ``N(mu_ref, cov_ref)`` and ``N(mu, cov)``.

    ``FD = ‖μ_r − μ‖² + Tr Σ_r + Tr Σ − 2 Tr((Σ_r^{1/2} Σ Σ_r^{1/2})^{1/2})``; the trace of the matrix
    square root is ``Σ_i sqrt(λ_i)`` over the eigenvalues of the symmetric PSD matrix
    ``Σ_r^{1/2} Σ Σ_r^{1/2}`` (``eigvalsh``, clamped at ``eps``), which has the same spectrum as
    ``Σ_r Σ`` but gives finite, stable gradients with respect to ``Σ`` (the reference is fixed).

    Args:
        mu_ref (torch.Tensor): ``[D]`` reference mean.
        cov_ref (torch.Tensor): ``[D, D]`` reference covariance.
        mu (torch.Tensor): ``[D]`` or batched ``[K, D]`` generated means.
        cov (torch.Tensor): ``[D, D]`` or ``[K, D, D]`` generated covariances.
        sqrt_cov_ref (torch.Tensor | None): Precomputed ``Σ_r^{1/2}`` (see :func:`sqrtm_psd`).
        eps (float): Eigenvalue floor before the square root. Default is 1e-12.

    Returns:
        torch.Tensor: float64 scalar (or ``[K]``).
    """
    mu_ref, cov_ref, mu, cov = mu_ref.double(), cov_ref.double(), mu.double(), cov.double()
    s = sqrtm_psd(cov_ref) if sqrt_cov_ref is None else sqrt_cov_ref.double()
    m = s @ cov @ s
    m = (m + m.transpose(-1, -2)) / 2  # exact symmetry for eigvalsh
    tr_sqrt = torch.linalg.eigvalsh(m).clamp_min(eps).sqrt().sum(dim=-1)
    tr = torch.diagonal(cov, dim1=-2, dim2=-1).sum(dim=-1)
    return (mu - mu_ref).pow(2).sum(dim=-1) + torch.trace(cov_ref) + tr - 2 * tr_sqrt


def frechet_distance_inf(
    x: torch.Tensor,
    mu_ref: torch.Tensor,
    cov_ref: torch.Tensor,
    sizes: Sequence[int] | None = None,
    generator: torch.Generator | None = None,
    sqrt_cov_ref: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """FAD-∞: extrapolates ``FD(n) = a + b / n`` to ``n → ∞`` (fadtk, arXiv:2311.01616 §3; Chong & Forsyth).

    For each subset size ``n`` a random subset (without replacement, from ``generator``) is scored;
    ``(a, b)`` is the least-squares fit of the scores against ``1 / n``.

    Args:
        x (torch.Tensor): ``[N, D]`` generated embeddings.
        mu_ref (torch.Tensor): ``[D]`` reference mean.
        cov_ref (torch.Tensor): ``[D, D]`` reference covariance.
        sizes (Sequence[int] | None): Subset sizes; default 10 sizes from ``max(2, N // 5)`` to ``N``.
        generator (torch.Generator | None): RNG for the subsets (no hidden global state).
        sqrt_cov_ref (torch.Tensor | None): Precomputed ``Σ_r^{1/2}``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: intercept ``a`` (FAD-∞) and slope ``b``, float64 scalars.
    """
    n = x.shape[0]
    if sizes is None:
        sizes = sorted({int(round(v)) for v in torch.linspace(max(2, n // 5), n, 10).tolist()})
    if len(sizes) < 2 or min(sizes) < 2 or max(sizes) > n:
        raise ValueError(f"FAD-inf needs >= 2 subset sizes in [2, {n}], got {list(sizes)}")
    s = sqrtm_psd(cov_ref.double()) if sqrt_cov_ref is None else sqrt_cov_ref
    scores = []
    for size in sizes:
        idx = torch.randperm(n, generator=generator)[:size].to(x.device)
        mu, cov = gaussian_stats(x[idx])
        scores.append(frechet_distance(mu_ref, cov_ref, mu, cov, sqrt_cov_ref=s))
    y = torch.stack(scores)
    design = torch.stack([torch.ones(len(sizes)), 1.0 / torch.tensor(sizes, dtype=torch.float64)], dim=1).to(y)
    coef = torch.linalg.pinv(design) @ y  # [2]: intercept, slope
    return coef[0], coef[1]


@dataclass
class ReferenceStats:
    """Gaussian statistics of a reference set (audio, images or text exemplars).

    Attributes:
        mu (torch.Tensor): ``[D]`` float64 mean.
        cov (torch.Tensor): ``[D, D]`` float64 covariance.
        n (int): Number of embeddings behind the statistics.
        meta (dict): Encoder id/version, sample rate, windowing: stats are comparable only when equal.
    """

    mu: torch.Tensor
    cov: torch.Tensor
    n: int
    meta: dict = field(default_factory=dict)

    @classmethod
    def from_embeddings(cls, x: torch.Tensor, **meta) -> ReferenceStats:
        """Statistics of ``x`` ``[N, D]`` (or frames ``[N, W, D]``, pooled over clips and frames)."""
        x = x.detach().reshape(-1, x.shape[-1])
        mu, cov = gaussian_stats(x)
        return cls(mu, cov, x.shape[0], dict(meta))

    @classmethod
    def load(cls, path: str | Path, key: str | None = None) -> ReferenceStats:
        """Reads ``.npz`` statistics: ``mu``/``cov`` (or ``sigma``), or fadtk's ``"{key}.mu"``/``"{key}.cov"``."""
        import numpy as np

        with np.load(Path(path), allow_pickle=False) as f:
            prefix = f"{key}." if key else ""
            cov_key = f"{prefix}cov" if f"{prefix}cov" in f.files else f"{prefix}sigma"
            if f"{prefix}mu" not in f.files or cov_key not in f.files:
                raise KeyError(f"{path}: expected arrays '{prefix}mu' and '{prefix}cov', found {f.files}")
            n = int(f[f"{prefix}n"]) if f"{prefix}n" in f.files else 0
            return cls(torch.from_numpy(f[f"{prefix}mu"]).double(), torch.from_numpy(f[cov_key]).double(), n)

    def save(self, path: str | Path) -> None:
        """Writes ``mu``, ``cov`` and ``n`` to an ``.npz`` file (no pickle)."""
        import numpy as np

        np.savez(Path(path), mu=self.mu.cpu().numpy(), cov=self.cov.cpu().numpy(), n=np.array(self.n))


# ---------------------------------------------------------------------------------------------- Vendi
def vendi_score(x: torch.Tensor, q: float = 1.0, normalize: bool = True) -> torch.Tensor:
    """Vendi score of ``x`` ``[N, D]`` with the (cosine) linear kernel ``K = X Xᵀ``.

    ``λ = eig(K / N)``; ``VS_1 = exp(−Σ λ_i log λ_i)`` (arXiv:2210.02410 Def. 3.1),
    ``VS_q = exp(log(Σ λ_i^q) / (1 − q))`` (arXiv:2310.12952 Eq. 3); ``q = ∞`` gives ``1 / max λ``.
    ``q = 2`` uses the closed form ``VS_2 = N² / ‖X Xᵀ‖_F² = N² / ‖Xᵀ X‖_F²`` (no eigendecomposition,
    smooth gradients). For ``N > D`` the eigenvalues come from the dual ``Xᵀ X / N`` (same non-zero
    spectrum). Range ``[1, N]``: N for orthogonal rows, 1 for identical rows.

    Args:
        x (torch.Tensor): ``[N, D]`` embeddings.
        q (float): Order; 1 (Shannon), 2 (closed form), any other positive value, or ``math.inf``.
        normalize (bool): L2-normalise rows first (cosine kernel, ``K_ii = 1``). Default is True.

    Returns:
        torch.Tensor: float64 scalar.
    """
    x = x.double().reshape(x.shape[0], -1)
    if normalize:
        x = F.normalize(x, dim=1)
    n = x.shape[0]
    gram = x @ x.T if n <= x.shape[1] else x.T @ x
    if q == 2:
        return n**2 / gram.pow(2).sum()
    lam = torch.linalg.eigvalsh(gram / n)
    # Numerical rank: round-off eigenvalues (~1e-17) would count for q < 1; treat them as exact zeros.
    lam = torch.where(lam > 1e-12 * lam.max().detach(), lam, torch.zeros_like(lam))
    if q == 1:
        return torch.exp(-torch.special.xlogy(lam, lam.clamp_min(1e-300)).sum())
    if math.isinf(q):
        return 1.0 / lam.max()
    if q <= 0:
        raise ValueError(f"Vendi order q must be > 0, got {q}")
    return torch.exp(torch.log(lam[lam > 0].pow(q).sum()) / (1 - q))


# ---------------------------------------------------------------------------------------------- leave-one-out
def leave_one_out(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """Brute-force attributions ``g_i = R(D) − R(D ∖ {i})`` for any set function ``fn`` ``[N, …] → []``.

    Returns:
        torch.Tensor: ``[N]`` float64.
    """
    total = fn(x)
    keep = ~torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
    return torch.stack([total - fn(x[keep[i]]) for i in range(x.shape[0])]).double()


def leave_one_out_frechet(
    x: torch.Tensor,
    mu_ref: torch.Tensor,
    cov_ref: torch.Tensor,
    sqrt_cov_ref: torch.Tensor | None = None,
    chunk: int = 16,
) -> torch.Tensor:
    """LOO attributions of the Fréchet distance, ``FD(D) − FD(D ∖ {i})``, by rank-one downdates.

    With scatter ``S = Σ_j (x_j − μ)(x_j − μ)ᵀ``: ``μ₋ᵢ = (Nμ − x_i)/(N − 1)``,
    ``S₋ᵢ = S − N/(N − 1)·(x_i − μ)(x_i − μ)ᵀ``, ``Σ₋ᵢ = S₋ᵢ/(N − 2)``; then one batched ``eigvalsh``
    per chunk of samples instead of N covariance estimates.

    Args:
        x (torch.Tensor): ``[N, D]`` generated embeddings, ``N >= 3``.
        mu_ref (torch.Tensor): ``[D]`` reference mean.
        cov_ref (torch.Tensor): ``[D, D]`` reference covariance.
        sqrt_cov_ref (torch.Tensor | None): Precomputed ``Σ_r^{1/2}``.
        chunk (int): Samples per batched eigendecomposition (memory ``chunk·D²`` float64). Default is 16.

    Returns:
        torch.Tensor: ``[N]`` float64 (positive: sample i increases the distance).
    """
    n = x.shape[0]
    if n < 3:
        raise ValueError(f"leave-one-out Fréchet distance needs N >= 3 samples, got {n}")
    s = sqrtm_psd(cov_ref.double()) if sqrt_cov_ref is None else sqrt_cov_ref.double()
    x = x.double()
    mu = x.mean(dim=0)
    xc = x - mu
    scatter = xc.T @ xc
    total = frechet_distance(mu_ref, cov_ref, mu, scatter / (n - 1), sqrt_cov_ref=s)
    out = []
    for start in range(0, n, chunk):
        d = xc[start : start + chunk]  # [k, D]
        mu_i = (n * mu - x[start : start + chunk]) / (n - 1)
        cov_i = (scatter - n / (n - 1) * d[:, :, None] * d[:, None, :]) / (n - 2)
        out.append(total - frechet_distance(mu_ref, cov_ref, mu_i, cov_i, sqrt_cov_ref=s))
    return torch.cat(out)


def leave_one_out_vendi2(x: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """LOO attributions of the order-2 Vendi score, ``VS_2(D) − VS_2(D ∖ {i})``, in O(N²) overall.

    ``VS_2 = N² / ‖G‖_F²`` with ``G = X Xᵀ``; removing i leaves ``‖G‖_F² − 2 Σ_j G_ij² + G_ii²``.

    Returns:
        torch.Tensor: ``[N]`` float64 (positive: sample i adds diversity).
    """
    x = x.double().reshape(x.shape[0], -1)
    if normalize:
        x = F.normalize(x, dim=1)
    n = x.shape[0]
    g2 = (x @ x.T).pow(2)
    total = g2.sum()
    rest = total - 2 * g2.sum(dim=1) + torch.diagonal(g2)
    return n**2 / total - (n - 1) ** 2 / rest
