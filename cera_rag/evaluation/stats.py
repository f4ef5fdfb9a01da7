"""Paired statistics on per-query scores and aggregation over seeds.

* ``paired_bootstrap_ci``: percentile bootstrap 95% CI of the mean per-query difference
  (queries resampled with replacement, the same resample for both systems), seeded numpy.
* ``randomization_test``: two-sided paired randomisation (sign-flip, Fisher) test of the mean
  difference; ``p = (1 + #{|mean of flipped diffs| >= |observed|}) / (1 + n_permutations)``.
  This is the test ``ranx.compare(stat_test="fisher")`` runs (swapping the two systems' values
  per query is a sign flip of the difference), written with numpy so it is seeded, counts the
  observed assignment (no p of 0) and works on any per-query values.
* ``aggregate_seeds``: mean and sample standard deviation of metrics across seed runs.

Identical inputs give a CI of exactly ``[0, 0]`` and ``p = 1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

#: Rows drawn per bootstrap block (keeps memory at block x n_queries).
_BLOCK = 1000


def _as_array(values: Sequence[float] | np.ndarray) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"Expected a 1-D sequence of per-query values, got shape {arr.shape}.")
    return arr


def bootstrap_means(values: Sequence[float] | np.ndarray, n_resamples: int = 2000, seed: int = 0) -> np.ndarray:
    """Means of ``n_resamples`` bootstrap resamples (with replacement) of ``values``.

    Args:
        values: per-query values.
        n_resamples: number of resamples.
        seed: seed of the numpy generator.

    Returns:
        ``(n_resamples,)`` array of resampled means (empty input gives NaNs).
    """
    arr = _as_array(values)
    if arr.size == 0:
        return np.full(n_resamples, np.nan)
    rng = np.random.default_rng(seed)
    out = np.empty(n_resamples, dtype=np.float64)
    for start in range(0, n_resamples, _BLOCK):
        m = min(_BLOCK, n_resamples - start)
        idx = rng.integers(0, arr.size, size=(m, arr.size))
        out[start : start + m] = arr[idx].mean(axis=1)
    return out


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_resamples: int = 2000, alpha: float = 0.05, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` and its percentile bootstrap ``1 - alpha`` confidence interval.

    Args:
        values: per-query values.
        n_resamples: bootstrap resamples.
        alpha: 0.05 for a 95% interval.
        seed: seed of the numpy generator.

    Returns:
        ``(mean, low, high)``.
    """
    arr = _as_array(values)
    if arr.size == 0:
        return float("nan"), float("nan"), float("nan")
    means = bootstrap_means(arr, n_resamples, seed)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return float(arr.mean()), float(lo), float(hi)


def paired_bootstrap_ci(
    a: Sequence[float] | np.ndarray,
    b: Sequence[float] | np.ndarray,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Mean of ``a - b`` over queries and its paired bootstrap ``1 - alpha`` CI.

    Args:
        a: per-query values of system A.
        b: per-query values of system B, same queries in the same order.
        n_resamples: bootstrap resamples.
        alpha: 0.05 for a 95% interval.
        seed: seed of the numpy generator.

    Returns:
        ``(mean difference, low, high)``; exactly ``(0, 0, 0)`` when ``a == b``.
    """
    x, y = _as_array(a), _as_array(b)
    if x.shape != y.shape:
        raise ValueError(f"Paired values need the same length, got {x.size} and {y.size}.")
    return bootstrap_ci(x - y, n_resamples, alpha, seed)


def randomization_test(
    a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, n_permutations: int = 10000, seed: int = 0
) -> float:
    """Two-sided paired randomisation (sign-flip) test of ``mean(a - b) == 0``.

    Args:
        a: per-query values of system A.
        b: per-query values of system B, same queries in the same order.
        n_permutations: random sign assignments drawn.
        seed: seed of the numpy generator.

    Returns:
        The p-value, in ``(0, 1]``; 1 when the systems agree on every query.
    """
    x, y = _as_array(a), _as_array(b)
    if x.shape != y.shape:
        raise ValueError(f"Paired values need the same length, got {x.size} and {y.size}.")
    d = x - y
    if d.size == 0 or not np.any(d):
        return 1.0
    observed = abs(d.mean())
    rng = np.random.default_rng(seed)
    hits = 0
    tol = 1e-12 * max(1.0, observed)
    for start in range(0, n_permutations, _BLOCK):
        m = min(_BLOCK, n_permutations - start)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(m, d.size))
        hits += int(np.sum(np.abs((signs * d).mean(axis=1)) >= observed - tol))
    return float((hits + 1) / (n_permutations + 1))


def paired_comparison(
    a: Mapping[str, float],
    b: Mapping[str, float],
    n_resamples: int = 2000,
    n_permutations: int = 10000,
    alpha: float = 0.05,
    seed: int = 0,
) -> dict[str, float]:
    """Compare two systems on the queries both scored (keys of the mappings).

    Args:
        a: query id -> value of system A.
        b: query id -> value of system B.
        n_resamples: bootstrap resamples for the CI.
        n_permutations: sign flips for the p-value.
        alpha: 0.05 for a 95% interval.
        seed: seed of both procedures.

    Returns:
        ``{"mean_a", "mean_b", "diff", "ci_low", "ci_high", "p_value", "n"}`` with ``diff = mean_a - mean_b``.
    """
    keys = sorted(set(a) & set(b))
    x = np.array([a[k] for k in keys], dtype=np.float64)
    y = np.array([b[k] for k in keys], dtype=np.float64)
    diff, lo, hi = paired_bootstrap_ci(x, y, n_resamples, alpha, seed)
    return {
        "mean_a": float(x.mean()) if keys else float("nan"),
        "mean_b": float(y.mean()) if keys else float("nan"),
        "diff": diff,
        "ci_low": lo,
        "ci_high": hi,
        "p_value": randomization_test(x, y, n_permutations, seed),
        "n": len(keys),
    }


def aggregate_seeds(runs: Sequence[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Mean and sample standard deviation (``ddof=1``; 0 for one run) of each metric across seed runs.

    Args:
        runs: one ``{metric: value}`` per seed (metrics missing from some runs use the runs that have them).

    Returns:
        ``{metric: {"mean", "std", "n"}}``.
    """
    metrics: dict[str, list[float]] = {}
    for run in runs:
        for k, v in run.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                metrics.setdefault(k, []).append(float(v))
    out: dict[str, dict[str, float]] = {}
    for k, vals in metrics.items():
        arr = np.asarray(vals, dtype=np.float64)
        out[k] = {
            "mean": float(np.mean(arr)),
            "std": float(np.std(arr, ddof=1)) if arr.size > 1 else 0.0,
            "n": int(arr.size),
        }
    return out


def mean_per_query(runs: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Per-query mean over seed runs (queries present in every run), for paired tests of seed groups."""
    if not runs:
        return {}
    keys = set(runs[0])
    for r in runs[1:]:
        keys &= set(r)
    return {k: float(np.mean([r[k] for r in runs])) for k in sorted(keys)}
