"""Agreement and proportion statistics, vectorised, in plain NumPy.

Why our own code rather than the ``krippendorff`` / ``statsmodels`` packages: the
agreement gate computes alpha on every batch with several annotators (hundreds of
thousands of matched objects), the cost model needs Wilson intervals for many
annotators at once, and neither package is a dependency we want in a label
repository's CI. The tests hold these functions to those packages (and to the
published worked examples) so that the numbers stay the ones reviewers know.

Conventions
-----------
* Reliability data are laid out as the ``krippendorff`` package lays them out:
  shape ``(coders, units)``, ``nan`` where a coder gave no value to a unit.
  Values are category codes (any finite numbers; only equality matters, the level
  of measurement is nominal).
* Undefined statistics are ``nan`` rather than an exception, so a gate can report
  "nothing measured" (a :class:`~annogate.findings.ThresholdCheck` with a ``nan``
  value passes) instead of crashing on a degenerate batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from statistics import NormalDist
from typing import Any, overload

import numpy as np
import numpy.typing as npt

__all__ = [
    "RateDecision",
    "fleiss_kappa",
    "krippendorff_alpha_nominal",
    "krippendorff_alpha_nominal_sparse",
    "rate_decision",
    "wilson_interval",
]

F64 = npt.NDArray[np.float64]


class _Cells:
    """The occupied (unit, value) cells of the pairable units, sorted by unit.

    ``values`` is the sorted value domain; per cell: ``unit``, value index ``c``,
    count ``n_uc`` and the unit's total ``m_u`` (>= 2). Working on occupied cells
    only keeps memory linear in the data instead of units x values.
    """

    __slots__ = ("c", "m_u", "n_uc", "unit", "values")

    def __init__(self, unit: npt.NDArray[np.int64], value: F64, n_units: int) -> None:
        if np.isinf(value).any():
            raise ValueError("reliability data hold an infinite value; use nan for missing values")
        present = ~np.isnan(value)
        unit, value = unit[present], value[present]
        values, code = np.unique(value, return_inverse=True)
        n_values = max(int(values.shape[0]), 1)
        m_u = np.bincount(unit, minlength=n_units)
        cells, n_uc = np.unique(unit * n_values + code.astype(np.int64).ravel(), return_counts=True)
        cell_unit = cells // n_values
        keep = m_u[cell_unit] >= 2
        self.values: F64 = values
        self.unit: npt.NDArray[np.int64] = cell_unit[keep]
        self.c: npt.NDArray[np.int64] = (cells % n_values)[keep]
        self.n_uc: F64 = n_uc[keep].astype(np.float64)
        self.m_u: F64 = m_u[cell_unit][keep].astype(np.float64)

    @classmethod
    def dense(cls, reliability_data: npt.ArrayLike) -> _Cells:
        data = np.asarray(reliability_data, dtype=np.float64)
        if data.ndim != 2:
            raise ValueError(f"reliability_data must be 2-D (coders, units), got shape {data.shape}")
        unit = np.broadcast_to(np.arange(data.shape[1], dtype=np.int64), data.shape)
        return cls(unit.ravel(), data.ravel(), int(data.shape[1]))

    @classmethod
    def sparse(cls, unit: npt.ArrayLike, value: npt.ArrayLike) -> _Cells:
        u = np.asarray(unit, dtype=np.int64).ravel()
        v = np.asarray(value, dtype=np.float64).ravel()
        if u.shape != v.shape:
            raise ValueError(f"unit and value differ in length: {u.shape[0]} != {v.shape[0]}")
        if (u < 0).any():
            raise ValueError("unit indices must be non-negative")
        return cls(u, v, int(u.max()) + 1 if u.size else 0)


def krippendorff_alpha_nominal(reliability_data: npt.ArrayLike) -> float:
    """Krippendorff's alpha for nominal data, ``(coders, units)`` with ``nan`` missing.

    Same layout and result as ``krippendorff.alpha(reliability_data,
    level_of_measurement="nominal")``. With Krippendorff's coincidence matrix ``o``
    (``o[c, k]``: pairable value pairs from different coders within a unit), its marginals ``n_c`` and ``n = sum n_c``::

        alpha = 1 - (n - 1) * (n - sum_c o_cc) / (n**2 - sum_c n_c**2)

    which is ``1 - D_o / D_e`` with the nominal difference function. Only the
    diagonal of ``o`` is needed, and it is computed from the occupied
    (unit, value) cells, so the cost is linear in the number of values.

    Returns ``nan`` when alpha is undefined: no unit has two values, or every
    pairable value is the same (no expected disagreement: Krippendorff leaves
    alpha = 0/0 undefined rather than 1).
    """
    return _alpha(_Cells.dense(reliability_data))


def krippendorff_alpha_nominal_sparse(unit: npt.ArrayLike, value: npt.ArrayLike) -> float:
    """:func:`krippendorff_alpha_nominal` from the given values only, in long form.

    ``unit[i]`` is the unit (any non-negative integer id) that value ``value[i]``
    was given to; missing values are simply absent (or ``nan``). Alpha does not
    depend on *which* coder gave a value, only on the values within each unit,
    so no coder column is needed. Why: with many coders and units the dense
    ``(coders, units)`` matrix is mostly ``nan``; the agreement gate builds this
    form directly and its memory stays linear in the number of objects.
    """
    return _alpha(_Cells.sparse(unit, value))


def _alpha(cells: _Cells) -> float:
    if cells.c.size == 0:
        return float("nan")
    v = int(cells.values.shape[0])
    nuc = cells.n_uc
    n_c = np.bincount(cells.c, weights=nuc, minlength=v)
    o_cc = np.bincount(cells.c, weights=nuc * (nuc - 1.0) / (cells.m_u - 1.0), minlength=v)
    n = float(n_c.sum())
    expected = n * n - float(np.dot(n_c, n_c))
    if expected <= 0.0:
        return float("nan")
    return float(1.0 - (n - 1.0) * (n - float(o_cc.sum())) / expected)


def fleiss_kappa(counts: npt.ArrayLike) -> float:
    """Fleiss' (1971) kappa from a subjects x categories table of rater counts.

    ``counts[i, j]`` is how many raters put subject ``i`` in category ``j``; every
    row must sum to the same number of raters ``n >= 2`` (Fleiss' design; use
    :func:`krippendorff_alpha_nominal` when raters per subject vary). Returns
    ``nan`` when chance agreement is total (a single category used throughout).
    """
    t = np.asarray(counts, dtype=np.float64)
    if t.ndim != 2 or t.shape[0] == 0:
        raise ValueError(f"counts must be a non-empty 2-D table, got shape {t.shape}")
    if (t < 0).any() or not np.isfinite(t).all():
        raise ValueError("counts must be finite and non-negative")
    raters = t.sum(axis=1)
    n = float(raters[0])
    if not np.all(raters == n):
        raise ValueError("every subject must be rated by the same number of raters")
    if n < 2:
        raise ValueError("Fleiss' kappa needs at least two raters per subject")
    p_i = ((t * t).sum(axis=1) - n) / (n * (n - 1.0))
    p_bar = float(p_i.mean())
    p_j = t.sum(axis=0) / (t.shape[0] * n)
    p_e = float(np.dot(p_j, p_j))
    if p_e >= 1.0:
        return float("nan")
    return (p_bar - p_e) / (1.0 - p_e)


@overload
def wilson_interval(successes: float, n: float, confidence: float = 0.95) -> tuple[float, float]: ...


@overload
def wilson_interval(successes: npt.NDArray[Any], n: npt.ArrayLike, confidence: float = 0.95) -> tuple[F64, F64]: ...


@overload
def wilson_interval(successes: npt.ArrayLike, n: npt.NDArray[Any], confidence: float = 0.95) -> tuple[F64, F64]: ...


def wilson_interval(
    successes: npt.ArrayLike, n: npt.ArrayLike, confidence: float = 0.95
) -> tuple[float, float] | tuple[F64, F64]:
    """Wilson score interval for a binomial proportion ``successes / n``.

    Why Wilson and not the normal (Wald) interval: defect rates are small and
    samples per annotator are often small, where Wald collapses to zero width at
    0 defects and leaves [0, 1]; Wilson keeps its coverage there (Newcombe 1998).
    Same as ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``.

    Scalars give a ``(low, high)`` pair of floats; arrays (broadcast together)
    give a pair of arrays. ``n == 0`` gives ``nan`` bounds: nothing was measured.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    scalar = np.ndim(successes) == 0 and np.ndim(n) == 0
    k = np.asarray(successes, dtype=np.float64)
    m = np.asarray(n, dtype=np.float64)
    if np.any(k < 0) or np.any(m < 0) or np.any(k > m):
        raise ValueError("need 0 <= successes <= n")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    z2 = z * z
    with np.errstate(divide="ignore", invalid="ignore"):
        p = k / m
        denom = 1.0 + z2 / m
        center = (p + z2 / (2.0 * m)) / denom
        half = z * np.sqrt(p * (1.0 - p) / m + z2 / (4.0 * m * m)) / denom
        low = np.where(k == 0, 0.0, np.clip(center - half, 0.0, 1.0))
        high = np.where(k == m, 1.0, np.clip(center + half, 0.0, 1.0))
    empty = m == 0
    low = np.where(empty, np.nan, low)
    high = np.where(empty, np.nan, high)
    if scalar:
        return float(low), float(high)
    return low.astype(np.float64), high.astype(np.float64)


@dataclass(frozen=True, kw_only=True, slots=True)
class RateDecision:
    """What a sample says about a rate against a limit, by its 95% Wilson interval.

    Why: a rate measured on a sample (2 confused cyclists of 8 golden ones, recall on
    a 30-object golden set) carries sampling noise; failing a batch on the point
    estimate fails good batches and passes bad ones at random. So, as the drift
    check already does, a limit is broken only when the *whole* interval lies on
    the wrong side of it. ``state``: ``"fails"`` (interval beyond the limit),
    ``"passes"`` (interval within it) or ``"undecided"`` (the interval straddles the
    limit: the sample is too small to tell). ``bound``: the interval's end nearest
    the limit from the allowed side (``low`` for a maximum, ``high`` for a
    minimum), the figure a check compares. ``more``: for an undecided rate, how
    many more sampled objects would decide it if the observed rate held (None when
    it never would: the rate sits on the limit, or nothing was sampled).
    """

    rate: float
    low: float
    high: float
    n: int
    limit: float
    op: str
    state: str
    bound: float
    more: int | None

    def text(self, what: str = "objects") -> str:
        """``25.0% (95% CI 7.1%-59.1%, n=8) <= 10%: undecided, ~40 more objects would decide``."""
        if self.n == 0:
            return f"no {what} sampled"
        s = f"{self.rate:.1%} (95% CI {self.low:.1%}-{self.high:.1%}, n={self.n}) {self.op} {self.limit:.4g}: {self.state}"
        if self.state == "undecided" and self.more is not None:
            s += f", ~{self.more} more {what} would decide"
        return s


def rate_decision(k: int, n: int, limit: float, op: str) -> RateDecision:
    """Decide ``k / n`` against ``limit`` (``op`` ``"<="``: a maximum, ``">="``: a minimum) on its Wilson interval."""
    if op not in ("<=", ">="):
        raise ValueError(f"op must be '<=' or '>=', not {op!r}")
    if n <= 0:
        nan = float("nan")
        return RateDecision(
            rate=nan, low=nan, high=nan, n=0, limit=limit, op=op, state="undecided", bound=nan, more=None
        )
    low, high = wilson_interval(float(k), float(n))
    p = k / n
    if op == "<=":
        state = "fails" if low > limit else "passes" if high <= limit else "undecided"
        bound = low
    else:
        state = "fails" if high < limit else "passes" if low >= limit else "undecided"
        bound = high
    more = None
    if state == "undecided" and p != limit and limit == limit:
        more = _more_to_decide(p, n, limit, op)
    return RateDecision(rate=p, low=low, high=high, n=int(n), limit=limit, op=op, state=state, bound=bound, more=more)


def _more_to_decide(p: float, n: int, limit: float, op: str, cap: int = 10**7) -> int | None:
    """Smallest extra sample size after which rate ``p`` (held fixed) has an interval clear of ``limit``."""

    def decided(m: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        lo, hi = wilson_interval(p * m, m)
        out: npt.NDArray[np.bool_] = ((lo > limit) | (hi <= limit)) if op == "<=" else ((hi < limit) | (lo >= limit))
        return out

    grid = np.unique(np.geomspace(n + 1, cap, 200).astype(np.int64)).astype(np.float64)
    ok = decided(grid)
    if not ok.any():
        return None
    hi_n = int(grid[int(np.argmax(ok))])
    lo_n = int(grid[int(np.argmax(ok)) - 1]) if np.argmax(ok) > 0 else n
    while hi_n - lo_n > 1:  # the interval narrows with n: bisect to the first size that decides
        mid = (lo_n + hi_n) // 2
        if bool(decided(np.array([float(mid)]))[0]):
            hi_n = mid
        else:
            lo_n = mid
    return hi_n - n
