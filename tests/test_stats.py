"""annogate.stats against peer implementations and the published worked examples.

Peers: the ``krippendorff`` package (alpha), ``statsmodels`` (Fleiss' kappa, skipped
when absent), ``scipy.stats.binomtest`` (Wilson). Published values: Krippendorff's
own examples, Fleiss (1971) as worked on Wikipedia, Newcombe (1998).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from annogate.stats import (
    fleiss_kappa,
    krippendorff_alpha_nominal,
    krippendorff_alpha_nominal_sparse,
    wilson_interval,
)

krippendorff = pytest.importorskip("krippendorff")

NAN = np.nan

# The example of the ``krippendorff`` package's docstring (3 coders x 15 units).
THREE_BY_FIFTEEN = [
    [NAN, NAN, NAN, NAN, NAN, 3, 4, 1, 2, 1, 1, 3, 3, NAN, 3],
    [1, NAN, 2, 1, 3, 3, 4, 3, NAN, NAN, NAN, NAN, NAN, NAN, NAN],
    [NAN, NAN, 2, 1, 3, 4, 4, NAN, 2, 1, 1, 3, 3, NAN, 4],
]

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C:
# observers A-D x 12 units, with missing values. Published: nominal 0.743,
# ordinal 0.815, interval 0.849, ratio 0.797.
FOUR_BY_TWELVE = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, NAN, NAN, NAN],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, NAN, 3],
    [NAN, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, NAN],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, NAN],
]

# Fleiss (1971) style example as worked on Wikipedia ("Fleiss' kappa"):
# 10 subjects, 14 raters each, 5 categories; P-bar = 0.378, P-e = 0.213, kappa = 0.210.
FLEISS_WIKIPEDIA = [
    [0, 0, 0, 0, 14],
    [0, 2, 6, 4, 2],
    [0, 0, 3, 5, 6],
    [0, 3, 9, 2, 0],
    [2, 2, 8, 1, 1],
    [7, 7, 0, 0, 0],
    [3, 2, 6, 3, 0],
    [2, 5, 3, 2, 2],
    [6, 5, 2, 1, 0],
    [0, 2, 2, 3, 7],
]


def peer_alpha(data: npt.ArrayLike) -> float:
    """The krippendorff package's nominal alpha, with its refusals mapped to nan."""
    try:
        with np.errstate(invalid="ignore", divide="ignore"):  # its 0/0 is our nan
            return float(krippendorff.alpha(reliability_data=data, level_of_measurement="nominal"))
    except ValueError:  # "more than one value in the domain" / "no pairable unit"
        return math.nan


# --------------------------------------------------------------------- alpha


def test_alpha_published_three_coders_fifteen_units() -> None:
    assert round(krippendorff_alpha_nominal(THREE_BY_FIFTEEN), 6) == 0.691358


def test_alpha_published_krippendorff_2011_four_observers() -> None:
    a = krippendorff_alpha_nominal(FOUR_BY_TWELVE)
    assert round(a, 3) == 0.743
    assert a == pytest.approx(1 - 39 * (40 - 32) / (40**2 - (81 + 169 + 100 + 25 + 9)))


def test_alpha_layout_is_coders_by_units() -> None:
    """The documented layout is the package's: transposing gives another number."""
    data = np.array(FOUR_BY_TWELVE)
    assert krippendorff_alpha_nominal(data) == pytest.approx(peer_alpha(data))
    assert krippendorff_alpha_nominal(data.T) != pytest.approx(krippendorff_alpha_nominal(data))


@pytest.mark.parametrize("seed", range(40))
def test_alpha_equals_peer_on_random_data_with_gaps(seed: int) -> None:
    rng = np.random.default_rng(seed)
    coders = int(rng.integers(2, 9))
    units = int(rng.integers(1, 400))
    categories = int(rng.integers(2, 12))
    data = rng.integers(0, categories, size=(coders, units)).astype(float)
    # Agreement well above chance on part of the units, so alpha is not ~0 only.
    truth = rng.integers(0, categories, size=units)
    agree = rng.random((coders, units)) < rng.random()
    data[agree] = np.broadcast_to(truth, data.shape)[agree]
    data[rng.random((coders, units)) < rng.random() * 0.6] = np.nan
    np.testing.assert_allclose(krippendorff_alpha_nominal(data), peer_alpha(data), rtol=1e-10, atol=1e-12)


@settings(max_examples=300, deadline=None)
@given(
    arrays(
        np.float64,
        st.tuples(st.integers(1, 6), st.integers(1, 25)),
        elements=st.sampled_from([NAN, 0.0, 1.0, 2.0, 7.5, -3.0]),
    )
)
def test_alpha_equals_peer_hypothesis(data: npt.NDArray[np.float64]) -> None:
    ours = krippendorff_alpha_nominal(data)
    theirs = peer_alpha(data)
    if math.isnan(theirs):
        # The package refuses (single value / nothing pairable): we say "undefined".
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_alpha_sparse_long_form_equals_dense(seed: int) -> None:
    """Long form (unit, value), in any order, with units ids not contiguous."""
    rng = np.random.default_rng(100 + seed)
    data = rng.integers(0, 5, size=(4, 80)).astype(float)
    data[:2] = data[0]
    data[rng.random(data.shape) < 0.3] = np.nan
    coder, unit = np.nonzero(~np.isnan(data))
    order = rng.permutation(unit.shape[0])
    sparse = krippendorff_alpha_nominal_sparse(unit[order] * 3 + 11, data[coder, unit][order])
    assert sparse == pytest.approx(krippendorff_alpha_nominal(data), abs=1e-12)
    assert sparse == pytest.approx(peer_alpha(data), abs=1e-12)


def test_alpha_sparse_edges() -> None:
    assert math.isnan(krippendorff_alpha_nominal_sparse([], []))
    assert krippendorff_alpha_nominal_sparse([0, 0, 1, 1], [1, 1, 2, 2]) == 1.0
    with pytest.raises(ValueError, match="length"):
        krippendorff_alpha_nominal_sparse([0, 1], [1.0])
    with pytest.raises(ValueError, match="non-negative"):
        krippendorff_alpha_nominal_sparse([-1, 1], [1.0, 2.0])


def test_alpha_degenerate_cases_are_nan() -> None:
    assert math.isnan(krippendorff_alpha_nominal([[1, 1, 1], [1, 1, 1]]))  # no variation
    assert math.isnan(krippendorff_alpha_nominal([[1, NAN], [NAN, 2]]))  # nothing pairable
    assert math.isnan(krippendorff_alpha_nominal(np.empty((3, 0))))
    assert krippendorff_alpha_nominal([[1, 2], [1, 2]]) == 1.0
    with pytest.raises(ValueError, match="2-D"):
        krippendorff_alpha_nominal([1, 2, 3])
    with pytest.raises(ValueError, match="infinite"):
        krippendorff_alpha_nominal(np.array([[1.0, np.inf], [1.0, 2.0]]))


def test_alpha_is_fleiss_kappa_with_small_sample_correction() -> None:
    """With complete data (m coders, N units, n = mN): alpha = 1 - (1 - 1/n)(1 - kappa)."""
    rng = np.random.default_rng(7)
    data = rng.integers(0, 4, size=(5, 60)).astype(float)
    data[:3, :30] = data[0, :30]
    counts = np.stack([(data == v).sum(axis=0) for v in range(4)], axis=1)
    n = data.size
    assert krippendorff_alpha_nominal(data) == pytest.approx(1 - (1 - 1 / n) * (1 - fleiss_kappa(counts)))


# -------------------------------------------------------------- Fleiss' kappa


def test_fleiss_kappa_published_example() -> None:
    assert round(fleiss_kappa(FLEISS_WIKIPEDIA), 3) == 0.210
    t = np.array(FLEISS_WIKIPEDIA, float)
    p_bar = (((t * t).sum(1) - 14) / (14 * 13)).mean()
    p_j = t.sum(0) / t.sum()
    assert round(p_bar, 3) == 0.378 and round(float(p_j @ p_j), 3) == 0.213


@pytest.mark.parametrize("seed", range(20))
def test_fleiss_kappa_equals_statsmodels(seed: int) -> None:
    inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")
    rng = np.random.default_rng(seed)
    subjects, categories, raters = int(rng.integers(1, 200)), int(rng.integers(2, 8)), int(rng.integers(2, 15))
    p = rng.dirichlet(np.ones(categories) * rng.uniform(0.1, 3), size=subjects)
    table = np.stack([rng.multinomial(raters, row) for row in p])
    theirs = float(inter_rater.fleiss_kappa(table, method="fleiss"))
    ours = fleiss_kappa(table)
    if math.isnan(theirs):
        assert math.isnan(ours)
    else:
        assert ours == pytest.approx(theirs, rel=1e-10, abs=1e-12)
    assert fleiss_kappa(FLEISS_WIKIPEDIA) == pytest.approx(inter_rater.fleiss_kappa(np.array(FLEISS_WIKIPEDIA)))


def test_fleiss_kappa_edges() -> None:
    assert fleiss_kappa([[3, 0], [0, 3]]) == 1.0
    assert math.isnan(fleiss_kappa([[3, 0], [3, 0]]))
    with pytest.raises(ValueError, match="same number of raters"):
        fleiss_kappa([[3, 0], [1, 1]])
    with pytest.raises(ValueError, match="at least two raters"):
        fleiss_kappa([[1, 0], [0, 1]])
    with pytest.raises(ValueError, match="non-negative"):
        fleiss_kappa([[3, -1], [1, 1]])


# ------------------------------------------------------------------- Wilson


@pytest.mark.parametrize(
    ("k", "n", "low", "high"),
    [  # Newcombe (1998), Stat. Med. 17:857-872, Table I, method 3 (Wilson score).
        (81, 263, 0.2553, 0.3662),
        (15, 148, 0.0624, 0.1605),
        (0, 20, 0.0, 0.1611),
        (1, 29, 0.0061, 0.1718),
    ],
)
def test_wilson_published_newcombe_1998(k: int, n: int, low: float, high: float) -> None:
    lo, hi = wilson_interval(k, n)
    assert (round(lo, 4), round(hi, 4)) == (low, high)


def test_wilson_equals_scipy_binomtest_vectorised() -> None:
    binomtest = pytest.importorskip("scipy.stats").binomtest
    ns = np.array([1, 2, 5, 13, 50, 263, 1000, 200_000])
    for confidence in (0.8, 0.95, 0.99):
        ks = np.concatenate([np.arange(n + 1) if n <= 50 else np.array([0, 1, n // 7, n // 2, n - 1, n]) for n in ns])
        nn = np.concatenate([np.full(n + 1 if n <= 50 else 6, n) for n in ns])
        lo, hi = wilson_interval(ks, nn, confidence)
        assert lo.shape == hi.shape == ks.shape
        for i in range(ks.shape[0]):
            ci = binomtest(int(ks[i]), int(nn[i])).proportion_ci(confidence_level=confidence, method="wilson")
            assert lo[i] == pytest.approx(ci.low, abs=1e-12)
            assert hi[i] == pytest.approx(ci.high, abs=1e-12)


def test_wilson_closed_form_and_shape() -> None:
    k, n, z = 7, 50, 1.959963984540054
    p = k / n
    center = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    lo, hi = wilson_interval(k, n)
    assert isinstance(lo, float) and isinstance(hi, float)
    assert (lo, hi) == pytest.approx((center - half, center + half), abs=1e-12)
    # Broadcasting: one n for many counts; 2-D arrays keep their shape.
    lo2, hi2 = wilson_interval(np.array([[0, 7], [50, 25]]), 50)
    assert lo2.shape == (2, 2) and lo2[0, 0] == 0.0 and hi2[1, 0] == 1.0
    assert lo2[0, 1] == pytest.approx(lo)
    # Wider at higher confidence; contains the point estimate.
    lo99, hi99 = wilson_interval(k, n, 0.99)
    assert lo99 < lo < p < hi < hi99


def test_wilson_edges() -> None:
    lo, hi = wilson_interval(0, 0)
    assert math.isnan(lo) and math.isnan(hi)
    lo_a, hi_a = wilson_interval(np.array([0, 1]), np.array([0, 4]))
    assert math.isnan(lo_a[0]) and not math.isnan(lo_a[1])
    assert math.isnan(hi_a[0]) and hi_a[1] > lo_a[1]
    with pytest.raises(ValueError):
        wilson_interval(5, 4)
    with pytest.raises(ValueError):
        wilson_interval(1, 4, confidence=1.0)


@pytest.mark.parametrize(
    ("k", "n", "limit", "op", "state"),
    [
        (2, 8, 0.1, "<=", "undecided"),
        (1, 1, 0.02, "<=", "fails"),
        (0, 200, 0.05, "<=", "passes"),
        (4, 7, 0.9, ">=", "fails"),
        (28, 30, 0.9, ">=", "undecided"),
        (199, 200, 0.9, ">=", "passes"),
    ],
)
def test_rate_decision_on_the_wilson_interval(k: int, n: int, limit: float, op: str, state: str) -> None:
    from annogate.stats import rate_decision

    d = rate_decision(k, n, limit, op)
    low, high = wilson_interval(k, n)
    assert d.state == state and (d.low, d.high) == (low, high)
    assert d.bound == (low if op == "<=" else high)
    if state == "undecided":
        assert d.more is not None and d.more > 0
        p = k / n

        def decided(m: int) -> bool:
            lo, hi = wilson_interval(p * m, m)
            return (lo > limit or hi <= limit) if op == "<=" else (hi < limit or lo >= limit)

        assert decided(n + d.more) and not decided(n + d.more - 1)
        assert "undecided" in d.text() and f"~{d.more} more" in d.text()
    else:
        assert d.more is None
