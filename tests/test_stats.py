"""Statistics over seeds: the intervals and tests agree with scipy's reference implementations and
behave at the edges (one seed, no spread, no shared seeds)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st

from facefoundry.stats import paired, summarise, versus, welch


def test_summary_matches_the_t_interval():
    x = [63.1, 65.7, 61.4]
    s = summarise(x)
    lo, hi = st.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=st.sem(x))
    assert s.n == 3 and s.mean == pytest.approx(np.mean(x)) and s.std == pytest.approx(np.std(x, ddof=1))
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    one = summarise([70.0])
    assert (one.std, one.ci_low, one.ci_high) == (0.0, 70.0, 70.0)
    with pytest.raises(ValueError):
        summarise([])


def test_welch_and_paired_match_scipy():
    a, b = [67.8, 69.1, 66.5, 68.0], [62.6, 63.9, 61.0]
    w = welch(a, b)
    ref = st.ttest_ind(a, b, equal_var=False)
    assert (w.t, w.p) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue))
    g = welch(a, b, "greater")
    assert g.p == pytest.approx(st.ttest_ind(a, b, equal_var=False, alternative="greater").pvalue)
    ca, cb = {1: 66.0, 2: 64.5, 3: 67.2}, {1: 65.1, 2: 63.0, 3: 66.9, 4: 60.0}
    p = paired(ca, cb)
    ref = st.ttest_rel([66.0, 64.5, 67.2], [65.1, 63.0, 66.9])
    assert (p.t, p.p, p.n_a) == (pytest.approx(ref.statistic), pytest.approx(ref.pvalue), 3)


def test_a_real_difference_is_significant_and_noise_is_not():
    rng = np.random.default_rng(0)
    seeds = range(5)
    base = {s: 60 + rng.normal(0, 1) for s in seeds}
    real = {s: base[s] + 5 + rng.normal(0, 0.5) for s in seeds}
    noise = {s: 60 + rng.normal(0, 1) for s in seeds}
    assert versus(real, base, "greater").best.significant(0.05)
    assert not versus(noise, base, "greater").best.significant(0.05)
    assert versus(real, base).best.kind == "paired"


def test_undefined_tests_are_never_significant():
    assert not welch([70.0], [60.0, 61.0]).defined  # one seed: no spread to test against
    assert not welch([1.0, 1.0], [1.0, 1.0]).significant(0.05)
    v = versus({1: 70.0, 2: 71.0}, {3: 60.0, 4: 61.0})
    assert v.paired is None and v.best.kind == "welch" and v.difference == pytest.approx(10.0)
    assert math.isnan(paired({1: 1.0, 2: 2.0}, {1: 0.0, 2: 1.0}).p)  # constant differences: no spread
