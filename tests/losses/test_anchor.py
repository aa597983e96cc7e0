"""SePPO's anchor criterion on hand-built scores: each sign, and the margin it gives the core."""

import math

import pytest
import torch
import torch.nn.functional as F

from diffalign.losses import LossParams, PreferenceBatch, preference_loss
from diffalign.losses.anchor import anchor_indicator, apply_anchor


def _scores():
    # s = −err. Pair 0: the policy fits the winner better than the reference (a = −0.1 + 0.3 = +0.2);
    # pair 1: the reference fits it better (a = −0.4 + 0.1 = −0.3); pair 2: a tie (a = 0).
    return PreferenceBatch(chosen=torch.tensor([-0.1, -0.4, -0.2]), rejected=torch.tensor([-0.5, -0.2, -0.3]),
                           ref_chosen=torch.tensor([-0.3, -0.1, -0.2]), ref_rejected=torch.tensor([-0.6, -0.6, -0.1]))


def test_each_sign_of_the_criterion():
    s = _scores()
    assert anchor_indicator(s, "sign").tolist() == [1.0, -1.0, 0.0]
    assert anchor_indicator(s, "indicator").tolist() == [1.0, 0.0, 0.0]
    assert anchor_indicator(s, "always_loser").tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="must be one of"):
        anchor_indicator(s, "flip")
    with pytest.raises(ValueError, match="needs reference scores"):
        anchor_indicator(PreferenceBatch(s.chosen, s.rejected), "sign")


@pytest.mark.parametrize("criterion", ["sign", "indicator"])
def test_the_core_sees_winner_minus_gated_loser(criterion):
    """L = −log σ(β_core·[(s_w − s_ref,w) − I·(s_l − s_ref,l)]), by hand for every pair."""
    s = _scores()
    scaled, ind = apply_anchor(s, criterion)
    beta = 10.0
    got = preference_loss(scaled, "sigmoid", LossParams(beta=beta)).per_pair
    rw = s.chosen - s.ref_chosen  # [+0.2, −0.3, 0]
    rl = s.rejected - s.ref_rejected  # [+0.1, +0.4, −0.2]
    expected = -F.logsigmoid(beta * (rw - ind * rl))
    torch.testing.assert_close(got, expected)
    if criterion == "sign":  # pair 1 flips: both terms pull the policy's error down
        assert math.isclose(float(got[1]), float(-F.logsigmoid(torch.tensor(beta * (-0.3 + 0.4)))), rel_tol=1e-6)
    else:  # pair 1 turns SFT-like: the winner's term alone
        assert math.isclose(float(got[1]), float(-F.logsigmoid(torch.tensor(beta * -0.3))), rel_tol=1e-6)
    assert math.isclose(float(got[2]), float(-F.logsigmoid(torch.tensor(0.0))), rel_tol=1e-6)  # tie: winner term = 0 ⇒ log 2
