"""Unpaired kinds in closed form, reduction identities, input checks and numerics."""

import math

import pytest
import torch

from diffalign.losses import (
    KINDS,
    LossParams,
    LossState,
    PreferenceBatch,
    UnpairedBatch,
    needs_of,
    preference_loss,
    unpaired_loss,
)

BETA = 0.5
# r_w = [0.5, −0.2], r_l = [−0.5, 0.5] (see test_preference_closed_form)
PAIRS = PreferenceBatch(
    torch.tensor([-1.0, -2.0]), torch.tensor([-2.0, -1.0]), torch.tensor([-1.5, -1.8]), torch.tensor([-1.5, -1.5])
)
R = [0.5, -0.2, -0.5, 0.5]  # [w; l]


def sig(z):
    return 1 / (1 + math.exp(-z))


def test_kto_on_pairs_closed_form():
    z0 = max(0.0, sum(R) / 4)  # 0.075
    per = [1 - sig(BETA * (r - z0)) for r in R[:2]] + [1 - sig(BETA * (z0 - r)) for r in R[2:]]
    out = preference_loss(PAIRS, "kto", LossParams(beta=BETA))
    torch.testing.assert_close(out.per_pair, torch.tensor([(per[0] + per[2]) / 2, (per[1] + per[3]) / 2]))
    assert out.loss.item() == pytest.approx(sum(per) / 4)


def test_kto_reference_point_from_mismatched_pairs_and_weights():
    b = UnpairedBatch(
        torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), torch.tensor([True, False]),
        kl_policy=torch.tensor([0.4, -1.0]), kl_reference=torch.tensor([0.0, -2.0]),
    )  # z0 = max(0, mean([0.4, 1.0])) = 0.7
    out = unpaired_loss(b, "kto", LossParams(beta=1.0, desirable_weight=2.0, undesirable_weight=0.5))
    torch.testing.assert_close(out.per_pair, torch.tensor([2 * (1 - sig(1 - 0.7)), 0.5 * (1 - sig(0.7 - 0))]))


def test_bco_running_shift():
    p = LossParams(beta=BETA)
    rewards = [BETA * r for r in R]  # mean 0.0375
    delta = sum(rewards) / 4
    ell = lambda z: math.log1p(math.exp(-z))  # noqa: E731
    per = [ell(x - delta) for x in rewards[:2]] + [ell(-(x - delta)) for x in rewards[2:]]
    out = preference_loss(PAIRS, "bco", p)  # stateless: δ = this batch's mean
    assert out.loss.item() == pytest.approx(sum(per) / 4, rel=1e-6)
    state = LossState()
    preference_loss(PAIRS, "bco", p, state)
    assert state.bco_mean == pytest.approx(delta) and state.bco_count == 4
    shifted = PreferenceBatch(PAIRS.chosen + 1, PAIRS.rejected + 1, PAIRS.ref_chosen, PAIRS.ref_rejected)
    preference_loss(shifted, "bco", p, state)  # new batch mean = δ + β
    assert state.bco_mean == pytest.approx(delta + BETA / 2)


def test_npo_on_negatives_only():
    out = preference_loss(PAIRS, "npo", LossParams(beta=BETA))
    expected = [(2 / BETA) * math.log1p(math.exp(BETA * r)) for r in R[2:]]
    torch.testing.assert_close(out.per_pair, torch.tensor(expected))


# ---- reduction identities ----
def random_pairs(n=64, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    t = lambda: torch.randn(n, generator=g, dtype=torch.float64) * scale  # noqa: E731
    return PreferenceBatch(t(), t(), t(), t())


@pytest.mark.parametrize("kind", ["cdpo", "robust", "f_reverse_kl"])
def test_reduces_to_sigmoid(kind):
    b, p = random_pairs(), LossParams(beta=0.3, label_smoothing=0.0)
    torch.testing.assert_close(preference_loss(b, kind, p).per_pair, preference_loss(b, "sigmoid", p).per_pair)


def test_f_alpha_tends_to_reverse_kl():
    b = random_pairs(scale=0.5)
    near = preference_loss(b, "f_alpha", LossParams(beta=0.3, f_alpha=1e-6)).per_pair
    torch.testing.assert_close(near, preference_loss(b, "sigmoid", LossParams(beta=0.3)).per_pair, rtol=1e-4, atol=1e-5)


def test_policy_equals_reference_gives_log2():
    s = torch.randn(16)
    b = PreferenceBatch(s, s.flip(0), s.clone(), s.flip(0).clone())
    for kind in ["sigmoid", "cdpo", "robust", "f_js", "f_forward_kl", "f_alpha"]:
        out = preference_loss(b, kind, LossParams(beta=123.0, label_smoothing=0.2 if kind == "cdpo" else 0.0))
        assert out.loss.item() == pytest.approx(math.log(2), abs=1e-6), kind
        assert out.metrics["rewards/accuracies"].item() == 0.0  # strict >: ties count as wrong


# ---- declared needs ----
def test_missing_reference_is_a_clear_error():
    b = PreferenceBatch(torch.zeros(2), torch.zeros(2))
    with pytest.raises(ValueError, match=r"'sigmoid' needs reference scores.*reference-free kinds: .*simpo"):
        preference_loss(b, "sigmoid")
    with pytest.raises(ValueError, match="'simpo' needs sequence lengths"):
        preference_loss(b, "simpo")
    with pytest.raises(ValueError, match="'cpo' needs a per-pair NLL"):
        preference_loss(b, "cpo")
    with pytest.raises(ValueError, match="did you mean 'sigmoid'"):
        preference_loss(b, "sigmod")


def test_needs_are_declared_consistently():
    assert needs_of("sigmoid") == {"reference"}
    assert needs_of({"simpo": 1, "nll": 1}) == {"lengths", "nll"}
    free = {k for k, v in KINDS.items() if v.reference_free}
    assert free == {"simpo", "cpo", "orpo", "nll", "sft"}
    for k in KINDS.values():
        assert k.fn.__doc__ and k.paper, f"{k.name} lacks a docstring or a source"


def test_bad_hyperparameters_raise():
    with pytest.raises(ValueError, match="flip rate"):
        preference_loss(PAIRS, "robust", LossParams(label_smoothing=0.5))
    with pytest.raises(ValueError, match="exo_epsilon"):
        preference_loss(PAIRS, "exo_pair", LossParams(exo_epsilon=0.0))
    with pytest.raises(ValueError, match="is paired"):
        unpaired_loss(UnpairedBatch(torch.zeros(2), torch.zeros(2), torch.tensor([True, False])), "sigmoid")


# ---- numerics ----
def test_extreme_scores_stay_finite_and_differentiable():
    big = torch.tensor([1e4, -1e4, 300.0], requires_grad=True)
    b = PreferenceBatch(big, -big, torch.zeros(3), torch.zeros(3), torch.full((3,), 5.0), torch.full((3,), 5.0), torch.ones(3))
    for kind in KINDS:
        if kind in ("orpo",):
            continue  # needs mean log-probs < 0
        out = preference_loss(b, kind, LossParams(beta=2.0))
        assert torch.isfinite(out.loss), kind
        if kind not in ("nll", "sft"):  # those read only chosen_nll
            (g,) = torch.autograd.grad(out.loss, big)
            assert torch.isfinite(g).all(), kind


def test_orpo_log1mexp_near_zero():
    s = torch.tensor([-1e-7, -30.0], requires_grad=True)
    b = PreferenceBatch(s, s - 1, chosen_lengths=torch.ones(2), rejected_lengths=torch.ones(2), chosen_nll=-s)
    out = preference_loss(b, "orpo", LossParams(beta=0.1))
    out.loss.backward()
    assert torch.isfinite(out.loss) and torch.isfinite(s.grad).all()


def test_low_precision_inputs_are_upcast():
    b = random_pairs()
    half = PreferenceBatch(*(t.to(torch.bfloat16) for t in (b.chosen, b.rejected, b.ref_chosen, b.ref_rejected)))
    assert preference_loss(half, "sigmoid").loss.dtype == torch.float32
