"""Closed-form tests: every loss kind against hand-computed numbers.

Two pairs, β = 0.5:
  pair A: s_w = −1.0, s_l = −2.0, s_ref_w = −1.5, s_ref_l = −1.5 → r_w = 0.5, r_l = −0.5, Δ = 1.0
  pair B: s_w = −2.0, s_l = −1.0, s_ref_w = −1.8, s_ref_l = −1.5 → r_w = −0.2, r_l = 0.5, Δ = −0.7
lengths |y_w| = 4, |y_l| = 8 (A) and 5, 2 (B); chosen NLL 0.25 (A), 0.4 (B).
The literal values of pair A were worked out by hand (ℓ(z) = log(1 + e^{−z})); pair B is checked
against the same formulas written in plain Python scalars, independent of the torch code.
"""

import math

import pytest
import torch

from diffalign.losses import KINDS, LossParams, PreferenceBatch, preference_loss

BETA, EPS = 0.5, 0.1
SW, SL, RW, RL = [-1.0, -2.0], [-2.0, -1.0], [-1.5, -1.8], [-1.5, -1.5]
LW, LL, NLL = [4.0, 5.0], [8.0, 2.0], [0.25, 0.4]


def batch() -> PreferenceBatch:
    t = lambda v: torch.tensor(v, dtype=torch.float64)  # noqa: E731
    return PreferenceBatch(t(SW), t(SL), t(RW), t(RL), t(LW), t(LL), t(NLL))


def L(z):  # ℓ(z) = −log σ(z)
    return math.log1p(math.exp(-z))


def sig(z):
    return 1 / (1 + math.exp(-z))


def scalar(kind, i, b=BETA, eps=EPS):
    sw, sl, rw_, rl_, lw, ll, nll = SW[i], SL[i], RW[i], RL[i], LW[i], LL[i], NLL[i]
    rw, rl = sw - rw_, sl - rl_
    d, z = rw - rl, b * (rw - rl)
    lo = lambda s: s - math.log(1 - math.exp(s))  # noqa: E731
    fa = lambda r: (1 - math.exp(-0.5 * r)) / 0.5  # noqa: E731
    return {
        "sigmoid": L(z),
        "f_reverse_kl": L(z),
        "cdpo": (1 - eps) * L(z) + eps * L(-z),
        "robust": ((1 - eps) * L(z) - eps * L(-z)) / (1 - 2 * eps),
        "hinge": max(0.0, 1 - z),
        "ipo": (d - 1 / (2 * b)) ** 2,
        "sigmoid_norm": L(b * (rw / lw - rl / ll)),
        "exo_pair": sig(z) * (-L(z) - math.log(1 - 1e-3)) + sig(-z) * (-L(-z) - math.log(1e-3)),
        "nca_pair": L(b * rw) + 0.5 * L(-b * rw) + 0.5 * L(-b * rl),
        "bco_pair": L(b * rw) + L(-b * rl),
        "sppo_hard": (rw - 1 / (2 * b)) ** 2 + (rl + 1 / (2 * b)) ** 2,
        "apo_zero": (1 - sig(b * rw)) + sig(b * rl),
        "apo_down": sig(b * rw) + (1 - sig(z)),
        "discopop": (1 - sig(z / 0.05)) * L(z) + sig(z / 0.05) * math.exp(-z),
        "f_forward_kl": L(b * (-math.exp(-rw) + math.exp(-rl))),
        "f_js": L(b * (-L(rw) + L(rl))),
        "f_alpha": L(b * (fa(rw) - fa(rl))),
        "simpo": L(b * (sw / lw - sl / ll) - 0.5),
        "cpo": L(b * (sw - sl)) + nll,
        "orpo": nll + b * L(lo(sw / lw) - lo(sl / ll)),
        "cal_dpo": L(d) + 0.5 * ((rw - 1 / (2 * b)) ** 2 + (rl + 1 / (2 * b)) ** 2),
        "dpop": L(b * (d - 50 * max(0.0, rw_ - sw))),
        "nll": nll,
        "sft": nll,
    }[kind]


# Pair A, worked out by hand.
HAND_A = {
    "sigmoid": 0.474077, "cdpo": 0.524077, "robust": 0.411577, "hinge": 0.5, "ipo": 0.0,
    "sigmoid_norm": 0.647370, "exo_pair": 1.945734, "nca_pair": 1.276879, "bco_pair": 1.151879,
    "sppo_hard": 0.5, "apo_zero": 0.875647, "apo_down": 0.939717, "discopop": 0.606525,
    "f_forward_kl": 0.466165, "f_js": 0.575939, "f_alpha": 0.472108, "simpo": 0.974077,
    "cpo": 0.724077, "orpo": 0.596574, "cal_dpo": 0.563262, "dpop": 0.474077,
}
@pytest.mark.parametrize("kind", [k for k, v in KINDS.items() if not v.unpaired and not v.batch_coupled])
def test_paired_kind_closed_form(kind):
    out = preference_loss(batch(), kind, LossParams(beta=BETA, label_smoothing=EPS))
    expected = torch.tensor([scalar(kind, 0), scalar(kind, 1)])
    torch.testing.assert_close(out.per_pair.double(), expected.double(), rtol=1e-5, atol=1e-6)
    assert out.loss.item() == pytest.approx(expected.mean().item(), rel=1e-5)
    if kind in HAND_A:
        assert out.per_pair[0].item() == pytest.approx(HAND_A[kind], abs=2e-6)


def test_every_pointwise_kind_has_a_hand_value():
    missing = [k for k, v in KINDS.items() if not (v.unpaired or v.batch_coupled)]
    missing = [k for k in missing if k not in HAND_A and k not in ("f_reverse_kl", "nll", "sft")]
    assert missing == []


def test_aot_sorts_over_the_batch():
    # logratios s_w − s_l = [1, −1]; reference [0, −0.3]: sorted → d = [−1 − (−0.3), 1 − 0] = [−0.7, 1]
    out = preference_loss(batch(), "aot", LossParams(beta=BETA, label_smoothing=0.0))
    torch.testing.assert_close(out.per_pair.double(), torch.tensor([L(BETA * -0.7), L(BETA * 1.0)], dtype=torch.double))
    # unpaired: r_w = [0.5, −0.2], r_l = [−0.5, 0.5] → sorted d = [−0.2 − (−0.5), 0.5 − 0.5] = [0.3, 0]
    out = preference_loss(batch(), "aot_unpaired", LossParams(beta=BETA))
    torch.testing.assert_close(out.per_pair.double(), torch.tensor([L(BETA * 0.3), L(0.0)], dtype=torch.double))


def test_metrics_follow_trl_names():
    out = preference_loss(batch(), "sigmoid", LossParams(beta=BETA))
    # β·r_w = [0.25, −0.1], β·r_l = [−0.25, 0.25]
    m = {k: v.item() for k, v in out.metrics.items()}
    assert m["rewards/chosen"] == pytest.approx(0.075)
    assert m["rewards/rejected"] == pytest.approx(0.0)
    assert m["rewards/margins"] == pytest.approx(0.075)
    assert m["rewards/accuracies"] == pytest.approx(0.5)


def test_weighted_combination_is_rpo():
    p = LossParams(beta=BETA)
    rpo = preference_loss(batch(), {"sigmoid": 1.0, "nll": 0.005}, p)
    expected = [scalar("sigmoid", i) + 0.005 * NLL[i] for i in range(2)]
    torch.testing.assert_close(rpo.per_pair.double(), torch.tensor(expected, dtype=torch.double))
    assert set(rpo.metrics) >= {"loss/sigmoid", "loss/nll"}
    both = preference_loss(batch(), ["sigmoid", "hinge"], p)
    torch.testing.assert_close(
        both.loss, preference_loss(batch(), "sigmoid", p).loss + preference_loss(batch(), "hinge", p).loss
    )
