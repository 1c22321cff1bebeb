"""Golden-set planning: how many golden objects a decision needs, exactly.

Why this exists: labelling programmes size golden sets by habit ("5-15% is typically
good enough", CVAT's docs; Klie et al. 2024 find sample sizes are usually chosen
without justification). Two questions have exact answers from the binomial and
hypergeometric distributions, and this module gives them:

* **Estimation**: how many golden objects estimate a defect rate within +/- a margin
  at a confidence level (Wilson or Clopper-Pearson interval, with the finite-population
  correction when the batch size is known).
* **Acceptance sampling**: the single sampling plan (sample size n, acceptance number
  c) that accepts a batch at the acceptable quality level (AQL) with probability at
  least 1 - alpha (producer's risk) and at the lot tolerance percent defective (LTPD)
  with probability at most beta (consumer's risk). Besides the computed plan, the
  ISO 2859-1 / ANSI Z1.4 sample-size code letter and sample size for the lot size are
  given, so a user can match the standard table they know.

Everything is plain ``math`` (log-gamma sums), so no SciPy is needed at run time; the
tests hold these functions to SciPy and to the published tables.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

__all__ = [
    "AcceptancePlan",
    "EstimationPlan",
    "acceptance_plan",
    "binom_cdf",
    "clopper_pearson",
    "estimation_plan",
    "hypergeom_cdf",
    "iso2859_sample_size",
    "t_quantile",
    "wilson",
]

Method = Literal["wilson", "clopper-pearson"]

# ISO 2859-1 (ANSI/ASQ Z1.4) Table I: lot-size upper bounds and the code letter per
# general inspection level; Table II-A: the sample size of each code letter.
_LOT_UPPER = (8, 15, 25, 50, 90, 150, 280, 500, 1200, 3200, 10000, 35000, 150000, 500000, math.inf)
_LETTERS = {
    "I": "AABCCDEFGHJKLMN",
    "II": "ABCDEFGHJKLMNPQ",
    "III": "BCDEFGHJKLMNPQR",
}
_SAMPLE_SIZE = {
    "A": 2,
    "B": 3,
    "C": 5,
    "D": 8,
    "E": 13,
    "F": 20,
    "G": 32,
    "H": 50,
    "J": 80,
    "K": 125,
    "L": 200,
    "M": 315,
    "N": 500,
    "P": 800,
    "Q": 1250,
    "R": 2000,
}


def _check_prob(name: str, p: float, *, open_low: bool = False) -> None:
    if not (math.isfinite(p) and (0.0 < p if open_low else 0.0 <= p) and p < 1.0):
        raise ValueError(f"{name} must be a probability in {'(0' if open_low else '[0'}, 1), got {p!r}")


def _log_binom_pmf(k: int, n: int, p: float) -> float:
    if p == 0.0:
        return 0.0 if k == 0 else -math.inf
    if p == 1.0:
        return 0.0 if k == n else -math.inf
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * math.log(p) + (n - k) * math.log1p(-p)


def binom_cdf(c: int, n: int, p: float) -> float:
    """P(X <= c) for X ~ Binomial(n, p), summed exactly in log space."""
    if c < 0:
        return 0.0
    if c >= n:
        return 1.0
    terms = [_log_binom_pmf(k, n, p) for k in range(c + 1)]
    m = max(terms)
    if m == -math.inf:
        return 0.0
    return min(1.0, math.exp(m) * math.fsum(math.exp(t - m) for t in terms))


def hypergeom_cdf(c: int, lot: int, defective: int, n: int) -> float:
    """P(X <= c) drawing ``n`` without replacement from ``lot`` items, ``defective`` bad."""
    if not (0 <= defective <= lot and 0 <= n <= lot):
        raise ValueError("need 0 <= defective <= lot and 0 <= n <= lot")

    def log_comb(a: int, b: int) -> float:
        return math.lgamma(a + 1) - math.lgamma(b + 1) - math.lgamma(a - b + 1)

    lo = max(0, n - (lot - defective))
    hi = min(c, n, defective)
    if hi < lo:
        return 0.0
    base = log_comb(lot, n)
    terms = [log_comb(defective, k) + log_comb(lot - defective, n - k) - base for k in range(lo, hi + 1)]
    m = max(terms)
    return min(1.0, math.exp(m) * math.fsum(math.exp(t - m) for t in terms))


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the regularised incomplete beta (modified Lentz)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c
        c = c if abs(c) > tiny else tiny
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            break
    return h


def _betainc(a: float, b: float, x: float) -> float:
    """Regularised incomplete beta I_x(a, b)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    lbt = math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: float) -> float:
    """Student's t distribution function, from the incomplete beta."""
    if df <= 0:
        raise ValueError("df must be positive")
    tail = 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: float) -> float:
    """Student's t quantile (what ``scipy.stats.t.ppf`` gives), by bisection on :func:`t_cdf`.

    Why here and not SciPy: the golden gate needs one quantile for drift intervals,
    and SciPy is a large install for a pre-commit environment (tested against it).
    """
    _check_prob("p", p, open_low=True)
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    hi = 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
        if hi > 1e12:
            return math.inf
    return _bisect(lambda t: t_cdf(t, df) - p, 0.0, hi)


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials: ``annogate.stats.wilson_interval``
    as plain floats, with ``(0, 1)`` (nothing known) for an empty sample."""
    from annogate.stats import wilson_interval

    if n <= 0:
        return (0.0, 1.0)
    low, high = wilson_interval(float(k), float(n), confidence)
    return (float(low), float(high))


def _bisect(f: Callable[[float], float], lo: float, hi: float) -> float:
    """Root of a monotone increasing function on [lo, hi] (80 halvings)."""
    for _ in range(80):
        mid = (lo + hi) / 2
        if f(mid) < 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def clopper_pearson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Exact (Clopper-Pearson) interval, by inverting the binomial tails.

    lower solves P(X >= k; n, p) = alpha/2, upper solves P(X <= k; n, p) = alpha/2:
    the same as ``scipy.stats.binomtest(k, n).proportion_ci("exact")``.
    """
    if n <= 0:
        return (0.0, 1.0)
    a = (1 - confidence) / 2
    lower = 0.0 if k == 0 else _bisect(lambda p: (1 - binom_cdf(k - 1, n, p)) - a, 0.0, 1.0)
    upper = 1.0 if k == n else _bisect(lambda p: a - binom_cdf(k, n, p), 0.0, 1.0)
    return (lower, upper)


def _interval(k: int, n: int, confidence: float, method: Method) -> tuple[float, float]:
    return wilson(k, n, confidence) if method == "wilson" else clopper_pearson(k, n, confidence)


def _fpc_n(n: int, population: int | None) -> int:
    """Sample size after the finite-population correction n / (1 + (n - 1) / N)."""
    if population is None or population <= 0:
        return n
    return min(population, math.ceil(n / (1 + (n - 1) / population)))


@dataclass(frozen=True, kw_only=True)
class EstimationPlan:
    """How many golden objects estimate a defect rate to within +/- ``margin``."""

    expected_rate: float
    margin: float
    confidence: float
    method: str
    objects: int  # golden objects needed (finite-population corrected when a batch size is given)
    objects_infinite: int  # the same for an unlimited population
    batch_size: int | None
    images: int | None  # golden images, from objects per image when known
    interval: tuple[float, float]  # the interval the plan expects at that size


def estimation_plan(
    *,
    expected_rate: float,
    margin: float,
    confidence: float = 0.95,
    batch_size: int | None = None,
    objects_per_image: float | None = None,
    method: Method = "wilson",
) -> EstimationPlan:
    """Smallest sample whose interval around ``expected_rate`` has half-width <= ``margin``.

    The half-width ((upper - lower) / 2) is that of the chosen interval at
    k = round(expected_rate * n), so the plan is exact for the interval users will see,
    not the normal approximation z^2 p (1 - p) / margin^2 (which it approaches).
    """
    _check_prob("expected_rate", expected_rate)
    _check_prob("confidence", confidence, open_low=True)
    if not (math.isfinite(margin) and 0 < margin < 1):
        raise ValueError(f"margin must be in (0, 1), got {margin!r}")
    if batch_size is not None and batch_size <= 0:
        raise ValueError("batch_size must be positive")

    def ok(n: int) -> bool:
        k = round(expected_rate * n)
        lo, hi = _interval(k, n, confidence, method)
        return (hi - lo) / 2 <= margin

    # the normal approximation is a good starting bracket; then exact search
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    guess = max(1, math.ceil(z * z * max(expected_rate * (1 - expected_rate), 1e-4) / margin**2))
    hi = max(2, guess)
    while not ok(hi):
        hi *= 2
        if hi > 10**9:
            raise ValueError("no sample size below 10^9 reaches that margin")
    lo = 1
    while lo < hi:  # smallest n with ok(n); half-widths shrink with n up to rounding wiggles
        mid = (lo + hi) // 2
        if ok(mid):
            hi = mid
        else:
            lo = mid + 1
    n_inf = lo
    while not all(ok(m) for m in range(n_inf, n_inf + 5)):  # step past a rounding wiggle
        n_inf += 1
    n = _fpc_n(n_inf, batch_size)
    images = math.ceil(n / objects_per_image) if objects_per_image and objects_per_image > 0 else None
    k = round(expected_rate * n_inf)
    return EstimationPlan(
        expected_rate=expected_rate,
        margin=margin,
        confidence=confidence,
        method=method,
        objects=n,
        objects_infinite=n_inf,
        batch_size=batch_size,
        images=images,
        interval=_interval(k, n_inf, confidence, method),
    )


@dataclass(frozen=True, kw_only=True)
class AcceptancePlan:
    """A single sampling plan: inspect ``n`` objects, accept when at most ``c`` are defective."""

    n: int
    c: int
    aql: float
    ltpd: float
    alpha: float
    beta: float
    lot: int | None
    p_accept_at_aql: float
    p_accept_at_ltpd: float
    distribution: str
    iso_letter: str | None
    iso_sample_size: int | None


def _p_accept(c: int, n: int, p: float, lot: int | None) -> float:
    if lot is None:
        return binom_cdf(c, n, p)
    return hypergeom_cdf(c, lot, round(p * lot), n)


def acceptance_plan(
    *,
    aql: float,
    ltpd: float,
    alpha: float = 0.05,
    beta: float = 0.10,
    lot: int | None = None,
    level: str = "II",
    max_n: int = 100_000,
) -> AcceptancePlan:
    """The smallest single sampling plan meeting both risks (binomial, or hypergeometric
    when the lot size is given): P(accept | AQL) >= 1 - alpha, P(accept | LTPD) <= beta.

    For each acceptance number c = 0, 1, ... the smallest n that protects the consumer
    (the OC curve at LTPD falls to beta) is found by bisection; the first c whose plan
    also protects the producer is returned, which minimises n.
    """
    _check_prob("aql", aql, open_low=True)
    _check_prob("ltpd", ltpd, open_low=True)
    _check_prob("alpha", alpha, open_low=True)
    _check_prob("beta", beta, open_low=True)
    if not aql < ltpd:
        raise ValueError(f"aql ({aql}) must be below ltpd ({ltpd})")
    if lot is not None and lot <= 0:
        raise ValueError("lot must be positive")
    limit = min(max_n, lot) if lot is not None else max_n
    for c in range(0, limit):
        if _p_accept(c, limit, ltpd, lot) > beta:
            continue  # even the largest sample cannot protect the consumer with this c
        lo, hi = c + 1, limit
        while lo < hi:
            mid = (lo + hi) // 2
            if _p_accept(c, mid, ltpd, lot) <= beta:
                hi = mid
            else:
                lo = mid + 1
        n = lo
        pa = _p_accept(c, n, aql, lot)
        if pa >= 1 - alpha:
            letter, iso_n = iso2859_sample_size(lot, level=level) if lot is not None else (None, None)
            return AcceptancePlan(
                n=n,
                c=c,
                aql=aql,
                ltpd=ltpd,
                alpha=alpha,
                beta=beta,
                lot=lot,
                p_accept_at_aql=pa,
                p_accept_at_ltpd=_p_accept(c, n, ltpd, lot),
                distribution="hypergeometric" if lot is not None else "binomial",
                iso_letter=letter,
                iso_sample_size=iso_n,
            )
    raise ValueError(f"no single sampling plan with n <= {limit} meets both risks")


def iso2859_sample_size(lot: int, *, level: str = "II") -> tuple[str, int]:
    """ISO 2859-1 / ANSI Z1.4 sample-size code letter and sample size (normal inspection).

    A lot of 10,001-35,000 at general level II is letter M, 315 samples. When the
    sample size exceeds the lot, the standard says inspect the whole lot.
    """
    if lot < 2:
        raise ValueError("lot must be at least 2")
    if level not in _LETTERS:
        raise ValueError(f"level must be one of {sorted(_LETTERS)}")
    row = next(i for i, upper in enumerate(_LOT_UPPER) if lot <= upper)
    letter = _LETTERS[level][row]
    return letter, min(_SAMPLE_SIZE[letter], lot)
