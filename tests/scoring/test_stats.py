"""Bootstrap intervals and verdict words (pure functions, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from circuitspec.scoring.stats import (
    bootstrap_ci,
    bootstrap_paired_ci,
    bootstrap_ratio_ci,
    excludes_estimate,
    verdict,
)


def _coverage(n_reps: int, n: int, level: float, **kw) -> float:
    rng = np.random.default_rng(12345)
    hits = 0
    for rep in range(n_reps):
        x = rng.normal(loc=2.0, scale=3.0, size=n)
        low, high = bootstrap_ci(x, seed=rep, level=level, **kw)
        hits += low <= 2.0 <= high
    return hits / n_reps


def test_bootstrap_coverage_is_nominal():
    # 200 repetitions: binomial sd of the coverage is ~0.015 at 95%, so [0.89, 0.99]
    # is roughly +-3 sd; percentile bootstrap at n=60 is known to undercover slightly.
    cov = _coverage(200, 60, 0.95)
    assert 0.89 <= cov <= 0.99, cov
    # The level must matter: a 50% interval covers about half the time. An implementation
    # that ignores `level` or returns the spread of the data (not of the mean) fails here.
    cov50 = _coverage(200, 60, 0.5)
    assert 0.38 <= cov50 <= 0.62, cov50


def test_bootstrap_width_matches_standard_error():
    rng = np.random.default_rng(0)
    x = rng.normal(size=400)
    low, high = bootstrap_ci(x, n_resamples=4000)
    se = x.std(ddof=1) / np.sqrt(x.size)
    assert (high - low) == pytest.approx(2 * 1.96 * se, rel=0.1)
    assert low < x.mean() < high


def test_bootstrap_is_seeded_and_deterministic():
    x = np.arange(20.0)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    assert bootstrap_ci(x, seed=3) != bootstrap_ci(x, seed=4)


def test_bootstrap_other_statistic():
    x = np.array([0.0] * 10 + [100.0])
    low, high = bootstrap_ci(x, statistic=np.median)
    assert (low, high) == (0.0, 0.0)


def test_ratio_ci_resamples_jointly():
    # b = 2a exactly, prompt by prompt: any joint resample gives ratio 0.5; an
    # independent resample of the two arrays would not.
    rng = np.random.default_rng(1)
    a = rng.normal(1.0, 1.0, size=50)
    low, high = bootstrap_ratio_ci(a, 2 * a)
    assert low == pytest.approx(0.5) and high == pytest.approx(0.5)


def test_paired_ci_rejects_unequal_lengths():
    with pytest.raises(ValueError, match="equal lengths"):
        bootstrap_paired_ci([[1.0, 2.0], [1.0]], lambda a, b: a.mean(1))
    with pytest.raises(ValueError, match="non-empty"):
        bootstrap_ci([])


@pytest.mark.parametrize(
    ("ci", "threshold", "direction", "word"),
    [
        ((0.85, 0.95), 0.8, "at_least", "verified"),
        ((0.5, 0.7), 0.8, "at_least", "refuted"),
        ((0.7, 0.9), 0.8, "at_least", "inconclusive"),
        ((0.8, 0.9), 0.8, "at_least", "verified"),  # the bound itself clears "at least"
        ((0.01, 0.1), 0.15, "at_most", "verified"),
        ((0.2, 0.3), 0.15, "at_most", "refuted"),
        ((0.1, 0.2), 0.15, "at_most", "inconclusive"),
        ((-0.6, -0.3), 0.1, "negative", "verified"),
        ((-0.05, 0.4), 0.1, "negative", "refuted"),
        ((-0.3, 0.0), 0.1, "negative", "inconclusive"),
        ((0.3, 0.6), 0.1, "positive", "verified"),
        ((-0.3, -0.2), 0.1, "positive", "refuted"),
        ((-0.6, -0.3), 0.1, "any", "verified"),
        ((0.3, 0.6), 0.1, "any", "verified"),
        ((-0.05, 0.05), 0.1, "any", "refuted"),
        ((-0.3, 0.05), 0.1, "any", "inconclusive"),
    ],
)
def test_verdict_cases(ci, threshold, direction, word):
    got, reason = verdict(ci, threshold, direction)
    assert got == word
    assert f"{ci[0]:.3g}" in reason and f"{ci[1]:.3g}" in reason


def test_verdict_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown direction"):
        verdict((0.0, 1.0), 0.5, "above")  # type: ignore[arg-type]
    assert verdict((float("nan"), 1.0), 0.5, "at_least")[0] == "inconclusive"


def test_t_quantiles_match_the_printed_table():
    from circuitspec.scoring.stats import t_quantile

    # Student's t, two-sided 95 % (and 99 % for df 1), as printed in every statistics table.
    for df, want in ((1, 12.706), (2, 4.303), (7, 2.365), (8, 2.306), (14, 2.145), (30, 2.042)):
        assert t_quantile(0.975, df) == pytest.approx(want, abs=1e-3)
    assert t_quantile(0.995, 1) == pytest.approx(63.657, abs=1e-3)


def _cluster_coverage(n_sims: int, g: int, m: int) -> float:
    """Coverage of the 95 % template-cluster interval of a ratio of means (faithfulness) whose
    true value is 1, with a shared per-cluster effect on both arrays' prompts."""
    rng = np.random.default_rng(2026)
    hits = 0
    for s in range(n_sims):
        cl = np.repeat(np.arange(g), m)
        fm = 3 + rng.normal(0, 0.9, g)[cl] + rng.normal(0, 1.5, g * m)
        fc = 3 + rng.normal(0, 0.9, g)[cl] + 0.5 * (fm - 3) + rng.normal(0, 1.5, g * m)
        low, high = bootstrap_ratio_ci(fc, fm, n_resamples=300, seed=s, clusters=cl.tolist())
        hits += low <= 1.0 <= high
    return hits / n_sims


def test_cluster_intervals_cover_with_few_templates():
    """With 8 template clusters the plain percentile interval covered about 88 % (the
    bootstrap variance of a mean over G clusters is (G - 1) / G of the usual one, and its
    tails are normal where a t with G - 1 df is due). Widened by sqrt(G / (G - 1)) * t / z it
    is nominal: 300 simulations give a binomial sd of ~0.013, so >= 0.925 is about -2 sd."""
    cov = _cluster_coverage(300, 8, 4)
    assert cov >= 0.925, cov


def test_cluster_widening_by_hand():
    from circuitspec.scoring.stats import cluster_widening, t_quantile

    values = np.array([1.0, 1.0, 1.0, 5.0])
    # Two clusters: the percentile interval of the resampled means is [1, 5] (see
    # test_verdicts), the estimate is 2, and G = 2 widens by sqrt(2) * t_1 / z = 9.17.
    c = np.sqrt(2) * t_quantile(0.975, 1) / 1.959964
    assert cluster_widening(2) == pytest.approx(c, rel=1e-6)
    low, high = bootstrap_ci(values, n_resamples=2000, seed=1, clusters=[0, 0, 0, 1])
    assert (low, high) == pytest.approx((2 - c * 1, 2 + c * 3))
    # More clusters, less widening; prompt-level intervals are not widened.
    assert cluster_widening(15) < cluster_widening(8) < cluster_widening(5)
    x = np.arange(30.0)
    assert bootstrap_ci(x, n_resamples=500, seed=0) == bootstrap_ci(x, n_resamples=500, seed=0, clusters=None)


# A hand-built per-prompt set whose ratio-of-means interval lies beside the ratio itself.
# F(M) = 1, 2, 4, ..., 64 and -127 + 1/64: the sum is 1/64, and (powers of two having one way
# to make 127 from seven of them) no other resample of the eight prompts has a sum within about
# 1 of 0. F(C) = F(M) + 1/64 on every prompt, so a resample's ratio is 1 + (8/64) / sum(F(M)):
# within 1 +- 0.125 on every resample but the sample's own (probability 8!/8^8 = 0.24 %),
# whose ratio, the estimate, is 1 + (8/64) / (1/64) = 9.
NEAR_ZERO_FM = np.array([1.0, 2, 4, 8, 16, 32, 64, -127 + 1 / 64])
NEAR_ZERO_FC = NEAR_ZERO_FM + 1 / 64


def test_the_hand_built_interval_excludes_its_own_estimate():
    low, high = bootstrap_ratio_ci(NEAR_ZERO_FC, NEAR_ZERO_FM, n_resamples=1000, seed=0)
    assert NEAR_ZERO_FC.mean() / NEAR_ZERO_FM.mean() == pytest.approx(9.0)
    assert 0.875 <= low <= high <= 1.125


def test_an_interval_excluding_its_estimate_decides_no_verdict():
    from circuitspec.scoring.stats import band_verdict

    # Without the estimate these intervals would verify or refute.
    assert verdict((0.9, 1.1), 0.8, "at_least")[0] == "verified"
    for ci, args in (((0.9, 1.1), (0.8, "at_least")), ((0.5, 0.6), (0.8, "at_least")),
                     ((0.1, 0.2), (0.15, "at_most")), ((-0.3, -0.2), (0.05, "negative"))):
        word, reason = verdict(ci, *args, estimate=9.0)
        assert word == "inconclusive" and "excludes its own estimate 9" in reason
        assert "denominator" in reason and "near 0" in reason
    for ci in ((0.9, 1.1), (0.5, 1.0)):
        word, reason = band_verdict(ci, 0.8, 1.2, estimate=-48.0)
        assert word == "inconclusive" and "excludes its own estimate -48" in reason
    # A refutation stands where the whole span from the interval to the estimate lies outside
    # the claim on one side, and says the interval lies beside its estimate; an interval above
    # the band beside an estimate below it (or inside it) refutes nothing.
    word, reason = band_verdict((1.3, 1.4), 0.8, 1.2, estimate=48.0)
    assert word == "refuted" and "excludes its own estimate 48" in reason
    assert band_verdict((1.3, 1.4), 0.8, 1.2, estimate=-48.0)[0] == "inconclusive"
    assert band_verdict((1.3, 1.4), 0.8, 1.2, estimate=1.0)[0] == "inconclusive"
    # The float32 slack scales with the estimate, not with the interval's far end: a tiny
    # model's joint patch of every head lands within it, an estimate of the other sign does not.
    assert excludes_estimate((-1.0000147, -0.9999927), -0.9999925) is None
    assert excludes_estimate((-1e6, -0.06), 0.5) is not None
    assert verdict((0.5, 0.6), 1000, "any", estimate=5.5)[0] == "refuted"  # far below the bar, both
    assert band_verdict((0.9, 1.1), 0.8, None, estimate=9.0)[0] == "inconclusive"
    # An estimate inside (or at an end of) its interval changes nothing.
    assert band_verdict((0.9, 1.1), 0.8, 1.2, estimate=0.9)[0] == "verified"
    assert verdict((1.0, 1.0), 0.8, "at_least", estimate=1.0 + 1e-12)[0] == "verified"


def test_faithfulness_whose_interval_excludes_its_estimate_is_inconclusive():
    from circuitspec.scoring.faithfulness import ratio_score

    score = ratio_score(NEAR_ZERO_FC, NEAR_ZERO_FM, 0.8, "faithfulness", n_bootstrap=1000, seed=0, level=0.95)
    assert score.value == pytest.approx(9.0) and 0.875 <= score.ci[0] <= score.ci[1] <= 1.125
    assert score.verdict == "inconclusive"  # it was "verified": F = 9 judged on [0.98, 1.01]
    assert "excludes its own estimate 9" in score.reason
