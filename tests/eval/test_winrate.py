"""Win rates and bootstrap CIs."""

import numpy as np
import pytest

from diffalign.eval.winrate import bootstrap_ci, compare, mean_ci


def test_compare_counts_ties_half_and_gives_cis():
    base = np.array([0.1, 0.5, 0.5, 0.9, np.nan])
    tuned = np.array([0.2, 0.5, 0.4, 1.0, 0.3])
    r = compare(base, tuned)
    assert r["n"] == 4 and (r["wins"], r["ties"], r["losses"]) == (2, 1, 1)
    assert r["win_rate"]["mean"] == pytest.approx((2 + 0.5) / 4)
    assert r["gain"]["mean"] == pytest.approx(np.mean([0.1, 0.0, -0.1, 0.1]))
    lo, hi = bootstrap_ci(np.r_[np.ones(70), np.zeros(30)])
    assert 0.6 < lo < 0.7 < hi < 0.8  # ≈ 0.7 ± 1.96·√(0.21/100)
    assert bootstrap_ci(np.arange(5.0)) == bootstrap_ci(np.arange(5.0))  # seeded


def test_mean_ci():
    ci = mean_ci([0, 1, 0, 1])
    assert ci["mean"] == 0.5 and ci["lo"] < 0.5 < ci["hi"] and ci["n"] == 4
    wilson = mean_ci([1, 1, 1, 1], binary=True)
    assert wilson["hi"] == pytest.approx(1.0) and 0.4 < wilson["lo"] < 0.6


def test_a_scorer_with_no_finite_score_on_a_split_says_not_applicable():
    """An instance-to-set reward with no exemplars for a split's prompts scores NaN: one clear line, no 'nan%'."""

    from diffalign.eval.report import summary_line

    r = compare(np.full(4, np.nan), np.full(4, np.nan))
    assert r["n"] == 0
    line = summary_line("held_out", "exemplar_similarity", {**r, "labelled_training_data": True})
    assert "not applicable" in line and "nan" not in line.lower().replace("scored nan", "")
