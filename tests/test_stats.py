"""sorl_core.stats against scipy: the Wilson interval every success figure carries, and Spearman's rho."""

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from sorl_core import stats


@pytest.mark.parametrize("successes, trials", [(0, 50), (1, 50), (25, 50), (44, 50), (50, 50), (3, 7), (141, 150)])
def test_wilson_interval_is_scipy_s(successes, trials):
    ci = scipy_stats.binomtest(successes, trials).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson_interval(successes, trials)
    # scipy uses the exact normal quantile 1.95996...; we use 1.96, as the lab's tables say
    assert low == pytest.approx(ci.low, abs=1e-4) and high == pytest.approx(ci.high, abs=1e-4)


def test_wilson_interval_of_no_trials_is_everything():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize("seed", range(5))
def test_spearman_is_scipy_s_with_ties(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 5, size=16).astype(float)  # many ties
    b = a + rng.normal(size=16)
    assert stats.spearman(a, b) == pytest.approx(scipy_stats.spearmanr(a, b).statistic, abs=1e-12)


def test_spearman_of_a_constant_side_is_undefined():
    assert math.isnan(stats.spearman([1, 2, 3], [5, 5, 5]))
    assert stats.spearman([1, 2, 3], [10, 20, 30]) == pytest.approx(1.0)
