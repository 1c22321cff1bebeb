"""Validate COCO run-length-encoded masks before any C code sees them.

pycocotools trusts its input: a mask whose run lengths do not add up to ``h * w``
makes ``iou`` walk off the end of its runs (an endless loop holding the GIL, deaf to
Ctrl-C), a compressed string that ends inside a count makes ``rleFrString`` read past
the terminator, and counts beyond 32 bits wrap silently. Every caller that hands a
mask to pycocotools (the geometry gate, matching against golden files and between
annotators) first asks :func:`rle_problem`; a mask with a problem is reported and
never decoded or matched.

Everything here is exact: sums use Python integers (an int64 sum of
``[2**62] * 4 + [10000]`` wraps to exactly 10000 and would pass), and the string
decoder is a NumPy transcription of pycocotools' ``rleFrString`` with bounds that C
does not check.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["MAX_PIXELS", "decode_counts_string", "polygon_problem", "rle_counts", "rle_problem"]

#: Largest mask (h * w) accepted: pycocotools keeps sizes and runs in 32-bit unsigned
#: integers and areas in 32-bit ones; 2^31 pixels (a 46k x 46k image) is far above any
#: real image and well inside both.
MAX_PIXELS = 1 << 31
#: Groups of 5 bits per compressed count: 7 groups hold 35 bits, enough for any run
#: of a mask within MAX_PIXELS and its sign; more is malformed (and would overflow C's
#: ``long`` shift for > 12 groups).
_MAX_GROUPS = 7
#: Largest coordinate magnitude accepted in a polygon handed to pycocotools: its
#: ``frPyObjects`` scales coordinates to integers in C and segfaults on 1e308.
MAX_COORDINATE = 1e9


def decode_counts_string(s: str | bytes) -> npt.NDArray[np.int64] | None:
    """Run lengths of COCO's compressed RLE string, or None if it is malformed.

    Each count is a little-endian sequence of 5-bit groups (characters 48..111), bit
    0x20 meaning "more follows" and bit 0x10 of the last group the sign; from the
    fourth count on (index > 2, as in pycocotools) each is stored as the difference to
    the count two places before. None for non-ASCII or out-of-range characters, a
    string that ends inside a count, or a count of more than ``_MAX_GROUPS`` groups.
    The decoded runs may still be negative or not sum to the mask size: the caller
    checks that.
    """
    if isinstance(s, str):
        if not s.isascii():
            return None
        raw = s.encode("ascii")
    else:
        raw = bytes(s)
    b = np.frombuffer(raw, dtype=np.uint8)
    if b.size == 0:
        return np.empty(0, np.int64)
    if (b < 48).any() or (b > 111).any():
        return None
    v = b.astype(np.int64) - 48
    more = (v & 0x20) != 0
    if more[-1]:
        return None
    ends = np.flatnonzero(~more)
    starts = np.concatenate([[0], ends[:-1] + 1]).astype(np.int64)
    glen = ends - starts + 1
    if int(glen.max()) > _MAX_GROUPS:
        return None
    pos = np.arange(v.size, dtype=np.int64) - np.repeat(starts, glen)
    vals = np.add.reduceat((v & 0x1F) << (5 * pos), starts)
    neg = (v[ends] & 0x10) != 0
    vals = vals - np.where(neg, np.left_shift(np.int64(1), 5 * glen), 0)
    # Delta coding: counts[m] += counts[m - 2] for m > 2. Values are below 2^35 and
    # there are fewer than 2^27 of them (checked by the caller's length bound), so
    # the int64 cumulative sums cannot overflow.
    out = vals.copy()
    if out.size > 3:
        out[3::2] = out[1] + np.cumsum(vals[3::2])
    if out.size > 4:
        out[4::2] = out[2] + np.cumsum(vals[4::2])
    return np.asarray(out, dtype=np.int64)


def _is_int(v: object) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _known(v: float) -> bool:
    try:
        return math.isfinite(float(v))
    except (TypeError, ValueError, OverflowError):
        return False


def rle_counts(rle: object, height: float, width: float) -> tuple[tuple[int, int], npt.NDArray[np.int64]] | str:
    """((h, w), run lengths) of a safe mask, else the reason it is unsafe (see :func:`rle_problem`)."""
    if not isinstance(rle, Mapping):
        return f"not an RLE object ({type(rle).__name__})"
    size = rle.get("size")
    if not isinstance(size, (list, tuple)) or len(size) != 2 or not all(_is_int(v) and v >= 0 for v in size):
        return f"size {_short(size)} is not [height, width] as two non-negative integers"
    h, w = int(size[0]), int(size[1])
    if h * w > MAX_PIXELS:
        return f"size {h}x{w} exceeds the {MAX_PIXELS}-pixel limit of COCO RLE"
    if _known(height) and _known(width) and (h != float(height) or w != float(width)):
        return f"mask size {h}x{w} (h x w) differs from the image's {float(height):g}x{float(width):g}"
    counts = rle.get("counts")
    arr: npt.NDArray[np.int64]
    if isinstance(counts, (str, bytes)):
        # Every run takes at least one character and there are at most h*w + 1 runs.
        if len(counts) > _MAX_GROUPS * (h * w + 1):
            return f"compressed counts string of {len(counts)} characters is too long for a {h}x{w} mask"
        dec = decode_counts_string(counts)
        if dec is None:
            return "compressed counts string is malformed"
        arr = dec
    elif isinstance(counts, (list, tuple)):
        if len(counts) > h * w + 1:
            return f"{len(counts)} runs is more than a {h}x{w} mask can hold"
        if not all(_is_int(c) for c in counts):
            bad = next(c for c in counts if not _is_int(c))
            return f"counts contain a non-integer ({_short(bad)})"
        if any(c < 0 or c >= MAX_PIXELS for c in counts):
            bad = next(c for c in counts if c < 0 or c >= MAX_PIXELS)
            return f"counts contain a run length out of range ({_short(bad)})"
        arr = np.asarray([int(c) for c in counts], dtype=np.int64)
    else:
        return f"counts of type {type(counts).__name__}"
    if arr.size and int(arr.min()) < 0:
        return "counts contain a negative run length"
    if arr.size and int(arr.max()) > h * w:
        return f"counts contain a run of {int(arr.max())} pixels, more than the {h}x{w} mask holds"
    # Exact: every run is now <= h*w <= 2^31, so an int64 sum of fewer than 2^32 runs
    # cannot wrap; beyond that (never in a real mask) Python integers are used.
    total = int(arr.sum(dtype=np.int64)) if arr.size < (1 << 32) else sum(arr.tolist())
    if total != h * w:
        return f"counts sum to {total} pixels, size {h}x{w} has {h * w}"
    return (h, w), arr


def rle_problem(rle: object, height: float, width: float) -> str | None:
    """None when ``rle`` is safe to hand to pycocotools, else a short reason.

    Safe means: ``size`` is two non-negative ints with ``h * w <= MAX_PIXELS`` that
    equal the image's height and width when those are known (finite); ``counts`` is
    either a list of non-negative Python ints below 2^31 or a compressed string that
    decodes (ASCII 48..111, no truncated count, no count of more than 7 groups), and
    the run lengths are non-negative and add up (exactly) to ``h * w``. Pass ``nan``
    for an unknown image size.
    """
    r = rle_counts(rle, height, width)
    return r if isinstance(r, str) else None


def polygon_problem(xy: Any, height: float = math.nan, width: float = math.nan) -> str | None:
    """None when a flat polygon coordinate list is safe for pycocotools' ``frPyObjects``.

    C scales coordinates to integers without checks: a non-finite or huge coordinate
    (1e308) crashes the process. Accepted: at least 6 coordinates (3 points), an even
    count, every value finite with magnitude at most ``MAX_COORDINATE``. Being outside
    the image is no safety problem (the geometry gate reports it) and is not checked;
    ``height`` and ``width`` are accepted for symmetry with :func:`rle_problem`.
    """
    del height, width
    try:
        a = np.asarray(xy, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        return "polygon coordinates are not numbers"
    if a.size < 6 or a.size % 2:
        return f"{a.size} coordinates: an even count of at least 6 is needed"
    if not np.isfinite(a).all():
        return "polygon has a non-finite coordinate"
    if float(np.abs(a).max()) > MAX_COORDINATE:
        return f"polygon coordinate {float(np.abs(a).max()):g} exceeds {MAX_COORDINATE:g} in magnitude"
    return None


def _short(v: object, limit: int = 40) -> str:
    r = repr(v)
    return r if len(r) <= limit else r[: limit - 3] + "..."
