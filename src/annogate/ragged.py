"""Ragged (variable-length) ranges as flat index arrays, the one helper every columnar check needs.

Why one module: the columnar model stores rings, polygons and keypoints back to back
with offset arrays, and checks keep needing "all indices of segments ``i``" or "every
(owner, position) of a ragged expansion" without a Python loop. Four private copies of
this existed (matching, agreement, geometry, stats); a single tested version keeps the
edge cases (empty segments, zero total) right everywhere.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["ragged", "ranges"]

I64 = npt.NDArray[np.int64]


def ranges(starts: npt.ArrayLike, ends: npt.ArrayLike) -> I64:
    """Concatenated ``arange(s, e)`` for every ``(s, e)`` pair (empty when ``e <= s``), no Python loop."""
    s = np.asarray(starts, np.int64).ravel()
    lengths = np.clip(np.asarray(ends, np.int64).ravel() - s, 0, None)
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, np.int64)
    offsets = np.cumsum(lengths) - lengths
    out: I64 = np.repeat(s - offsets, lengths) + np.arange(total, dtype=np.int64)
    return out


def ragged(counts: npt.ArrayLike) -> tuple[I64, I64]:
    """``(owner, position within owner)`` of a ragged expansion: owner ``k`` repeated ``counts[k]`` times."""
    c = np.clip(np.asarray(counts, np.int64).ravel(), 0, None)
    owner = np.repeat(np.arange(c.shape[0], dtype=np.int64), c)
    start = np.cumsum(c) - c
    return owner, np.arange(owner.shape[0], dtype=np.int64) - start[owner]
