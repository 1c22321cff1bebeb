"""COCO JSON (detection, segmentation, keypoints, and COCO *results* arrays).

The reader streams the file (see ``_jsonscan``) and converts each chunk of parsed
elements straight into column builders, so no whole-file Python object tree ever
exists. Each element gets cheap exact type checks on the way; an element that
fails them is remembered (up to a cap) so the schema gate can run the shipped JSON
Schema on it and quote jsonschema's own message and pointer. The first elements
of every array are remembered too, so a systematically wrong export is reported
in the schema's words even where the fast checks are lenient (booleans inside
number arrays are the one known leniency: NumPy reads ``true`` as 1.0).
"""

from __future__ import annotations

import gc
import re
from collections.abc import Mapping
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from annogate.findings import Finding
from annogate.formats._jsonscan import Chunk, JSONError, Scan, scan_json, top_level_array_keys
from annogate.model import SEG_NONE, SEG_POLYGON, SEG_RLE, Annotations, Batch, Categories, Images

__all__ = ["FORMAT", "ElementSample", "load_coco", "looks_like_coco"]

FORMAT_NAME = "coco"
BIG_KEYS = frozenset({"images", "annotations", "categories"})
SAMPLE_FIRST = 200  # elements per array always validated against the JSON Schema
MAX_FLAGGED = 5000  # elements kept for schema messages; beyond that only counted
_NAN4 = (float("nan"),) * 4
_NUM = (int, float)
_KEY_SNIFF = re.compile(rb'"(annotations|images|categories)"\s*:\s*\[')


class ElementSample:
    """An element kept for JSON Schema validation: where it is and what it was."""

    __slots__ = ("item", "key", "line", "pointer")

    def __init__(self, *, key: str, pointer: str, line: int, item: Any) -> None:
        self.key = key
        self.pointer = pointer
        self.line = line
        self.item = item


def looks_like_coco(path: Path, head: bytes) -> bool:
    """A COCO batch by content: a JSON object with an images/annotations/categories array.

    Only the first megabyte is looked at; ``package.json``, rules files and other
    JSON do not carry those keys as arrays.
    """
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if stripped[:1] != b"{" or _KEY_SNIFF.search(head) is None:
        return False
    return bool(top_level_array_keys(head) & BIG_KEYS)


class _Builder:
    """Column lists for one kind of element; converted to arrays once at the end."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.n = 0
        self.flagged: list[ElementSample] = []
        self.flagged_count = 0
        self.samples: list[ElementSample] = []

    def flag(self, index: int, line: int, item: Any) -> None:
        self.flagged_count += 1
        if len(self.flagged) < MAX_FLAGGED:
            self.flagged.append(ElementSample(key=self.key, pointer=f"/{self.key}/{index}", line=line, item=item))

    def sample(self, chunk: Chunk) -> None:
        if chunk.first < SAMPLE_FIRST:
            for k, item in enumerate(chunk.items[: SAMPLE_FIRST - chunk.first]):
                i = chunk.first + k
                self.samples.append(
                    ElementSample(key=self.key, pointer=f"/{self.key}/{i}", line=int(chunk.lines[k]), item=item)
                )


class _Images(_Builder):
    def __init__(self) -> None:
        super().__init__("images")
        self.id: list[int] = []
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
            ok = type(i) is int and type(fn) is str and type(w) is int and type(h) is int and w > 0 and h > 0
            if not ok:
                self.flag(chunk.first + k, int(chunk.lines[k]), it)
            ids.append(i if type(i) is int else -1)
            names.append(fn if type(fn) is str else "")
            ws.append(float(w) if isinstance(w, (int, float)) else float("nan"))
            hs.append(float(h) if isinstance(h, (int, float)) else float("nan"))
        self.line.append(chunk.lines)
        self.n += len(chunk.items)

    def build(self) -> Images:
        return Images(
            id=_int64(self.id),
            file_name=np.array(self.file_name, dtype=object),
            width=np.array(self.width, np.float64),
            height=np.array(self.height, np.float64),
            line=_lines(self.line),
        )


class _Categories(_Builder):
    def __init__(self) -> None:
        super().__init__("categories")
        self.id: list[int] = []
        self.name: list[str] = []
        self.sup: list[str] = []
        self.kp: list[tuple[str, ...]] = []
        self.line: list[npt.NDArray[np.int64]] = []

    def add(self, chunk: Chunk) -> None:
        # categories are few: validate all of them against the schema
        for k, it in enumerate(chunk.items):
            self.samples.append(
                ElementSample(
                    key="categories", pointer=f"/categories/{chunk.first + k}", line=int(chunk.lines[k]), item=it
                )
            )
            d = it if type(it) is dict else {}
            i, nm = d.get("id"), d.get("name")
            self.id.append(i if type(i) is int else -1)
            self.name.append(nm if type(nm) is str else "")
            sup = d.get("supercategory")
            self.sup.append(sup if type(sup) is str else "")
            kp = d.get("keypoints")
            self.kp.append(tuple(str(x) for x in kp) if type(kp) is list else ())
        self.line.append(chunk.lines)
        self.n += len(chunk.items)

    def build(self) -> Categories:
        return Categories(
            id=_int64(self.id),
            name=np.array(self.name, dtype=object),
            supercategory=np.array(self.sup, dtype=object),
            keypoints=tuple(self.kp),
            line=_lines(self.line),
        )


class _Annotations(_Builder):
    """The hot loop: one pass of cheap exact type checks per annotation."""

    def __init__(self, *, results: bool, annotator_field: str | None) -> None:
        super().__init__("annotations")
        self.results = results
        self.annotator_field = annotator_field
        self.id: list[int] = []
        self.image_id: list[int] = []
        self.category_id: list[int] = []
        self.bbox: list[npt.NDArray[np.float64]] = []
        self.area: list[float] = []
        self.iscrowd: list[bool] = []
        self.score: list[float] = []
        self.annotator: list[int] = []
        self.annotators: dict[str, int] = {}
        self.line: list[npt.NDArray[np.int64]] = []
        self.seg_kind: list[int] = []
        self.xy_parts: list[npt.NDArray[np.float64]] = []
        self.ring_len: list[int] = []
        self.rings_per_ann: list[int] = []
        self.rle: list[Any] = []
        self.kp_parts: list[npt.NDArray[np.float64]] = []
        self.kp_count: list[int] = []
        self.num_kp: list[int] = []
        self.problems: list[Finding] = []

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
        if v is None or isinstance(v, (dict, list)):
            return -1
        name = str(v)
        idx = self.annotators.get(name)
        if idx is None:
            idx = self.annotators[name] = len(self.annotators)
        return idx

    def add(self, chunk: Chunk) -> None:
        self.sample(chunk)
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
        if set(map(type, iids)) != {int} or set(map(type, cids)) != {int}:
            return False
        id_types = set(map(type, ids))
        if id_types != {int}:
            if not (self.results and id_types <= {int, type(None)}):
                return False
            ids = [a if a is not None else chunk.first + k + 1 for k, a in enumerate(ids)]
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
            flat = list(chain.from_iterable(rings))
            xy = np.array(flat) if flat else np.empty(0, np.float64)
            if xy.dtype.kind not in "fiu" or xy.shape != (len(flat),):
                return False
            rper = list(map(len, polys))
            kinds = [SEG_POLYGON if sg is not None else SEG_NONE for sg in segs]
        else:
            xy, ring_len, rper, kinds = np.empty(0, np.float64), [], [0] * len(items), [SEG_NONE] * len(items)
        annot = [self._annotator(a) for a in items] if self._has_annotators(items) else [-1] * len(items)
        # all checks passed: append
        n = len(items)
        self.id.extend(ids)
        self.image_id.extend(iids)
        self.category_id.extend(cids)
        self.bbox.append(bbox.astype(np.float64, copy=False))
        nan = float("nan")
        self.area.extend([nan if a is None else a for a in areas] if type(None) in at else areas)
        self.iscrowd.extend(c == 1 for c in crowd)
        self.score.extend(nan if v is None else v for v in scores)
        self.seg_kind.extend(kinds)
        if len(xy):
            self.xy_parts.append(xy.astype(np.float64, copy=False))
        self.ring_len.extend(ring_len)
        self.rings_per_ann.extend(rper)
        self.rle.extend([None] * n)
        self.kp_count.extend([0] * n)
        self.num_kp.extend([-1] * n)
        self.annotator.extend(annot)
        return True

    def _has_annotators(self, items: list[dict[str, Any]]) -> bool:
        if self.annotator_field is not None:
            return True
        return any(("annotator_id" in a or "annotator" in a or "attributes" in a) for a in items)

    def _add_slow(self, chunk: Chunk) -> None:
        nan = float("nan")
        xy: list[Any] = []
        kps: list[Any] = []
        bbs: list[Any] = []
        ids, iids, cids = self.id, self.image_id, self.category_id
        areas, crowd, scores, kinds = self.area, self.iscrowd, self.score, self.seg_kind
        rlen, rper, rles, kpc, nkp, annot = (
            self.ring_len,
            self.rings_per_ann,
            self.rle,
            self.kp_count,
            self.num_kp,
            self.annotator,
        )
        results = self.results
        for k, it in enumerate(chunk.items):
            index = chunk.first + k
            if type(it) is not dict:
                self.flag(index, int(chunk.lines[k]), it)
                it = {}
            g = it.get
            aid, iid, cid = g("id"), g("image_id"), g("category_id")
            ok = type(iid) is int and type(cid) is int and (type(aid) is int or (results and aid is None))
            ids.append(aid if type(aid) is int else (index + 1 if results and aid is None else -1))
            iids.append(iid if type(iid) is int else -1)
            cids.append(cid if type(cid) is int else -1)
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
                rles.append(None)
            elif type(seg) is dict:
                kinds.append(SEG_RLE)
                rper.append(0)
                rles.append(seg)
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
                rles.append(None)
                ok = ok and seg is None
            kp = g("keypoints")
            if type(kp) is list:
                n3 = len(kp) // 3
                if len(kp) % 3:
                    self.problems.append(
                        Finding(
                            gate="schema",
                            rule="keypoints_length",
                            message=f"keypoints has {len(kp)} values, not a multiple of 3 (x, y, v)",
                            file="",
                            line=int(chunk.lines[k]),
                            pointer=f"/annotations/{index}/keypoints",
                            annotation_id=aid if type(aid) is int else None,
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
        self.bbox.append(rows)
        if xy:
            self.xy_parts.append(self._numeric(xy, chunk, "segmentation"))
        if kps:
            self.kp_parts.append(self._numeric(kps, chunk, "keypoints"))

    def _numeric(self, values: list[Any], chunk: Chunk, field: str) -> npt.NDArray[np.float64]:
        """Flat numbers to float64; on a non-number, flag the elements that hold one."""
        try:
            arr = np.array(values)
        except (ValueError, TypeError, OverflowError):
            arr = np.empty(0, dtype=object)
        if arr.dtype.kind in "fiu" and arr.shape == (len(values),):
            return arr.astype(np.float64, copy=False)
        out = np.full(len(values), np.nan)
        for j, v in enumerate(values):
            if type(v) in _NUM:
                out[j] = v
        for k, it in enumerate(chunk.items):
            seg = it.get(field) if type(it) is dict else None
            if type(seg) is list:
                flat = [v for r in seg for v in (r if type(r) is list else [r])] if field == "segmentation" else seg
                if any(type(v) not in _NUM for v in flat):
                    self.flag(chunk.first + k, int(chunk.lines[k]), it)
        return out

    def build(self) -> tuple[Annotations, tuple[str, ...]]:
        n = self.n
        bbox = np.concatenate(self.bbox) if self.bbox else np.empty((0, 4), np.float64)
        ring_len = np.array(self.ring_len, np.int64)
        ring_offsets = np.zeros(ring_len.size + 1, np.int64)
        np.cumsum(ring_len, out=ring_offsets[1:])
        ann_ring = np.zeros(n + 1, np.int64)
        np.cumsum(np.array(self.rings_per_ann, np.int64), out=ann_ring[1:])
        kp_off = np.zeros(n + 1, np.int64)
        np.cumsum(np.array(self.kp_count, np.int64), out=kp_off[1:])
        rle = np.empty(n, dtype=object)
        rle[:] = self.rle
        ann = Annotations(
            id=_int64(self.id),
            image=np.full(n, -1, np.int32),
            category=np.full(n, -1, np.int32),
            image_id=_int64(self.image_id),
            category_id=_int64(self.category_id),
            bbox=bbox,
            area=np.array(self.area, np.float64),
            iscrowd=np.array(self.iscrowd, np.bool_),
            score=np.array(self.score, np.float64),
            annotator=np.array(self.annotator, np.int32),
            line=_lines(self.line),
            file=np.zeros(n, np.int32),
            seg_kind=np.array(self.seg_kind, np.int8),
            poly_xy=np.concatenate(self.xy_parts) if self.xy_parts else np.empty(0, np.float64),
            ring_offsets=ring_offsets,
            ann_ring_offsets=ann_ring,
            rle=rle,
            keypoints=np.concatenate(self.kp_parts) if self.kp_parts else np.empty(0, np.float64),
            kp_offsets=kp_off,
            num_keypoints=np.array(self.num_kp, np.int32),
        )
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


def _int64(values: list[int]) -> npt.NDArray[np.int64]:
    try:
        return np.array(values, np.int64)
    except OverflowError:
        return np.array([v if -(2**63) <= v < 2**63 else -1 for v in values], np.int64)


def _lines(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int32]:
    if not parts:
        return np.empty(0, np.int32)
    return np.concatenate(parts).astype(np.int32)


def _resolve(ids: npt.NDArray[np.int64], table_ids: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
    """Row index in the table of each id; -1 where the id dangles. Vectorised."""
    if table_ids.size == 0:
        return np.full(ids.size, -1, np.int32)
    order = np.argsort(table_ids, kind="stable")
    sorted_ids = table_ids[order]
    pos = np.searchsorted(sorted_ids, ids)
    pos = np.minimum(pos, sorted_ids.size - 1)
    hit = sorted_ids[pos] == ids
    return np.where(hit, order[pos], -1).astype(np.int32)


def load_coco(
    path: Path,
    *,
    images_from: Batch | None = None,
    annotator_field: str | None = None,
) -> Batch:
    """Read a COCO file into a :class:`Batch`.

    ``images_from`` supplies images and categories for a COCO *results* file (a bare
    array of detections that refers to a ground truth's ids). Syntax errors raise
    :class:`JSONError` with line and column; everything else wrong with the content
    is recorded for the schema gate, never raised.
    """
    path = Path(path)
    images_b, cats_b = _Images(), _Categories()
    ann_b: _Annotations | None = None
    scan: Scan | None = None
    was_enabled = gc.isenabled()
    gc.disable()  # the parser creates millions of short-lived objects; tracing them triples the time
    try:
        for item in scan_json(path, big_keys=BIG_KEYS):
            if isinstance(item, Scan):
                scan = item
                continue
            if item.key == "images":
                images_b.add(item)
            elif item.key == "categories":
                cats_b.add(item)
            else:
                if ann_b is None:
                    ann_b = _Annotations(results=item.key is None, annotator_field=annotator_field)
                ann_b.add(item)
    finally:
        if was_enabled:
            gc.enable()
    assert scan is not None
    skeleton = scan.skeleton
    results = isinstance(skeleton, list)
    if ann_b is None:
        ann_b = _Annotations(results=results, annotator_field=annotator_field)
    if results and images_from is not None:
        images, categories = images_from.images, images_from.categories
    else:
        images, categories = images_b.build(), cats_b.build()
    ann, annotators = ann_b.build()
    ann = _replace(ann, image=_resolve(ann.image_id, images.id), category=_resolve(ann.category_id, categories.id))
    problems = [_with_file(p, path) for p in ann_b.problems]
    meta: dict[str, Any] = {
        "skeleton": skeleton,
        "results": results,
        "samples": images_b.samples + cats_b.samples + ann_b.samples,
        "flagged": images_b.flagged + cats_b.flagged + ann_b.flagged,
        "flagged_count": images_b.flagged_count + cats_b.flagged_count + ann_b.flagged_count,
        "size": scan.size,
    }
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
        meta=meta,
    )


def _with_file(f: Finding, path: Path) -> Finding:
    from dataclasses import replace

    return replace(f, file=str(path))


def _replace(ann: Annotations, **changes: Any) -> Annotations:
    from dataclasses import replace

    return replace(ann, **changes)


# Re-exported for callers that catch syntax errors of this format.
COCOSyntaxError = JSONError


def _format() -> Any:
    from annogate.formats import Format

    return Format(name=FORMAT_NAME, suffixes=(".json",), sniff=looks_like_coco, load=load_coco)


FORMAT = _format()
