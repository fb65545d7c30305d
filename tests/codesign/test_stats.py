"""Seed statistics against hand-computed values."""
import math

import pytest

from pgf_sim.codesign.decide.stats import holm, summary, welch
from pgf_sim.core.errors import PgfSimError


def test_summary_mean_and_sample_std():
    s = summary([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0])  # mean 5, sum of squares 32, /7
    assert (s.mean, s.n) == (5.0, 8) and s.std == pytest.approx(math.sqrt(32 / 7))
    assert summary([3.0]).std == 0.0 and summary([1.0, 2.0, 3.0]).text(2) == "2.00 ± 1.00 (n=3)"
    with pytest.raises(PgfSimError):
        summary([])


def test_welch_equal_sizes_and_variances_by_hand():
    # a = 1,2,3 and b = 4,5,6: variances 1, se = sqrt(1/3 + 1/3) = 0.816497, df = (2/3)^2 /
    # (2 * (1/3)^2 / 2) = 4; t table (df 4, two-sided 95%): 2.776445 -> -3 +- 2.266958.
    d = welch([1, 2, 3], [4, 5, 6])
    assert d.diff == -3.0 and d.df == pytest.approx(4.0)
    assert (d.low, d.high) == pytest.approx((-3 - 2.776445 * 0.816497, -3 + 2.776445 * 0.816497), abs=1e-5)
    # t^2 = 9 / (2/3) = 13.5 at df 4, closed form P(|T| < t) = sin(th) (1 + cos(th)^2 / 2), tan(th) = t/2:
    # sin(th) = sqrt(3.375 / 4.375) = 0.878310, cos(th)^2 = 1/4.375 -> p = 1 - 0.978688 = 0.021312
    assert d.p_value == pytest.approx(0.021312, abs=2e-6)


def test_welch_unequal_variances_degrees_of_freedom_by_hand():
    # a = 1..4 (var 5/3, n 4), b = 2,4,6 (var 4, n 3): va = 5/12, vb = 4/3, se^2 = 1.75,
    # df = 1.75^2 / ((5/12)^2/3 + (4/3)^2/2) = 3.0625 / 0.946759 = 3.234719
    d = welch([1, 2, 3, 4], [2, 4, 6])
    assert d.diff == -1.5 and d.df == pytest.approx(3.234719, abs=1e-6)
    assert d.low < -1.5 < d.high and d.high - d.diff == pytest.approx(d.diff - d.low)
    # the p-value of an interval bound: shifting b by the half-width puts the bound at 0, p = 0.05
    half = d.high - d.diff
    shifted = welch([1, 2, 3, 4], [2 - 1.5 - half, 4 - 1.5 - half, 6 - 1.5 - half])
    assert shifted.p_value == pytest.approx(0.05, abs=1e-9)


def test_welch_degenerate_and_bad_input():
    assert welch([1, 1], [1, 1]).p_value == 1.0 and welch([1, 1], [2, 2]).p_value == 0.0
    with pytest.raises(PgfSimError, match=">= 2 values"):
        welch([1.0], [1.0, 2.0])
    with pytest.raises(PgfSimError, match="confidence"):
        welch([1, 2], [1, 2], confidence=1.5)


def test_holm_by_hand():
    # sorted 0.005 (x4 = 0.02), 0.01 (x3 = 0.03), 0.03 (x2 = 0.06), 0.04 (x1 = 0.04 -> 0.06 monotone)
    adj = holm([0.01, 0.04, 0.03, 0.005])
    assert adj == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [a <= 0.05 for a in adj] == [True, False, False, True]
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0]) and holm([]) == []


def test_bootstrap_interval_against_the_exact_resampling_distribution():
    """a = [0, 1, 2], b = [0, 0, 0]: the mean of 3 draws from {0, 1, 2} is k/3 with counts
    1, 3, 6, 7, 6, 3, 1 (of 27) for k = 0..6. P(0) = 1/27 = 3.7% and P(<= 1/3) = 14.8%, so the
    5% quantile is 1/3; P(<= 4/3) = 85.2% and P(<= 5/3) = 96.3%, so the 95% quantile is 5/3.
    For 95%: P(0) = 3.7% > 2.5% gives 0, P(<= 5/3) = 96.3% < 97.5% gives 2."""
    from pgf_sim.codesign.decide.stats import bootstrap

    iv = bootstrap([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], 0.90)
    assert (iv.low, iv.high) == pytest.approx((1 / 3, 5 / 3))
    assert (iv.resamples, iv.confidence) == (10_000, 0.90)
    iv = bootstrap([0.0, 1.0, 2.0], [0.0, 0.0, 0.0], 0.95)
    assert (iv.low, iv.high) == pytest.approx((0.0, 2.0))
    # the difference is symmetric in the samples, and reproducible (fixed seed)
    flip = bootstrap([0.0, 0.0, 0.0], [0.0, 1.0, 2.0], 0.90)
    assert (flip.low, flip.high) == pytest.approx((-5 / 3, -1 / 3))
    assert bootstrap([1.0, 2.5, 2.0], [0.5, 0.7], 0.95) == bootstrap([1.0, 2.5, 2.0], [0.5, 0.7], 0.95)
    # no spread: the interval is the point
    iv = bootstrap([2.0, 2.0], [0.5, 0.5])
    assert iv.low == iv.high == 1.5


def test_detectable_difference_by_hand_and_by_simulation():
    import numpy as np
    from scipy import stats as sps

    from pgf_sim.codesign.decide.stats import Summary, detectable

    a, b = Summary(2.5, 0.1, 5), Summary(2.6, 0.1, 5)
    # SE = sqrt(2 * 0.01 / 5) = 0.06325, Welch df = 8: (t_.975,8 = 2.3060 + t_.8,8 = 0.8889) * SE
    assert detectable(a, b) == pytest.approx((2.3060 + 0.8889) * math.sqrt(0.004), rel=1e-3)
    assert detectable(a, b, alpha=0.05 / 3) > detectable(a, b)  # a stricter level needs a larger gap
    assert detectable(Summary(0, 0.1, 10), Summary(0, 0.1, 10)) < detectable(a, b)  # more seeds, smaller
    assert detectable(Summary(0, 0.1, 1), b) == math.inf and detectable(Summary(0, 0, 3), Summary(1, 0, 3)) == 0.0
    # the power is what it says: normal samples with that true difference reject ~80% of the time
    rng = np.random.default_rng(0)
    delta = detectable(a, b)
    x = rng.normal(0.0, 0.1, (4000, 5))
    y = rng.normal(delta, 0.1, (4000, 5))
    p = sps.ttest_ind(x, y, axis=1, equal_var=False).pvalue
    assert (p <= 0.05).mean() == pytest.approx(0.8, abs=0.04)
    with pytest.raises(PgfSimError, match="alpha and power"):
        detectable(a, b, power=1.0)
