"""Paired bootstrap CI, randomisation test and seed aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from cera_rag.evaluation.stats import (
    aggregate_seeds,
    bootstrap_ci,
    mean_per_query,
    paired_bootstrap_ci,
    paired_comparison,
    randomization_test,
)


def test_system_against_itself_is_exactly_zero() -> None:
    a = np.random.default_rng(1).random(50)
    diff, lo, hi = paired_bootstrap_ci(a, a.copy(), n_resamples=500, seed=3)
    assert (diff, lo, hi) == (0.0, 0.0, 0.0)
    assert randomization_test(a, a.copy(), n_permutations=500) == 1.0
    comp = paired_comparison({str(i): float(v) for i, v in enumerate(a)}, {str(i): float(v) for i, v in enumerate(a)})
    assert comp["ci_low"] == 0.0 and comp["ci_high"] == 0.0 and comp["p_value"] == 1.0


def test_consistent_improvement_is_detected() -> None:
    rng = np.random.default_rng(0)
    b = rng.random(200)
    a = b + 0.1 + rng.normal(0, 0.02, 200)
    diff, lo, hi = paired_bootstrap_ci(a, b, n_resamples=1000, seed=0)
    assert lo < diff < hi
    assert 0.09 < lo and hi < 0.11
    p = randomization_test(a, b, n_permutations=2000, seed=0)
    assert p == pytest.approx(1 / 2001)  # the floor: no flipped assignment is as extreme


def test_bootstrap_is_seeded_and_matches_hand_case() -> None:
    vals = [0.0, 1.0, 0.0, 1.0]
    assert bootstrap_ci(vals, 300, seed=7) == bootstrap_ci(vals, 300, seed=7)
    mean, lo, hi = bootstrap_ci([0.5] * 10, 100)
    assert (mean, lo, hi) == (0.5, 0.5, 0.5)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0, 2.0], [1.0])


def test_randomization_test_hand_case() -> None:
    # diffs (1, -1): every sign assignment has |mean| 0 or 1 >= observed 0 ... observed is 0 -> p = 1
    assert randomization_test([1.0, 0.0], [0.0, 1.0], 200) == 1.0
    # one query, diff 1: both sign flips reach |1| -> p = 1
    assert randomization_test([1.0], [0.0], 200) == 1.0


def test_paired_comparison_uses_shared_queries() -> None:
    comp = paired_comparison({"a": 1.0, "b": 0.0, "c": 5.0}, {"a": 0.0, "b": 0.0}, 200, 200)
    assert comp["n"] == 2
    assert comp["diff"] == pytest.approx(0.5)
    assert comp["mean_a"] == pytest.approx(0.5) and comp["mean_b"] == 0.0


def test_aggregate_seeds_mean_and_std() -> None:
    agg = aggregate_seeds([{"mrr": 0.2, "r1": 0.1}, {"mrr": 0.4, "r1": 0.1}, {"mrr": 0.6, "r1": 0.1}])
    assert agg["mrr"]["mean"] == pytest.approx(0.4)
    assert agg["mrr"]["std"] == pytest.approx(0.2)  # sample std (ddof=1)
    assert agg["r1"]["std"] == pytest.approx(0.0, abs=1e-12) and agg["mrr"]["n"] == 3
    assert aggregate_seeds([{"mrr": 0.3}])["mrr"]["std"] == 0.0
    assert mean_per_query([{"q1": 1.0, "q2": 0.0}, {"q1": 0.0, "q2": 0.0, "q3": 1.0}]) == {"q1": 0.5, "q2": 0.0}
