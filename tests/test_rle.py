"""annogate.rle: which masks and polygons may be handed to pycocotools' C code."""

from __future__ import annotations

import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from annogate.rle import decode_counts_string, polygon_problem, rle_problem

NAN = math.nan


def _runs(m: np.ndarray) -> list[int]:
    """Uncompressed COCO runs of a binary mask (column-major, starting with background)."""
    flat = m.flatten(order="F")
    change = np.flatnonzero(np.diff(flat)) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    runs = np.diff(bounds).tolist()
    return [0, *runs] if flat.size and flat[0] else runs


def test_string_decoder_agrees_with_pycocotools() -> None:
    """Peer: pycocotools' own encoder; its compressed string decodes to the mask's runs."""
    rng = np.random.default_rng(7)
    for t in range(200):
        h, w = (int(v) for v in rng.integers(1, 50, 2))
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if t % 5 == 0:
            m[:] = 1
        enc = mask_utils.encode(np.asfortranarray(m))
        dec = decode_counts_string(enc["counts"])
        assert dec is not None
        assert dec.tolist() == _runs(m)
        assert int(mask_utils.area(enc)) == int(m.sum())
        assert rle_problem(enc, h, w) is None
        assert rle_problem({"size": [h, w], "counts": enc["counts"].decode()}, NAN, NAN) is None
        assert rle_problem({"size": [h, w], "counts": _runs(m)}, float(h), float(w)) is None


@pytest.mark.parametrize(
    ("rle", "h", "w", "needle"),
    [
        # sum wrong: pycocotools' iou loops forever on this
        ({"size": [100, 100], "counts": [0, 20000]}, 100, 100, "more than"),
        ({"size": [100, 100], "counts": [0, 5000]}, 100, 100, "sum to 5000"),
        # a string that ends inside a count: rleFrString reads past the terminator
        ({"size": [100, 100], "counts": "0" + "o" * 50}, 100, 100, "malformed"),
        # int64 sum wraps to exactly h*w
        ({"size": [100, 100], "counts": [2**62] * 4 + [10000]}, 100, 100, "out of range"),
        ({"size": [100, 100], "counts": [2**32, 10000 - 2**32]}, 100, 100, "out of range"),
        ({"size": [100, 100], "counts": [True, 9999]}, 100, 100, "non-integer"),
        ({"size": [100, 100], "counts": [5000.0, 5000]}, 100, 100, "non-integer"),
        ({"size": [100, 100], "counts": [-5, 10005]}, 100, 100, "out of range"),
        ({"size": [100, 100], "counts": "é"}, 100, 100, "malformed"),
        ({"size": [100, 100], "counts": "0 1"}, 100, 100, "malformed"),
        ({"size": [1, 1], "counts": "O"}, 1, 1, "negative"),  # 'O' = 31: sign bit set, -1
        ({"size": [100, 100], "counts": "?"}, 100, 100, "sum to 15"),  # '?' = 15
        ({"size": [100, 100], "counts": "P"}, 100, 100, "malformed"),  # 'P': "more" on the last char
        ({"size": [100, 100], "counts": "o" * 8 + "0"}, 100, 100, "malformed"),  # 9 groups
        ({"size": [100, 100], "counts": "1" * 80_000}, 100, 100, "too long"),
        ({"size": [100, 100], "counts": None}, 100, 100, "type"),
        ({"size": [100, 100.0], "counts": [10000]}, 100, 100, "size"),
        ({"size": [100], "counts": [100]}, 100, 100, "size"),
        ({"size": [-1, -1], "counts": [1]}, NAN, NAN, "size"),
        ({"size": [2**20, 2**20], "counts": [2**40]}, NAN, NAN, "limit"),
        ({"size": [100, 100], "counts": [10000]}, 50, 100, "differs"),
        ([1, 2, 3], 100, 100, "not an RLE"),
    ],
)
def test_unsafe_masks_are_refused(rle: object, h: float, w: float, needle: str) -> None:
    problem = rle_problem(rle, h, w)
    assert problem is not None
    assert needle in problem


def test_near_misses_are_safe() -> None:
    assert rle_problem({"size": [100, 100], "counts": [10000]}, NAN, NAN) is None
    assert rle_problem({"size": [100, 100], "counts": [0, 10000]}, 100.0, 100.0) is None
    assert rle_problem({"size": [100, 100], "counts": (np.int64(9000), 1000)}, 100, 100) is None
    # an unknown or infinite image size is not compared
    assert rle_problem({"size": [100, 100], "counts": [10000]}, math.inf, 100) is None
    assert rle_problem({"size": [0, 0], "counts": []}, NAN, NAN) is None


def test_delta_coding_from_the_fourth_count() -> None:
    """pycocotools stores counts[m] - counts[m-2] only for m > 2 (the first three are absolute)."""
    runs = [3, 4, 5, 4, 6, 1, 2]
    m = np.zeros(sum(runs), np.uint8)
    pos = 0
    for k, r in enumerate(runs):
        m[pos : pos + r] = k % 2
        pos += r
    enc = mask_utils.encode(np.asfortranarray(m.reshape(-1, 1)))
    dec = decode_counts_string(enc["counts"])
    assert dec is not None and dec.tolist() == runs


@pytest.mark.parametrize(
    ("xy", "ok"),
    [
        ([0, 0, 10, 0, 10, 10], True),
        ([0, 0, -1e9, 0, 10, 10], True),
        ([0, 0, 1e308, 0, 10, 10], False),
        ([0, 0, math.nan, 0, 10, 10], False),
        ([0, 0, math.inf, 0, 10, 10], False),
        ([0, 0, 10, 0, 10], False),
        ([0, 0, 10, 0], False),
        (["a", 0, 1, 1, 2, 2], False),
    ],
)
def test_polygon_problem(xy: list[object], ok: bool) -> None:
    assert (polygon_problem(xy) is None) is ok
