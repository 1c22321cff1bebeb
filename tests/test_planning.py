"""Golden-set planning against SciPy and the published ISO 2859-1 / ANSI Z1.4 tables."""

from __future__ import annotations

import math

import pytest

from annogate.planning import (
    acceptance_plan,
    binom_cdf,
    clopper_pearson,
    estimation_plan,
    hypergeom_cdf,
    iso2859_sample_size,
    wilson,
)

scipy_stats = pytest.importorskip("scipy.stats")


@pytest.mark.parametrize(
    ("lot", "level", "letter", "n"),
    [
        # ISO 2859-1 Table I + II-A, general inspection level II (the published rows)
        (10_001, "II", "M", 315),
        (35_000, "II", "M", 315),
        (20_000, "II", "M", 315),
        (35_001, "II", "N", 500),
        (500, "II", "H", 50),
        (501, "II", "J", 80),
        (1_200, "II", "J", 80),
        (3_201, "II", "L", 200),
        (2, "II", "A", 2),
        (1_000_000, "II", "Q", 1250),
        (20_000, "I", "K", 125),
        (20_000, "III", "N", 500),
    ],
)
def test_iso2859_code_letters_and_sample_sizes(lot: int, level: str, letter: str, n: int) -> None:
    assert iso2859_sample_size(lot, level=level) == (letter, n)


def test_binomial_and_hypergeometric_cdfs_equal_scipy() -> None:
    for n in (1, 7, 50, 315, 2000):
        for p in (0.001, 0.01, 0.05, 0.3, 0.9):
            for c in sorted({0, 1, n // 10, n // 2, n - 1}):
                assert binom_cdf(c, n, p) == pytest.approx(scipy_stats.binom.cdf(c, n, p), rel=1e-9, abs=1e-300)
    for lot, bad, n in ((100, 5, 20), (2000, 20, 125), (35_000, 350, 315), (50, 50, 10)):
        for c in (0, 1, 3, 10):
            want = scipy_stats.hypergeom.cdf(c, lot, bad, n)
            assert hypergeom_cdf(c, lot, bad, n) == pytest.approx(want, rel=1e-9, abs=1e-300)


@pytest.mark.parametrize(("k", "n"), [(0, 10), (3, 50), (10, 10), (17, 315), (1, 2000), (250, 1000)])
def test_intervals_equal_scipy(k: int, n: int) -> None:
    res = scipy_stats.binomtest(k, n)
    w = res.proportion_ci(confidence_level=0.95, method="wilson")
    e = res.proportion_ci(confidence_level=0.95, method="exact")
    assert wilson(k, n) == pytest.approx((w.low, w.high), abs=1e-12)
    assert clopper_pearson(k, n) == pytest.approx((e.low, e.high), abs=1e-9)


@pytest.mark.parametrize(
    ("aql", "ltpd", "lot"),
    [(0.01, 0.06, None), (0.005, 0.05, None), (0.02, 0.08, None), (0.01, 0.06, 2000), (0.01, 0.1, 500)],
)
def test_acceptance_plan_is_the_smallest_meeting_both_risks(aql: float, ltpd: float, lot: int | None) -> None:
    plan = acceptance_plan(aql=aql, ltpd=ltpd, lot=lot)

    def pa(c: int, n: int, p: float) -> float:
        if lot is None:
            return float(scipy_stats.binom.cdf(c, n, p))
        return float(scipy_stats.hypergeom.cdf(c, lot, round(p * lot), n))

    assert pa(plan.c, plan.n, aql) >= 0.95
    assert pa(plan.c, plan.n, ltpd) <= 0.10
    assert plan.p_accept_at_aql == pytest.approx(pa(plan.c, plan.n, aql), rel=1e-9)
    # brute force with scipy: no plan with a smaller n meets both risks
    for n in range(1, plan.n):
        assert not any(pa(c, n, aql) >= 0.95 and pa(c, n, ltpd) <= 0.10 for c in range(0, n + 1)), n


def test_acceptance_plan_names_the_iso_letter_for_a_lot() -> None:
    plan = acceptance_plan(aql=0.01, ltpd=0.05, lot=20_000)
    assert (plan.iso_letter, plan.iso_sample_size) == ("M", 315)
    assert plan.distribution == "hypergeometric"


def test_estimation_plan_reaches_the_margin_and_no_smaller_sample_does() -> None:
    plan = estimation_plan(expected_rate=0.05, margin=0.01, confidence=0.95)
    n = plan.objects
    res = scipy_stats.binomtest(round(0.05 * n), n).proportion_ci(method="wilson")
    assert (res.high - res.low) / 2 <= 0.01
    smaller = scipy_stats.binomtest(round(0.05 * (n - 1)), n - 1).proportion_ci(method="wilson")
    assert (smaller.high - smaller.low) / 2 > 0.01
    # close to the normal approximation z^2 p q / m^2 = 1825 (Wilson is a little wider)
    assert 1800 <= n <= 1900


def test_estimation_plan_finite_population_and_images() -> None:
    inf = estimation_plan(expected_rate=0.05, margin=0.01)
    fin = estimation_plan(expected_rate=0.05, margin=0.01, batch_size=5000, objects_per_image=4.0)
    assert fin.objects == math.ceil(inf.objects / (1 + (inf.objects - 1) / 5000))
    assert fin.images == math.ceil(fin.objects / 4.0)
    cp = estimation_plan(expected_rate=0.05, margin=0.01, method="clopper-pearson")
    assert cp.objects >= inf.objects  # the exact interval is the more conservative one


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -0.1, 1.0])
def test_planning_rejects_bad_numbers(bad: float) -> None:
    with pytest.raises(ValueError):
        estimation_plan(expected_rate=bad, margin=0.01)
    with pytest.raises(ValueError):
        acceptance_plan(aql=bad, ltpd=0.5)


@pytest.mark.parametrize("df", [1, 2, 3, 5, 10, 29, 100, 1000, 100_000])
@pytest.mark.parametrize("p", [0.5, 0.9, 0.975, 0.995, 0.025])
def test_t_quantile_equals_scipy(df: int, p: float) -> None:
    from annogate.planning import t_cdf, t_quantile

    assert t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-9, abs=1e-12)
    assert t_cdf(1.7, df) == pytest.approx(scipy_stats.t.cdf(1.7, df), rel=1e-10)
