"""Builders: pairs from scored groups, by hand."""

import math

import pytest
import torch

from diffalign.data.builders import build_pairs


def test_best_worst_and_no_spread():
    s = torch.tensor([0.1, 0.9, 0.5, 0.3, 0.3, 0.3, 0.2, float("nan"), 0.8])  # 3 groups of 3
    b = build_pairs(s, 3, "best_worst")
    assert b.pairs.tolist() == [[1, 0], [8, 6]]  # group 1 has no spread; NaN is ignored in group 2
    assert b.stats == {"groups": 3, "groups_without_spread": 1, "pairs": 2}


def test_margin_pairs():
    s = torch.tensor([0.1, 0.9, 0.5, 0.0])
    assert build_pairs(s, 4, "margin", margin=0.35).pairs.tolist() == [[1, 2], [1, 0], [1, 3], [2, 0], [2, 3]]  # not (0, 3): gap 0.1


def test_advantage_split_pairs_above_with_below_the_group_mean():
    s = torch.tensor([0.0, 1.0, 0.9, 0.2])  # mean 0.525: D+ = {1, 2}, D- = {3, 0}
    assert build_pairs(s, 4, "advantage").pairs.tolist() == [[1, 0], [2, 3]]


def test_quantile_pairs_across_prompts():
    s = torch.tensor([0.1, 0.2, 0.9, 0.8, 0.5, 0.4, 0.0, 0.7])  # 4 groups of 2
    assert build_pairs(s, 2, "quantile", quantile=0.25).pairs.tolist() == [[2, 6], [3, 0]]
    with pytest.raises(ValueError, match="build.kind must be one of"):
        build_pairs(s, 2, "tournament")
    assert math.isclose(build_pairs(s, 2).stats["pairs"], 4)
