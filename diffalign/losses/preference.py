"""Paired preference losses: per-pair scalars from the scores of chosen and rejected samples.

Notation (``reference/losses.md`` §1), every tensor ``[B]``::

    s(y)   policy score (text: summed completion log-prob; diffusion: −denoising error)
    r(y)   = s(y) − s_ref(y)            log-ratio; the implicit reward is β·r
    Δ      = r(y_w) − r(y_l)            w = chosen, l = rejected
    ℓ(z)   = −log σ(z) = softplus(−z)

Every function returns the per-pair loss ``[B]``; the batch loss is its mean. Inputs are
already fp32 (see ``core.preference_loss``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .types import LossKind, LossParams, PreferenceBatch

__all__ = ["PAIRED_KINDS"]

EXP_CLAMP = 80.0  # largest exponent of a log-ratio we exponentiate in fp32 (losses.md §8)


def _ell(z: torch.Tensor) -> torch.Tensor:
    """ℓ(z) = −log σ(z), computed stably."""
    return -F.logsigmoid(z)


def _mean_scores(b: PreferenceBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """Length-normalised policy scores ``s̄ = s/|y|``."""
    return b.chosen / b.chosen_lengths, b.rejected / b.rejected_lengths


def sigmoid(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """DPO: ``ℓ(β·Δ)``. Rafailov et al., arXiv 2305.18290, Eq. 7."""
    return _ell(p.beta * b.delta())


def cdpo(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """Conservative DPO: ``(1−ε)·ℓ(βΔ) + ε·ℓ(−βΔ)``, ε = ``label_smoothing``.

    Mitchell, "A note on DPO with noisy preferences" (2023); ε = 0 is DPO.
    """
    z = p.beta * b.delta()
    return (1 - p.label_smoothing) * _ell(z) + p.label_smoothing * _ell(-z)


def robust(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """rDPO: ``[(1−ε)·ℓ(βΔ) − ε·ℓ(−βΔ)] / (1−2ε)``, ε = label-flip rate < ½.

    Chowdhury et al., arXiv 2403.00409, Eq. 8: an unbiased estimate of the clean-label
    loss under flip rate ε; ε = 0 is DPO.
    """
    eps = p.label_smoothing
    if not 0.0 <= eps < 0.5:
        raise ValueError(f"loss kind 'robust' needs label_smoothing (flip rate) in [0, 0.5), got {eps}")
    z = p.beta * b.delta()
    return ((1 - eps) * _ell(z) - eps * _ell(-z)) / (1 - 2 * eps)


def hinge(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """SLiC / RSO hinge: ``relu(1 − β·Δ)``, β = 1/margin. Zhao et al., arXiv 2305.10425."""
    return torch.relu(1 - p.beta * b.delta())


def ipo(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """IPO: ``(Δ − 1/(2τ))²`` with τ = β. Azar et al., arXiv 2310.12036, Eq. 17.

    Paper form on summed scores. TRL divides each score by its length first; feed
    length-normalised scores to get that variant.
    """
    return (b.delta() - 1 / (2 * p.beta)) ** 2


def sigmoid_norm(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """Length-normalised DPO: ``ℓ(β·(r_w/|y_w| − r_l/|y_l|))`` (Tülu 3, arXiv 2411.15124)."""
    d = b.chosen_logratio() / b.chosen_lengths - b.rejected_logratio() / b.rejected_lengths
    return _ell(p.beta * d)


def exo_pair(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """EXO (pairwise): ``q_w(log q_w − log(1−ε)) + q_l(log q_l − log ε)``.

    ``q_w = σ(βΔ)``, ``q_l = σ(−βΔ)``: the reverse KL between the model's and the
    ε-smoothed label distribution. Ji et al., arXiv 2402.00856, Eq. 12; ε = ``exo_epsilon``.
    """
    eps = p.exo_epsilon
    if not 0.0 < eps < 1.0:
        raise ValueError(f"loss kind 'exo_pair' needs exo_epsilon in (0, 1), got {eps}")
    z = p.beta * b.delta()
    return torch.sigmoid(z) * (F.logsigmoid(z) - math.log(1 - eps)) + torch.sigmoid(-z) * (
        F.logsigmoid(-z) - math.log(eps)
    )


def nca_pair(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """NCA (pairwise): ``ℓ(βr_w) + ½ℓ(−βr_w) + ½ℓ(−βr_l)``. Chen et al., arXiv 2402.05369."""
    c, l = p.beta * b.chosen_logratio(), p.beta * b.rejected_logratio()
    return _ell(c) + 0.5 * _ell(-c) + 0.5 * _ell(-l)


def bco_pair(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """BCO on pairs, no running shift (TRL 1.10): ``ℓ(βr_w) + ℓ(−βr_l)``. Jung et al., arXiv 2404.04656."""
    return _ell(p.beta * b.chosen_logratio()) + _ell(-p.beta * b.rejected_logratio())


def sppo_hard(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """SPPO with hard labels: ``(r_w − 1/(2β))² + (r_l + 1/(2β))²``. Wu et al., arXiv 2405.00675, Eq. 3.3."""
    t = 1 / (2 * p.beta)
    return (b.chosen_logratio() - t) ** 2 + (b.rejected_logratio() + t) ** 2


def apo_zero(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """APO-zero: ``(1 − σ(βr_w)) + σ(βr_l)``. D'Oosterlinck et al., arXiv 2408.06266."""
    return (1 - torch.sigmoid(p.beta * b.chosen_logratio())) + torch.sigmoid(p.beta * b.rejected_logratio())


def apo_down(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """APO-down: ``σ(βr_w) + (1 − σ(βΔ))``. D'Oosterlinck et al., arXiv 2408.06266."""
    return torch.sigmoid(p.beta * b.chosen_logratio()) + (1 - torch.sigmoid(p.beta * b.delta()))


def discopop(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """DiscoPOP (log-ratio modulated): ``(1−m)·ℓ(z) + m·e^{−z}``, ``z = βΔ``, ``m = σ(z/τ)``.

    Chris Lu et al., arXiv 2406.08414; τ = ``discopop_tau`` (0.05).
    """
    z = p.beta * b.delta()
    m = torch.sigmoid(z / p.discopop_tau)
    return (1 - m) * _ell(z) + m * torch.exp(torch.clamp(-z, max=EXP_CLAMP))


def aot(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """AOT (paired): cDPO on ``d = sort(s_w − s_l) − sort(s_ref,w − s_ref,l)`` over the batch.

    Melnyk et al., arXiv 2406.05882 (distributional alignment via optimal transport).
    Batch-coupled: the sort runs over the (micro-)batch.
    """
    d = torch.sort(b.chosen - b.rejected).values - torch.sort(b.ref_chosen - b.ref_rejected).values
    z = p.beta * d
    return (1 - p.label_smoothing) * _ell(z) + p.label_smoothing * _ell(-z)


def aot_unpaired(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """AOT (unpaired): cDPO on ``d = sort(r_w) − sort(r_l)``. Melnyk et al., arXiv 2406.05882."""
    d = torch.sort(b.chosen_logratio()).values - torch.sort(b.rejected_logratio()).values
    z = p.beta * d
    return (1 - p.label_smoothing) * _ell(z) + p.label_smoothing * _ell(-z)


# --- f-DPO (Wang et al., arXiv 2309.16240, Table 1): ℓ(β·[F(r_w) − F(r_l)]), F = f'(e^r) ---


def f_reverse_kl(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """f-DPO, reverse KL: ``F(r) = r`` — identical to DPO. arXiv 2309.16240."""
    return sigmoid(b, p)


def f_forward_kl(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """f-DPO, forward KL: ``F(r) = −e^{−r}``. arXiv 2309.16240, Table 1."""
    F_ = lambda r: -torch.exp(torch.clamp(-r, max=EXP_CLAMP))  # noqa: E731
    return _ell(p.beta * (F_(b.chosen_logratio()) - F_(b.rejected_logratio())))


def f_js(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """f-DPO, Jensen–Shannon: ``F(r) = log σ(r)`` (= log(2u/(1+u)) up to a constant). arXiv 2309.16240."""
    return _ell(p.beta * (F.logsigmoid(b.chosen_logratio()) - F.logsigmoid(b.rejected_logratio())))


def f_alpha(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """f-DPO, α-divergence, paper form: ``F(r) = (1 − e^{−αr})/α``, α = ``f_alpha`` ∈ (0, 1).

    arXiv 2309.16240, Table 1. α → 0 recovers reverse KL (DPO); α = 1 is forward KL up to a
    constant. (TRL ≤ 0.28 uses the same convention; TRL 1.10 uses ``(u^{α−1} − 1)/(α − 1)``.)
    """
    a = p.f_alpha
    if not 0.0 < a < 1.0:
        raise ValueError(f"loss kind 'f_alpha' needs f_alpha in (0, 1), got {a}")
    F_ = lambda r: -torch.expm1(torch.clamp(-a * r, max=EXP_CLAMP)) / a  # noqa: E731  (expm1: exact as α → 0)
    return _ell(p.beta * (F_(b.chosen_logratio()) - F_(b.rejected_logratio())))


# --- reference-free kinds ---


def simpo(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """SimPO: ``ℓ(β·(s̄_w − s̄_l) − γ)``, no reference. Meng et al., arXiv 2405.14734, Eq. 6."""
    mw, ml = _mean_scores(b)
    return _ell(p.beta * (mw - ml) - p.simpo_gamma)


def cpo(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """CPO: ``ℓ(β·(s_w − s_l)) + α·NLL(y_w)``, no reference. Xu et al., arXiv 2401.08417, Eq. 5."""
    return _ell(p.beta * (b.chosen - b.rejected)) + p.cpo_alpha * b.chosen_nll


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 − e^x)`` for x < 0, stable near 0 (Mächler 2012)."""
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def orpo(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """ORPO: ``NLL(y_w) + λ·ℓ(lo(y_w) − lo(y_l))``, ``lo(y) = s̄ − log(1 − e^{s̄})``; λ = β.

    Hong et al., arXiv 2403.07691, Eq. 6–7; no reference. ``s̄`` is the length-mean score
    (must be < 0, a mean log-probability).
    """
    mw, ml = _mean_scores(b)
    lo_w, lo_l = mw - _log1mexp(mw), ml - _log1mexp(ml)
    return b.chosen_nll + p.beta * _ell(lo_w - lo_l)


def cal_dpo(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """Cal-DPO: ``ℓ(Δ) + ½·[(r_w − 1/(2β))² + (r_l + 1/(2β))²]`` (no β inside ℓ).

    Xiao et al., arXiv 2412.14516 (official code ``scripts/dpo_trainer.py``; β = 0.002 there).
    """
    t = 1 / (2 * p.beta)
    return _ell(b.delta()) + 0.5 * ((b.chosen_logratio() - t) ** 2 + (b.rejected_logratio() + t) ** 2)


def dpop(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """DPOP (DPO-Positive): ``ℓ(β·[Δ − λ·max(0, s_ref(y_w) − s(y_w))])``.

    Pal et al., arXiv 2402.13228, Eq. 3: penalises the chosen likelihood falling below the
    reference's; λ = ``dpop_lambda`` (50).
    """
    penalty = torch.clamp(b.ref_chosen - b.chosen, min=0)
    return _ell(p.beta * (b.delta() - p.dpop_lambda * penalty))


def nll(b: PreferenceBatch, p: LossParams) -> torch.Tensor:
    """SFT / NLL term on the chosen sample: ``NLL(y_w)``. Combine with ``sigmoid`` for RPO
    (Pang et al., arXiv 2404.19733; Liu et al., arXiv 2405.16436)."""
    return b.chosen_nll


_R, _L, _N = "reference", "lengths", "nll"


def _k(fn, needs=(), paper="", batch_coupled=False) -> LossKind:
    return LossKind(fn.__name__, fn, frozenset(needs), paper, batch_coupled=batch_coupled)


PAIRED_KINDS: dict[str, LossKind] = {
    k.name: k
    for k in [
        _k(sigmoid, [_R], "2305.18290"),
        _k(cdpo, [_R], "cDPO note (Mitchell 2023)"),
        _k(robust, [_R], "2403.00409"),
        _k(hinge, [_R], "2305.10425"),
        _k(ipo, [_R], "2310.12036"),
        _k(sigmoid_norm, [_R, _L], "2411.15124"),
        _k(exo_pair, [_R], "2402.00856"),
        _k(nca_pair, [_R], "2402.05369"),
        _k(bco_pair, [_R], "2404.04656"),
        _k(sppo_hard, [_R], "2405.00675"),
        _k(apo_zero, [_R], "2408.06266"),
        _k(apo_down, [_R], "2408.06266"),
        _k(discopop, [_R], "2406.08414"),
        _k(aot, [_R], "2406.05882", batch_coupled=True),
        _k(aot_unpaired, [_R], "2406.05882", batch_coupled=True),
        _k(f_reverse_kl, [_R], "2309.16240"),
        _k(f_forward_kl, [_R], "2309.16240"),
        _k(f_js, [_R], "2309.16240"),
        _k(f_alpha, [_R], "2309.16240"),
        _k(simpo, [_L], "2405.14734"),
        _k(cpo, [_N], "2401.08417"),
        _k(orpo, [_L, _N], "2403.07691"),
        _k(cal_dpo, [_R], "2412.14516"),
        _k(dpop, [_R], "2402.13228"),
        _k(nll, [_N], "2404.19733"),
    ]
}
PAIRED_KINDS["sft"] = LossKind("sft", nll, frozenset([_N]), "2404.19733")
