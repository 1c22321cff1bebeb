"""COCO JSON (detection, segmentation, keypoints, and COCO *results* arrays).

The reader streams the file (see ``_jsonscan``) and converts each chunk of parsed
elements straight into column builders, so no whole-file Python object tree ever
exists. Each element gets cheap exact type checks on the way; an element that
fails them is remembered (up to a cap) and, once the file is read, :func:`validate`
runs the shipped JSON Schema on it and hands jsonschema's own message and pointer
to the schema gate as a :class:`~annogate.model.SourceProblem`. The first elements
of every array are validated too, so a systematically wrong export is reported
in the schema's words even where the fast checks are lenient (booleans inside
a ``bbox`` are the one known leniency: NumPy reads ``true`` as 1.0; coordinates
are checked exactly).

Ids are exact: an id that is not a JSON integer within 64 bits (``1.0``, ``2**70``)
is a schema problem and its row is marked invalid, so it never joins and never
counts as anything else's duplicate.

Captions and panoptic files are recognised and loaded with ``skip_reason`` set;
a bare top-level array of detections is a batch of predictions.
"""

from __future__ import annotations

import gc
import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib import resources
from itertools import chain
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import numpy.typing as npt

from annogate.formats._jsonscan import (
    Chunk,
    FileTooLarge,
    Scan,
    first_array_element,
    scan_json,
    top_level_array_keys,
)
from annogate.model import SEG_NONE, SEG_POLYGON, SEG_RLE, Annotations, Batch, Categories, Images, SourceProblem

__all__ = ["FORMAT", "load_coco", "looks_like_coco", "validate"]

FORMAT_NAME = "coco"
BIG_KEYS = frozenset({"images", "annotations", "categories"})
SAMPLE_FIRST = 200  # elements per array always validated against the JSON Schema
MAX_FLAGGED = 5000  # elements kept for schema messages; beyond that only counted
_NAN4 = (float("nan"),) * 4
_NUM = (int, float)
_RESULT_KEYS = frozenset({"image_id", "category_id", "score"})
_RESULT_SHAPES = frozenset({"bbox", "segmentation", "keypoints"})
_INSTANCE_KEYS = frozenset({"bbox", "segmentation", "keypoints", "category_id"})


I64_MIN, I64_MAX = -(2**63), 2**63 - 1
MAX_BATCH_BYTES = 16 << 30  # default size cap of a COCO file; ANNOGATE_MAX_BATCH_BYTES or max_bytes= override
MAX_BATCH_BYTES_ENV = "ANNOGATE_MAX_BATCH_BYTES"
SHRINK = 64  # items of a long array jsonschema sees (plus one of each other kind beyond)


@dataclass(frozen=True, slots=True)
class _Element:
    """An element kept for JSON Schema validation: its array, index and value."""

    key: str | None
    index: int
    item: Any


class _Grow:
    """A NumPy column grown in place, so the finished column costs ~1x its size at peak.

    Why: keeping per-chunk arrays and concatenating them at the end holds the parts
    and the result at once (2x the coordinate column, the largest thing a batch
    holds). Here chunks are copied into one buffer that ``ndarray.resize`` enlarges by
    a quarter when full: for large buffers glibc's ``realloc`` moves pages with
    ``mremap`` instead of copying them, and only the new quarter is touched (zeroed),
    so the peak is at most ~1.25x the column; :meth:`take` shrinks it to the exact
    length the same way. Values are copied unchanged (byte-identical to a concatenate).
    Every column of the annotations is kept so, not as Python lists: a list holds an
    8-byte pointer and often a 28-32-byte object per value, which at 1.3M annotations
    and a dozen columns weighed as much as the coordinates.
    """

    __slots__ = ("buf", "n")

    def __init__(self, dtype: type[np.generic] = np.float64) -> None:
        self.buf: npt.NDArray[Any] = np.empty(0, dtype)
        self.n = 0

    def extend(self, values: npt.ArrayLike) -> None:
        values = np.asarray(values, self.buf.dtype)
        k = int(values.size)
        need = self.n + k
        if need > self.buf.size:
            self.buf.resize(max(need, self.buf.size + (self.buf.size >> 2), 1 << 16), refcheck=False)
        self.buf[self.n : need] = values.reshape(-1)
        self.n = need

    def take(self) -> npt.NDArray[Any]:
        """The column (exact length); the grower is empty afterwards."""
        buf, self.buf = self.buf, np.empty(0, self.buf.dtype)
        if buf.size != self.n:
            buf.resize(self.n, refcheck=False)
        self.n = 0
        return buf


def _exact_ids(values: list[Any]) -> bool:
    """All values are ints within int64 (bool is not an int here)."""
    return set(map(type, values)) == {int} and I64_MIN <= min(values) and max(values) <= I64_MAX


def _is_id(v: Any) -> bool:
    return type(v) is int and I64_MIN <= v <= I64_MAX


def looks_like_coco(path: Path, head: bytes) -> bool:
    """A COCO batch by content: a JSON object with an images/annotations/categories array,
    or a detection-results list (a root array whose first element has image_id,
    category_id, score and a box, mask or keypoints).

    Only the first megabyte is looked at; ``package.json``, rules files and other
    JSON do not carry those keys as arrays. Keys are read exactly as the reader reads
    them (decoded, any whitespace before the value), so no spelling of a COCO file
    escapes collection.
    """
    if top_level_array_keys(head) & BIG_KEYS:
        return True
    first = first_array_element(head)
    return type(first) is dict and _RESULT_KEYS <= first.keys() and bool(_RESULT_SHAPES & first.keys())


class _Builder:
    """Column lists for one kind of element; converted to arrays once at the end."""

    def __init__(self, key: str | None) -> None:
        self.key = key
        self.n = 0
        self.flagged: list[_Element] = []
        self.flagged_count = 0
        self.samples: list[_Element] = []

    def flag(self, index: int, line: int, item: Any) -> None:
        self.flagged_count += 1
        if len(self.flagged) < MAX_FLAGGED:
            self.flagged.append(_Element(self.key, index, item))

    def sample(self, chunk: Chunk) -> None:
        if chunk.first < SAMPLE_FIRST:
            for k, item in enumerate(chunk.items[: SAMPLE_FIRST - chunk.first]):
                self.samples.append(_Element(self.key, chunk.first + k, item))


class _Images(_Builder):
    def __init__(self) -> None:
        super().__init__("images")
        self.id: list[int | None] = []
        self.file_name: list[str] = []
        self.width: list[float] = []
        self.height: list[float] = []
        self.line: list[npt.NDArray[np.int64]] = []

    def add(self, chunk: Chunk) -> None:
        self.sample(chunk)
        ids, names, ws, hs = self.id, self.file_name, self.width, self.height
        for k, it in enumerate(chunk.items):
            if type(it) is not dict:
                self.flag(chunk.first + k, int(chunk.lines[k]), it)
                ids.append(-1)
                names.append("")
                ws.append(float("nan"))
                hs.append(float("nan"))
                continue
            i, fn, w, h = it.get("id"), it.get("file_name"), it.get("width"), it.get("height")
            ok = _is_id(i) and type(fn) is str and type(w) is int and type(h) is int and w > 0 and h > 0
            if not ok:
                self.flag(chunk.first + k, int(chunk.lines[k]), it)
            ids.append(i if _is_id(i) else None)
            names.append(fn if type(fn) is str else "")
            ws.append(float(w) if isinstance(w, (int, float)) else float("nan"))
            hs.append(float(h) if isinstance(h, (int, float)) else float("nan"))
        self.line.append(chunk.lines)
        self.n += len(chunk.items)

    def build(self) -> Images:
        ids, valid = _int64(self.id)
        return Images(
            id=ids,
            file_name=np.array(self.file_name, dtype=object),
            width=np.array(self.width, np.float64),
            height=np.array(self.height, np.float64),
            line=_lines(self.line),
            id_valid=valid,
        )


class _Categories(_Builder):
    def __init__(self) -> None:
        super().__init__("categories")
        self.id: list[int | None] = []
        self.name: list[str] = []
        self.sup: list[str] = []
        self.kp: list[tuple[str, ...]] = []
        self.line: list[npt.NDArray[np.int64]] = []

    def add(self, chunk: Chunk) -> None:
        # categories are few: validate all of them against the schema
        for k, it in enumerate(chunk.items):
            self.samples.append(_Element("categories", chunk.first + k, it))
            d = it if type(it) is dict else {}
            i, nm = d.get("id"), d.get("name")
            self.id.append(i if _is_id(i) else None)
            self.name.append(nm if type(nm) is str else "")
            sup = d.get("supercategory")
            self.sup.append(sup if type(sup) is str else "")
            kp = d.get("keypoints")
            self.kp.append(tuple(str(x) for x in kp) if type(kp) is list else ())
        self.line.append(chunk.lines)
        self.n += len(chunk.items)

    def build(self) -> Categories:
        ids, valid = _int64(self.id)
        return Categories(
            id=ids,
            id_valid=valid,
            name=np.array(self.name, dtype=object),
            supercategory=np.array(self.sup, dtype=object),
            keypoints=tuple(self.kp),
            line=_lines(self.line),
        )


class _Annotations(_Builder):
    """The hot loop: one pass of cheap exact type checks per annotation."""

    def __init__(self, *, results: bool, annotator_field: str | None, cohort_field: str | None = None) -> None:
        super().__init__(None if results else "annotations")  # a results list is the root array
        self.results = results
        self.annotator_field = annotator_field
        # rules' cohort_field: each row's value kept as attributes {field: value} (one shared
        # dict per distinct value, so a pointer per row), read by annogate.cohorts
        self.cohort_field = cohort_field
        self.cohort_rows: list[dict[str, str] | None] = []
        self._cohort_dicts: dict[str, dict[str, str]] = {}
        # columns, converted chunk by chunk (see _Grow)
        self.id, self.id_valid = _Grow(np.int64), _Grow(np.bool_)
        self.image_id, self.image_id_valid = _Grow(np.int64), _Grow(np.bool_)
        self.category_id, self.category_id_valid = _Grow(np.int64), _Grow(np.bool_)
        self.bbox = _Grow()  # flat, 4 per annotation
        self.area = _Grow()
        self.iscrowd = _Grow(np.bool_)
        self.score = _Grow()
        self.annotator = _Grow(np.int32)
        self.annotators: dict[str, int] = {}
        self.line: list[npt.NDArray[np.int64]] = []
        self.seg_kind = _Grow(np.int8)
        self.xy = _Grow()
        self.ring_len = _Grow(np.int64)
        self.rings_per_ann = _Grow(np.int64)
        self.rle: dict[int, Any] = {}  # row -> RLE object (few rows have one)
        self.kp = _Grow()
        self.kp_count = _Grow(np.int64)
        self.num_kp = _Grow(np.int32)
        self.problems: list[SourceProblem] = []
        self.captions = 0  # elements of a captions file ({image_id, caption})
        self.panoptic = 0  # elements of a panoptic file ({image_id, file_name, segments_info})

    def flavour(self) -> str | None:
        """``captions`` / ``panoptic`` when every element is one (a mixed file is judged as instances)."""
        if self.n and self.captions == self.n:
            return "captions"
        if self.n and self.panoptic == self.n:
            return "panoptic"
        return None

    def _annotator(self, it: Mapping[str, Any]) -> int:
        f = self.annotator_field
        if f is not None:
            v: Any = it
            for part in f.split("."):
                v = v.get(part) if isinstance(v, Mapping) else None
        else:
            v = it.get("annotator_id", it.get("annotator"))
            if v is None:
                attrs = it.get("attributes")
                if type(attrs) is dict:
                    v = attrs.get("annotator_id", attrs.get("annotator"))
        if self.cohort_field is not None:
            self._cohort(it)
        if v is None or isinstance(v, (dict, list)):
            return -1
        name = str(v)
        idx = self.annotators.get(name)
        if idx is None:
            idx = self.annotators[name] = len(self.annotators)
        return idx

    def _cohort(self, it: Mapping[str, Any]) -> None:
        """Keep this row's cohort field (called once per row, from :meth:`_annotator`)."""
        from annogate.cohorts import cohort_value

        assert self.cohort_field is not None
        v = cohort_value(it, self.cohort_field)
        if v is None:
            self.cohort_rows.append(None)
            return
        d = self._cohort_dicts.get(v)
        if d is None:
            d = self._cohort_dicts[v] = {self.cohort_field: v}
        self.cohort_rows.append(d)

    def add(self, chunk: Chunk) -> None:
        self.sample(chunk)
        items = chunk.items
        self.captions += sum(1 for a in items if type(a) is dict and "caption" in a and not _INSTANCE_KEYS & a.keys())
        self.panoptic += sum(1 for a in items if type(a) is dict and "segments_info" in a)
        if not self._add_fast(chunk):
            self._add_slow(chunk)
        self.line.append(chunk.lines)
        self.n += len(chunk.items)

    def _add_fast(self, chunk: Chunk) -> bool:
        """Column-at-a-time conversion for well-typed chunks (the usual case).

        One list comprehension per field and a set of the value types replace a
        per-annotation Python loop; any surprise (a wrong type, a missing id, a
        non-number in a box) returns False *before anything is appended*, and the
        chunk goes through :meth:`_add_slow`, which flags each bad element.
        """
        items = chunk.items
        if not items:
            return True
        if set(map(type, items)) != {dict}:
            return False
        ids = [a.get("id") for a in items]
        iids = [a.get("image_id") for a in items]
        cids = [a.get("category_id") for a in items]
        if not (_exact_ids(iids) and _exact_ids(cids)):
            return False
        if not _exact_ids(ids):
            if not self.results:
                return False
            ids = [a if a is not None else chunk.first + k + 1 for k, a in enumerate(ids)]
            if not _exact_ids(ids):
                return False
        bbs = [a.get("bbox") for a in items]
        bt = set(map(type, bbs))
        if bt == {list}:
            bbox = _float_rows(bbs, 4)
            if bbox is None:
                return False
        elif bt == {type(None)}:
            bbox = np.full((len(items), 4), np.nan)
        else:
            return False
        areas = [a.get("area") for a in items]
        at = set(map(type, areas))
        if not at <= {int, float, type(None)}:
            return False
        crowd = [a.get("iscrowd", 0) for a in items]
        if set(map(type, crowd)) != {int} or not set(crowd) <= {0, 1}:
            return False
        scores = [a.get("score") for a in items]
        if not set(map(type, scores)) <= {int, float, type(None)}:
            return False
        segs = [a.get("segmentation") for a in items]
        st = set(map(type, segs))
        if not st <= {list, type(None)}:
            return False  # RLE or odd types: the careful path
        if any(a.get("keypoints") is not None or a.get("num_keypoints") is not None for a in items):
            return False
        if list in st:
            polys = [sg if sg is not None else [] for sg in segs]
            rings = [r for sg in polys for r in sg]
            if rings and set(map(type, rings)) != {list}:
                return False
            ring_len = list(map(len, rings))
            count = sum(ring_len)
            # every coordinate an int or a float (decided at C speed), then straight to float64
            if not set(map(type, chain.from_iterable(rings))) <= {int, float}:
                return False
            try:
                xy = np.fromiter(chain.from_iterable(rings), np.float64, count)
            except OverflowError:  # an integer beyond float range: the careful path flags it
                return False
            rper = list(map(len, polys))
            kinds = [SEG_POLYGON if sg is not None else SEG_NONE for sg in segs]
        else:
            xy, ring_len, rper, kinds = np.empty(0, np.float64), [], [0] * len(items), [SEG_NONE] * len(items)
        annot = [self._annotator(a) for a in items] if self._has_annotators(items) else [-1] * len(items)
        # all checks passed: append
        n = len(items)
        nan = float("nan")
        self._commit(
            ids=ids,
            iids=iids,
            cids=cids,
            bbox=bbox,
            areas=[nan if a is None else a for a in areas] if type(None) in at else areas,
            crowd=np.array(crowd, np.int64) == 1,
            scores=[nan if v is None else v for v in scores],
            kinds=kinds,
            ring_len=ring_len,
            rper=rper,
            kpc=np.zeros(n, np.int64),
            nkp=np.full(n, -1, np.int32),
            annot=annot,
        )
        if len(xy):
            self.xy.extend(xy)
        return True

    def _commit(
        self,
        *,
        ids: list[Any],
        iids: list[Any],
        cids: list[Any],
        bbox: npt.NDArray[np.float64],
        areas: list[Any],
        crowd: npt.ArrayLike,
        scores: list[Any],
        kinds: list[int],
        ring_len: list[int],
        rper: list[int],
        kpc: npt.ArrayLike,
        nkp: npt.ArrayLike,
        annot: list[int],
    ) -> None:
        """Append one chunk's per-annotation values to the columns (ids exact or None)."""
        for col, valid, values in (
            (self.id, self.id_valid, ids),
            (self.image_id, self.image_id_valid, iids),
            (self.category_id, self.category_id_valid, cids),
        ):
            arr, ok = _int64(values)
            col.extend(arr)
            valid.extend(ok)
        self.bbox.extend(bbox)
        self.area.extend(areas)
        self.iscrowd.extend(crowd)
        self.score.extend(scores)
        self.seg_kind.extend(kinds)
        self.ring_len.extend(ring_len)
        self.rings_per_ann.extend(rper)
        self.kp_count.extend(kpc)
        self.num_kp.extend(nkp)
        self.annotator.extend(annot)

    def _has_annotators(self, items: list[dict[str, Any]]) -> bool:
        if self.annotator_field is not None or self.cohort_field is not None:
            return True
        return any(("annotator_id" in a or "annotator" in a or "attributes" in a) for a in items)

    def _add_slow(self, chunk: Chunk) -> None:
        nan = float("nan")
        xy: list[Any] = []
        kps: list[Any] = []
        bbs: list[Any] = []
        ids: list[int | None] = []
        iids: list[int | None] = []
        cids: list[int | None] = []
        areas: list[float] = []
        crowd: list[bool] = []
        scores: list[float] = []
        kinds: list[int] = []
        rlen: list[int] = []
        rper: list[int] = []
        kpc: list[int] = []
        nkp: list[int] = []
        annot: list[int] = []
        row0 = self.n  # row of the chunk's first element in the columns
        results = self.results
        for k, it in enumerate(chunk.items):
            index = chunk.first + k
            if type(it) is not dict:
                self.flag(index, int(chunk.lines[k]), it)
                it = {}
            g = it.get
            aid, iid, cid = g("id"), g("image_id"), g("category_id")
            ok = _is_id(iid) and _is_id(cid) and (_is_id(aid) or (results and aid is None))
            ids.append(aid if _is_id(aid) else (index + 1 if results and aid is None else None))
            iids.append(iid if _is_id(iid) else None)
            cids.append(cid if _is_id(cid) else None)
            bb = g("bbox")
            if type(bb) is list and len(bb) == 4:
                bbs.append(bb)
            else:
                bbs.append(_NAN4)
                ok = ok and bb is None
            a = g("area")
            if isinstance(a, (int, float)) and type(a) is not bool:
                areas.append(a)
            else:
                areas.append(nan)
                ok = ok and a is None
            c = g("iscrowd", 0)
            crowd.append(c == 1)
            ok = ok and type(c) is int and (c == 0 or c == 1)
            s = g("score")
            if isinstance(s, (int, float)) and type(s) is not bool:
                scores.append(s)
            else:
                scores.append(nan)
                ok = ok and s is None
            seg = g("segmentation")
            if type(seg) is list:
                kinds.append(SEG_POLYGON)
                n_r = 0
                for ring in seg:
                    if type(ring) is list:
                        xy.extend(ring)
                        rlen.append(len(ring))
                        n_r += 1
                    else:
                        ok = False
                rper.append(n_r)
            elif type(seg) is dict:
                kinds.append(SEG_RLE)
                rper.append(0)
                self.rle[row0 + k] = seg
                size, counts = seg.get("size"), seg.get("counts")
                ok = (
                    ok
                    and type(size) is list
                    and len(size) == 2
                    and type(size[0]) is int
                    and type(size[1]) is int
                    and (type(counts) is str or type(counts) is list)
                )
            else:
                kinds.append(SEG_NONE)
                rper.append(0)
                ok = ok and seg is None
            kp = g("keypoints")
            if type(kp) is list:
                n3 = len(kp) // 3
                if len(kp) % 3:
                    self.problems.append(
                        SourceProblem(
                            rule="keypoints_length",
                            message=f"keypoints has {len(kp)} values, not a multiple of 3 (x, y, v)",
                            line=int(chunk.lines[k]),
                            pointer=f"/annotations/{index}/keypoints",
                            annotation_id=aid if _is_id(aid) else None,
                        )
                    )
                kps.extend(kp[: 3 * n3])
                kpc.append(n3)
            else:
                kpc.append(0)
                ok = ok and kp is None
            nk = g("num_keypoints")
            nkp.append(nk if type(nk) is int else -1)
            ok = ok and (nk is None or (type(nk) is int and nk >= 0))
            annot.append(self._annotator(it))
            if not ok:
                self.flag(index, int(chunk.lines[k]), it)
        rows = _float_rows(bbs, 4)
        if rows is None:  # a non-number in some box: flag exactly those elements
            rows = np.full((len(bbs), 4), np.nan)
            for k, b in enumerate(bbs):
                if all(type(v) in _NUM for v in b):
                    rows[k] = b
                else:
                    self.flag(chunk.first + k, int(chunk.lines[k]), chunk.items[k])
        self._commit(
            ids=ids,
            iids=iids,
            cids=cids,
            bbox=rows,
            areas=areas,
            crowd=crowd,
            scores=scores,
            kinds=kinds,
            ring_len=rlen,
            rper=rper,
            kpc=kpc,
            nkp=nkp,
            annot=annot,
        )
        if xy:
            self.xy.extend(self._numeric(xy, chunk, "segmentation"))
        if kps:
            self.kp.extend(self._numeric(kps, chunk, "keypoints"))

    def _numeric(self, values: list[Any], chunk: Chunk, field: str) -> npt.NDArray[np.float64]:
        """Flat numbers to float64; on a non-number, flag the elements that hold one."""
        if set(map(type, values)) <= {int, float}:  # decided at C speed, without a string array
            return np.array(values, np.float64)
        nan = float("nan")
        out = np.fromiter((v if type(v) in _NUM else nan for v in values), np.float64, len(values))
        for k, it in enumerate(chunk.items):
            seg = it.get(field) if type(it) is dict else None
            if type(seg) is list:
                flat = [v for r in seg for v in (r if type(r) is list else [r])] if field == "segmentation" else seg
                if any(type(v) not in _NUM for v in flat):
                    self.flag(chunk.first + k, int(chunk.lines[k]), it)
        return out

    def build(self) -> tuple[Annotations, tuple[str, ...]]:
        n = self.n
        bbox = self.bbox.take().reshape(-1, 4)
        ring_len = self.ring_len.take()
        ring_offsets = np.zeros(ring_len.size + 1, np.int64)
        np.cumsum(ring_len, out=ring_offsets[1:])
        del ring_len
        ann_ring = np.zeros(n + 1, np.int64)
        np.cumsum(self.rings_per_ann.take(), out=ann_ring[1:])
        kp_off = np.zeros(n + 1, np.int64)
        np.cumsum(self.kp_count.take(), out=kp_off[1:])
        rle = np.empty(n, dtype=object)  # None everywhere but the RLE rows
        for row, obj in self.rle.items():
            rle[row] = obj
        ann = Annotations(
            id=self.id.take(),
            id_valid=self.id_valid.take(),
            image=np.full(n, -1, np.int32),
            category=np.full(n, -1, np.int32),
            image_id=self.image_id.take(),
            image_id_valid=self.image_id_valid.take(),
            category_id=self.category_id.take(),
            category_id_valid=self.category_id_valid.take(),
            bbox=bbox,
            area=self.area.take(),
            iscrowd=self.iscrowd.take(),
            score=self.score.take(),
            annotator=self.annotator.take(),
            line=_lines(self.line),
            file=np.zeros(n, np.int32),
            seg_kind=self.seg_kind.take(),
            poly_xy=self.xy.take(),
            ring_offsets=ring_offsets,
            ann_ring_offsets=ann_ring,
            rle=rle,
            keypoints=self.kp.take(),
            kp_offsets=kp_off,
            num_keypoints=self.num_kp.take(),
        )
        if self.cohort_field is not None and len(self.cohort_rows) == n and any(self.cohort_rows):
            col = np.empty(n, dtype=object)
            col[:] = self.cohort_rows
            ann = replace(ann, attributes=col)
        return ann, tuple(self.annotators)


def _float_rows(rows: list[Any], width: int) -> npt.NDArray[np.float64] | None:
    if not rows:
        return np.empty((0, width), np.float64)
    try:
        arr = np.array(rows)
    except (ValueError, TypeError):
        return None
    if arr.dtype.kind not in "fiu" or arr.shape != (len(rows), width):
        return None
    return arr.astype(np.float64, copy=False)


def _int64(values: list[int | None]) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
    """Ids as int64 (-1 where absent or not exact) and the mask of exact ones."""
    try:
        return np.array(values, np.int64), np.ones(len(values), np.bool_)
    except (TypeError, OverflowError):
        valid = np.array([v is not None for v in values], np.bool_)
        return np.array([-1 if v is None else v for v in values], np.int64), valid


def _lines(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int32]:
    """Each element's 1-based line, or 0 where the line does not single it out.

    In a minified file every element starts on line 1: a finding at ``file:1`` would
    send the reader to the whole file, so a line shared with a neighbouring element
    is dropped (findings then carry only the exact JSON pointer).
    """
    if not parts:
        return np.empty(0, np.int32)
    ln = np.concatenate(parts).astype(np.int32)
    if ln.size > 1:
        same = ln[1:] == ln[:-1]
        shared = np.zeros(ln.size, np.bool_)
        shared[1:] |= same
        shared[:-1] |= same
        ln[shared] = 0
    return ln


def _resolve(
    ids: npt.NDArray[np.int64],
    ids_valid: npt.NDArray[np.bool_],
    table_ids: npt.NDArray[np.int64],
    table_valid: npt.NDArray[np.bool_] | None,
) -> npt.NDArray[np.int32]:
    """Row index in the table of each id; -1 where the id dangles or is not exact. Vectorised.

    Only exact ids take part on either side, so a missing id never meets an image
    whose id is missing too, whatever placeholder the columns hold. With duplicate
    table ids the first row wins (the duplicate itself is a schema finding).
    """
    rows = np.flatnonzero(table_valid) if table_valid is not None else np.arange(table_ids.size)
    if rows.size == 0:
        return np.full(ids.size, -1, np.int32)
    order = rows[np.argsort(table_ids[rows], kind="stable")]
    sorted_ids = table_ids[order]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, sorted_ids.size - 1)
    hit = (sorted_ids[pos] == ids) & ids_valid
    return np.where(hit, order[pos], -1).astype(np.int32)


def max_batch_bytes(path: Path) -> int:
    """The size cap: ``ANNOGATE_MAX_BATCH_BYTES`` (bytes, a positive integer) or 16 GiB."""
    raw = os.environ.get(MAX_BATCH_BYTES_ENV, "").strip()
    if not raw:
        return MAX_BATCH_BYTES
    try:
        value = int(raw.replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        from annogate.formats import LoadError

        raise LoadError(f"{MAX_BATCH_BYTES_ENV}={raw[:40]!r} is not a positive number of bytes", path=path)
    return value


def load_coco(
    path: Path,
    *,
    images_from: Batch | None = None,
    annotator_field: str | None = None,
    cohort_field: str | None = None,
    max_bytes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Batch:
    """Read a COCO file into a :class:`Batch`.

    ``progress(done_bytes, total_bytes)``, when given, is called once per block the
    scanner reads (see :func:`~annogate.formats._jsonscan.scan_json`), so a front end
    can show how far a long load is; it never changes what is read.

    ``images_from`` supplies images and categories for a COCO *results* file (a bare
    array of detections that refers to a ground truth's ids). Syntax errors raise
    :class:`JSONError` with line and column; everything else wrong with the content
    is recorded for the schema gate, never raised. A file larger than ``max_bytes``
    (default :func:`max_batch_bytes`) is a :class:`~annogate.formats.LoadError`
    naming its size, raised before it is read: the reader streams, but the columns
    of a file that size would not fit in memory.
    """
    path = Path(path)
    limit = max_bytes if max_bytes is not None else max_batch_bytes(path)
    images_b, cats_b = _Images(), _Categories()
    ann_b: _Annotations | None = None
    scan: Scan | None = None
    was_enabled = gc.isenabled()
    gc.disable()  # the parser creates millions of short-lived objects; tracing them triples the time
    try:
        for item in scan_json(path, big_keys=BIG_KEYS, max_bytes=limit, progress=progress):
            if isinstance(item, Scan):
                scan = item
                continue
            if item.key == "images":
                images_b.add(item)
            elif item.key == "categories":
                cats_b.add(item)
            else:
                if ann_b is None:
                    ann_b = _Annotations(
                        results=item.key is None, annotator_field=annotator_field, cohort_field=cohort_field
                    )
                ann_b.add(item)
    except FileTooLarge as e:
        from annogate.formats import LoadError

        raise LoadError(
            f"file of {e.size:,} bytes ({e.size / 2**30:.1f} GiB) is over the limit of {e.limit:,} bytes"
            f" (set {MAX_BATCH_BYTES_ENV} to raise it)",
            path=path,
        ) from None
    finally:
        if was_enabled:
            gc.enable()
    assert scan is not None
    skeleton = scan.skeleton
    results = isinstance(skeleton, list)
    if ann_b is None:
        ann_b = _Annotations(results=results, annotator_field=annotator_field, cohort_field=cohort_field)
    flavour = ann_b.flavour()
    if flavour is not None:
        return _flavour_batch(path, scan, flavour, images_b.build(), cats_b.build())
    if results and images_from is not None:
        images, categories = images_from.images, images_from.categories
    else:
        images, categories = images_b.build(), cats_b.build()
    ann, annotators = ann_b.build()
    ann = replace(
        ann,
        image=_resolve(ann.image_id, _valid(ann.image_id_valid, len(ann)), images.id, images.id_valid),
        category=_resolve(ann.category_id, _valid(ann.category_id_valid, len(ann)), categories.id, categories.id_valid),
    )
    lines = {"images": images.line, "categories": categories.line, "annotations": ann.line, None: ann.line}
    problems = [_duplicate_key(k) for k in scan.duplicate_keys]
    problems += validate(
        skeleton=skeleton,
        results=results,
        elements=chain(
            images_b.flagged, cats_b.flagged, ann_b.flagged, images_b.samples, cats_b.samples, ann_b.samples
        ),
        lines=lines,
    )
    hidden = sum(b.flagged_count - len(b.flagged) for b in (images_b, cats_b, ann_b))
    if hidden > 0:
        problems.append(
            SourceProblem(rule="schema", message=f"{hidden} more elements fail the fast type checks (not itemised)")
        )
    problems += ann_b.problems
    if images_from is None or not results:
        problems += _image_size_problems(images)
    return Batch(
        path=path,
        format=FORMAT_NAME,
        images=images,
        categories=categories,
        annotations=ann,
        files=(str(path),),
        annotators=annotators,
        sha256=scan.sha256,
        problems=problems,
        pointer_base="/" if results else "/annotations/",
        predictions=results,
    )


def _image_size_problems(images: Images) -> list[SourceProblem]:
    """Image sides above ``MAX_IMAGE_SIDE`` (the JSON Schema only asks for a non-negative
    integer): an ``image_size`` problem each, and the side becomes unknown (nan), as in
    every other reader, so no box "fits" a 2**40-pixel image. Sides that are not finite
    or not positive are already schema problems; they become unknown too."""
    from annogate.formats._builder import MAX_IMAGE_SIDE, image_side_problem

    out: list[SourceProblem] = []
    for key, col in (("width", images.width), ("height", images.height)):
        bad = ~(np.isfinite(col) & (col > 0) & (col <= MAX_IMAGE_SIDE))
        for i in np.flatnonzero(np.isfinite(col) & (col > MAX_IMAGE_SIDE)).tolist()[:1000]:
            out.append(
                SourceProblem(
                    rule="image_size",
                    message=f"image {key} {image_side_problem(float(col[i]))}",
                    line=int(images.line[i]) or None,
                    pointer=f"/images/{i}/{key}",
                    image=str(images.file_name[i]),
                )
            )
        col[bad] = np.nan
    return out


def _valid(mask: npt.NDArray[np.bool_] | None, n: int) -> npt.NDArray[np.bool_]:
    return mask if mask is not None else np.ones(n, np.bool_)


def _duplicate_key(key: str) -> SourceProblem:
    return SourceProblem(
        rule="duplicate_key",
        message=f"top-level key {key!r} appears more than once: a JSON parser keeps only the last value",
        pointer="/" + _escape(key),
    )


def _flavour_batch(path: Path, scan: Scan, flavour: str, images: Images, categories: Categories) -> Batch:
    """A captions or panoptic file: its images and classes, no instances, and why it is skipped."""
    problems = [_duplicate_key(k) for k in scan.duplicate_keys]
    return Batch(
        path=path,
        format=FORMAT_NAME,
        images=images,
        categories=categories,
        annotations=Annotations.empty(),
        files=(str(path),),
        sha256=scan.sha256,
        problems=problems,
        skip_reason=f"COCO {flavour}: not an instance batch",
    )


# -- JSON Schema validation of the kept elements ---------------------------------------


@cache
def format_schema() -> dict[str, Any]:
    """The shipped JSON Schema of COCO (``schemas/coco.schema.json``)."""
    text = resources.files("annogate").joinpath("schemas/coco.schema.json").read_text("utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def _exact_integer(checker: Any, instance: Any) -> bool:
    """JSON Schema's "integer" as the file wrote it: ``1.0`` is a float, not an id."""
    return type(instance) is int


@cache
def _validator(ref: str | None) -> Any:
    root = format_schema()
    schema: dict[str, Any] = root
    if ref is not None:
        schema = {k: v for k, v in root.items() if k in ("$schema", "$id", "$defs")}
        schema["$ref"] = f"#/$defs/{ref}"
    base = jsonschema.validators.validator_for(root)
    cls = jsonschema.validators.extend(base, type_checker=base.TYPE_CHECKER.redefine("integer", _exact_integer))
    return cls(schema)


class _Shrunk(list):  # type: ignore[type-arg]
    """A shortened copy of a long array that remembers each kept item's original index."""

    orig: list[int]


def _kind(v: Any) -> Any:
    """What jsonschema could object to in an array item; one item of each kind is kept."""
    t = type(v)
    if t is list:
        return ("list", frozenset(map(type, v)))
    if t is int and v < 0:
        return "negative int"
    return t


def _shrink(v: Any) -> Any:
    """A copy of ``v`` in which every long array keeps its first items and one item of each other kind.

    Why: jsonschema walks every item of an array in Python; a 1M-vertex polygon took
    28 s. Schema errors in an array depend only on an item's kind (a float where an
    integer belongs, a negative int, a string...), so beyond the first ``SHRINK``
    items the first item of each kind stands for the rest, at its true index (kept in
    :class:`_Shrunk` for the pointer). Number arrays are sorted out at C speed.
    """
    if type(v) is dict:
        return {k: _shrink(x) for k, x in v.items()}
    if type(v) is not list:
        return v
    keep = list(range(min(len(v), SHRINK)))
    if len(v) > SHRINK:
        rest = v[SHRINK:]
        tl = list(map(type, rest))
        types = set(tl)
        extra = {tl.index(t) for t in types if t is not list}
        if types <= {int, float}:
            if int in types:
                neg = np.flatnonzero(np.asarray(rest, np.float64) < 0)
                if neg.size:
                    extra.add(int(neg[0]))
        else:
            if int in types:
                first_neg = next((i for i, x in enumerate(rest) if type(x) is int and x < 0), None)
                if first_neg is not None:
                    extra.add(first_neg)
            if list in types:
                seen: set[Any] = set()
                for i in (i for i, t in enumerate(tl) if t is list):
                    k = _kind(rest[i])
                    if k not in seen:
                        seen.add(k)
                        extra.add(i)
        keep += sorted(SHRINK + i for i in extra)
    out = _Shrunk(_shrink(v[i]) for i in keep)
    out.orig = keep
    return out


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _pointer(base: str, doc: Any, path: Iterable[Any]) -> str:
    """The JSON pointer of a jsonschema error path, in the original (unshrunk) document."""
    out = base
    for p in path:
        if isinstance(doc, _Shrunk) and type(p) is int:
            out += f"/{doc.orig[p]}"
            doc = doc[p]
        else:
            out += f"/{_escape(str(p))}"
            doc = doc[p] if isinstance(doc, (dict, list)) else None
    return out


def validate(
    *,
    skeleton: Any,
    results: bool,
    elements: Iterable[_Element],
    lines: Mapping[str | None, npt.NDArray[np.int32]],
) -> list[SourceProblem]:
    """Run the COCO JSON Schema on the skeleton and on the kept elements.

    Each error becomes a ``schema`` problem quoting jsonschema's message, at the
    element's JSON pointer and line (``lines`` maps an array to its elements' lines,
    0 where unknown). At most three places per element are reported, one error each.
    """
    out: list[SourceProblem] = []
    top = _validator("results_file" if results else None)
    for err in top.iter_errors(_shrink(skeleton)):
        ptr = _pointer("", _shrink(skeleton), err.absolute_path) or "/"
        out.append(SourceProblem(rule="schema", message=f"{ptr}: {_short(err.message)}", pointer=ptr))
    kinds = {"images": "image", "categories": "category", "annotations": "annotation", None: "result"}
    seen: set[tuple[str | None, int]] = set()
    for el in elements:
        if (el.key, el.index) in seen:
            continue
        seen.add((el.key, el.index))
        item = _shrink(el.item)
        base = f"/{el.index}" if el.key is None else f"/{el.key}/{el.index}"
        errs = sorted(_validator(kinds[el.key]).iter_errors(item), key=lambda e: [str(p) for p in e.absolute_path])
        ln = lines.get(el.key)
        line = int(ln[el.index]) if ln is not None and el.index < ln.size else 0
        aid = el.item.get("id") if type(el.item) is dict and el.key in ("annotations", None) else None
        pointers: set[str] = set()
        for err in errs:
            if err.context:  # oneOf/anyOf (polygons or RLE): name the deepest failing value
                err = jsonschema.exceptions.best_match([err])
            ptr = _pointer(base, item, err.absolute_path)
            if ptr in pointers:
                continue  # one message per place (2**70 is both "not an integer" and "too large")
            pointers.add(ptr)
            if len(pointers) > 3:
                break
            x = err.instance
            hint = " (an integer beyond 64 bits, read as a float)" if type(x) is float and abs(x) >= 2.0**63 else ""
            out.append(
                SourceProblem(
                    rule="schema",
                    message=f"{ptr}: {_short(err.message)}{hint}",
                    line=line or None,
                    pointer=ptr,
                    annotation_id=aid if _is_id(aid) else None,
                )
            )
    return out


def _short(msg: str, limit: int = 160) -> str:
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def _format() -> Any:
    from annogate.formats import Format

    return Format(name=FORMAT_NAME, suffixes=(".json",), sniff=looks_like_coco, load=load_coco)


FORMAT = _format()
