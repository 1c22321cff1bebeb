"""Prototype (issue 12): COCO read by msgspec into typed Structs, chunk by chunk, then columns.

Why this exists: the current reader (``coco.py``) parses each chunk with
``orjson.loads`` into dicts and checks types by hand, then runs the JSON Schema on
the elements that fail (and on samples). msgspec decodes straight into typed
``Struct`` objects and checks *every* element against types that mirror
``schemas/coco.schema.json`` (exact 64-bit integer ids, positive integer sizes,
4-number boxes, ``iscrowd`` 0/1, polygons or RLE), in C, and names the place of a
type error as a path (``$.annotations[3].bbox[2]``). This module measures whether
that buys speed and memory; it is not registered as a format.

How: one pass decodes the document with the annotations left as ``msgspec.Raw``
(a slice of the input; msgspec still checks their syntax), images and categories
typed. Annotations are then decoded ``CHUNK`` at a time into Structs, converted
to columns, and dropped, so only one chunk of Python objects is alive at once. A
chunk that fails type checks is decoded element by element to report *each* bad
element (msgspec stops at the first error), generic (untyped) for the columns.

Known gaps against ``coco.py`` (why this is a prototype): no line numbers
(msgspec has none: the columns hold 0), no captions/panoptic detection, no
duplicate top-level keys check, no annotator column, results files (a root
array) are read as predictions without an ``images_from`` table, and a syntax
error is reported with a byte offset only.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import chain
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt

from annogate.model import SEG_NONE, SEG_POLYGON, SEG_RLE, Annotations, Batch, Categories, Images, SourceProblem

__all__ = ["COCOFile", "CocoAnnotation", "CocoCategory", "CocoImage", "decode_document", "load_coco_typed"]

CHUNK = 8192

Id = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
Positive = Annotated[int, msgspec.Meta(gt=0)]
Count = Annotated[int, msgspec.Meta(ge=0)]
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
_NAN = float("nan")


class CocoImage(msgspec.Struct, gc=False):
    """``$defs/image``: unknown keys are allowed (as in the schema)."""

    id: Id
    file_name: NonEmpty
    width: Positive
    height: Positive


class CocoCategory(msgspec.Struct, gc=False):
    """``$defs/category``."""

    id: Id
    name: NonEmpty
    supercategory: str = ""
    keypoints: list[str] = []
    skeleton: list[tuple[int, int]] = []


class CocoRLE(msgspec.Struct, gc=False):
    """``$defs/rle``: counts compressed (a string) or a list of run lengths."""

    size: tuple[Count, Count]
    counts: str | list[Count]


class CocoAnnotation(msgspec.Struct, gc=False):
    """``$defs/annotation`` (``id`` is required; a results row may omit it: ``None``)."""

    image_id: Id
    category_id: Id
    id: Id | None = None
    bbox: tuple[float, float, float, float] | None = None
    area: float = _NAN
    iscrowd: Literal[0, 1] = 0
    score: float = _NAN
    segmentation: list[list[float]] | CocoRLE | None = None
    keypoints: list[float] | None = None
    num_keypoints: Count = -1  # default marks "absent"; a written -1 fails Count


class COCOFile(msgspec.Struct, gc=False):
    """The whole document, typed (what the issue's measured "lead" decoded)."""

    images: list[CocoImage]
    annotations: list[CocoAnnotation]
    categories: list[CocoCategory]


class _Outline(msgspec.Struct, gc=False):
    """The document with annotations kept as raw slices, decoded later in chunks."""

    images: list[CocoImage]
    annotations: list[msgspec.Raw]
    categories: list[CocoCategory]


_DOC = msgspec.json.Decoder(COCOFile)
_OUTLINE = msgspec.json.Decoder(_Outline)
_RESULTS = msgspec.json.Decoder(list[msgspec.Raw])
_CHUNK = msgspec.json.Decoder(list[CocoAnnotation])
_ONE = msgspec.json.Decoder(CocoAnnotation)
_ANY = msgspec.json.Decoder()


def decode_document(buf: bytes) -> COCOFile:
    """Decode and type-check a whole COCO document at once (the issue's measurement)."""
    return _DOC.decode(buf)


def _pointer(base: str, msg: str) -> tuple[str, str]:
    """msgspec's ``... - at `$[3].bbox[2]``` as (JSON pointer, message) under ``base``."""
    text, _, where = msg.rpartition(" - at `")
    if not text:
        return base, msg
    path = where.rstrip("`")[1:]  # drop "$"
    ptr = base
    for part in path.replace("]", "").replace("[", ".").split("."):
        if part:
            ptr += "/" + part.replace("~", "~0").replace("/", "~1")
    return ptr, text


class _Columns:
    """Annotation columns, appended one chunk at a time."""

    def __init__(self) -> None:
        self.id: list[npt.NDArray[np.int64]] = []
        self.id_valid: list[npt.NDArray[np.bool_]] = []
        self.image_id: list[npt.NDArray[np.int64]] = []
        self.category_id: list[npt.NDArray[np.int64]] = []
        self.bbox: list[npt.NDArray[np.float64]] = []
        self.area: list[npt.NDArray[np.float64]] = []
        self.iscrowd: list[npt.NDArray[np.bool_]] = []
        self.score: list[npt.NDArray[np.float64]] = []
        self.seg_kind: list[npt.NDArray[np.int8]] = []
        self.xy: list[npt.NDArray[np.float64]] = []
        self.ring_len: list[npt.NDArray[np.int64]] = []
        self.rings_per_ann: list[npt.NDArray[np.int64]] = []
        self.rle: list[Any] = []
        self.kp: list[npt.NDArray[np.float64]] = []
        self.kp_count: list[npt.NDArray[np.int64]] = []
        self.num_kp: list[npt.NDArray[np.int32]] = []
        self.n = 0

    def add(self, anns: Sequence[CocoAnnotation], first: int, results: bool) -> None:
        n = len(anns)
        ids = [a.id for a in anns]
        valid = np.array([i is not None for i in ids], np.bool_)
        if results:
            ids = [first + k + 1 if i is None else i for k, i in enumerate(ids)]
            valid[:] = True
        self.id.append(np.array([-1 if i is None else i for i in ids], np.int64))
        self.id_valid.append(valid)
        self.image_id.append(np.fromiter((a.image_id for a in anns), np.int64, n))
        self.category_id.append(np.fromiter((a.category_id for a in anns), np.int64, n))
        boxes = [a.bbox for a in anns]
        if None in boxes:
            boxes = [(_NAN,) * 4 if b is None else b for b in boxes]
        self.bbox.append(np.array(boxes, np.float64).reshape(n, 4))
        self.area.append(np.fromiter((a.area for a in anns), np.float64, n))
        self.iscrowd.append(np.fromiter((a.iscrowd for a in anns), np.bool_, n))
        self.score.append(np.fromiter((a.score for a in anns), np.float64, n))
        segs = [a.segmentation for a in anns]
        kinds = np.fromiter(
            (SEG_NONE if s is None else SEG_RLE if type(s) is CocoRLE else SEG_POLYGON for s in segs), np.int8, n
        )
        self.seg_kind.append(kinds)
        polys: list[list[list[float]]] = [s if type(s) is list else [] for s in segs]
        self.rings_per_ann.append(np.fromiter(map(len, polys), np.int64, n))
        rings = list(chain.from_iterable(polys))
        lens = np.fromiter(map(len, rings), np.int64, len(rings))
        self.ring_len.append(lens)
        self.xy.append(np.fromiter(chain.from_iterable(rings), np.float64, int(lens.sum())))
        if (kinds == SEG_RLE).any():
            self.rle.extend({"size": list(s.size), "counts": s.counts} if type(s) is CocoRLE else None for s in segs)
        else:
            self.rle.extend([None] * n)
        kps = [a.keypoints for a in anns]
        if any(k is not None for k in kps):
            kl = [k[: len(k) - len(k) % 3] if k is not None else [] for k in kps]
            cnt = np.fromiter((len(k) // 3 for k in kl), np.int64, n)
            self.kp.append(np.fromiter(chain.from_iterable(kl), np.float64, 3 * int(cnt.sum())))
            self.kp_count.append(cnt)
        else:
            self.kp_count.append(np.zeros(n, np.int64))
        self.num_kp.append(np.fromiter((a.num_keypoints for a in anns), np.int32, n))
        self.n += n

    def build(self) -> Annotations:
        def cat(parts: list[Any], dtype: Any, shape: tuple[int, ...] = (0,)) -> Any:
            return np.concatenate(parts) if parts else np.empty(shape, dtype)

        def offsets(parts: list[npt.NDArray[np.int64]]) -> npt.NDArray[np.int64]:
            lens = cat(parts, np.int64)
            out = np.zeros(lens.size + 1, np.int64)
            np.cumsum(lens, out=out[1:])
            return out

        n = self.n
        rle = np.empty(n, dtype=object)
        rle[:] = self.rle
        return Annotations(
            id=cat(self.id, np.int64),
            id_valid=cat(self.id_valid, np.bool_),
            image=np.full(n, -1, np.int32),
            category=np.full(n, -1, np.int32),
            image_id=cat(self.image_id, np.int64),
            image_id_valid=np.ones(n, np.bool_),
            category_id=cat(self.category_id, np.int64),
            category_id_valid=np.ones(n, np.bool_),
            bbox=cat(self.bbox, np.float64, (0, 4)),
            area=cat(self.area, np.float64),
            iscrowd=cat(self.iscrowd, np.bool_),
            score=cat(self.score, np.float64),
            annotator=np.full(n, -1, np.int32),
            line=np.zeros(n, np.int32),
            file=np.zeros(n, np.int32),
            seg_kind=cat(self.seg_kind, np.int8),
            poly_xy=cat(self.xy, np.float64),
            ring_offsets=offsets(self.ring_len),
            ann_ring_offsets=offsets(self.rings_per_ann),
            rle=rle,
            keypoints=cat(self.kp, np.float64),
            kp_offsets=offsets(self.kp_count),
            num_keypoints=cat(self.num_kp, np.int32),
        )


def _resolve(ids: npt.NDArray[np.int64], table: npt.NDArray[np.int64]) -> npt.NDArray[np.int32]:
    """Row of each id in ``table`` (first wins), -1 where it dangles."""
    if table.size == 0:
        return np.full(ids.size, -1, np.int32)
    order = np.argsort(table, kind="stable")
    pos = np.minimum(np.searchsorted(table[order], ids), table.size - 1)
    return np.where(table[order][pos] == ids, order[pos], -1).astype(np.int32)


def _chunk(
    raws: list[msgspec.Raw], first: int, base: str, results: bool, problems: list[SourceProblem]
) -> list[CocoAnnotation]:
    """Decode one chunk typed; on a type error, find every bad element and keep the good ones."""
    body = b"[" + b",".join(raws) + b"]"
    try:
        return _CHUNK.decode(body)
    except msgspec.ValidationError:
        pass
    good: list[CocoAnnotation] = []
    for k, raw in enumerate(raws):
        try:
            a = _ONE.decode(raw)
            if a.id is None and not results:
                raise msgspec.ValidationError("Object missing required field `id` - at `$`")
            good.append(a)
        except msgspec.ValidationError as e:
            ptr, msg = _pointer(f"{base}{first + k}", str(e))
            problems.append(SourceProblem(rule="schema", message=f"{ptr}: {msg}", pointer=ptr))
            good.append(_lenient(_ANY.decode(raw)))
    return good


def _lenient(item: Any) -> CocoAnnotation:
    """A row for a badly typed element: what can be read exactly, the rest missing (ids -1, nan)."""
    d = item if type(item) is dict else {}

    def idv(v: Any) -> int:
        return v if type(v) is int and -(2**63) <= v < 2**63 else -1

    bb = d.get("bbox")
    ok_bb = type(bb) is list and len(bb) == 4 and all(type(v) in (int, float) for v in bb)
    return CocoAnnotation(
        image_id=idv(d.get("image_id")),
        category_id=idv(d.get("category_id")),
        id=idv(d.get("id")) if idv(d.get("id")) != -1 or d.get("id") == -1 else None,
        bbox=tuple(map(float, bb)) if ok_bb else None,  # type: ignore[arg-type]
    )


def load_coco_typed(path: str | Path) -> Batch:
    """Read a COCO file the msgspec way; same columns as ``load_coco`` for a valid file.

    Type errors become ``schema`` problems with the JSON pointer of the element's
    offending value (one per bad element: the first msgspec meets).
    """
    path = Path(path)
    buf = path.read_bytes()
    problems: list[SourceProblem] = []
    results = buf.lstrip()[:1] == b"["
    if results:
        raws: list[msgspec.Raw] = _RESULTS.decode(buf)
        images, cats = Images.empty(), Categories.empty()
        base = "/"
    else:
        try:
            outline = _OUTLINE.decode(buf)
        except msgspec.ValidationError as e:  # images/categories/top level: report the first, read nothing
            ptr, msg = _pointer("", str(e))
            problems.append(SourceProblem(rule="schema", message=f"{ptr or '/'}: {msg}", pointer=ptr or "/"))
            outline = _Outline(images=[], annotations=[], categories=[])
        raws = outline.annotations
        images = Images(
            id=np.fromiter((i.id for i in outline.images), np.int64, len(outline.images)),
            file_name=np.array([i.file_name for i in outline.images] or [], dtype=object),
            width=np.fromiter((i.width for i in outline.images), np.float64, len(outline.images)),
            height=np.fromiter((i.height for i in outline.images), np.float64, len(outline.images)),
            line=np.zeros(len(outline.images), np.int32),
            id_valid=np.ones(len(outline.images), np.bool_),
        )
        cats = Categories(
            id=np.fromiter((c.id for c in outline.categories), np.int64, len(outline.categories)),
            id_valid=np.ones(len(outline.categories), np.bool_),
            name=np.array([c.name for c in outline.categories], dtype=object),
            supercategory=np.array([c.supercategory for c in outline.categories], dtype=object),
            keypoints=tuple(tuple(c.keypoints) for c in outline.categories),
            line=np.zeros(len(outline.categories), np.int32),
        )
        base = "/annotations/"
        del outline
    cols = _Columns()
    for first in range(0, len(raws), CHUNK):
        anns = _chunk(raws[first : first + CHUNK], first, base, results, problems)
        cols.add(anns, first, results)
    del raws, buf
    ann = cols.build()
    ann = Annotations(
        **{
            **{f: getattr(ann, f) for f in ann.__dataclass_fields__},
            "image": _resolve(ann.image_id, images.id),
            "category": _resolve(ann.category_id, cats.id),
        }
    )
    return Batch(
        path=path,
        format="coco",
        images=images,
        categories=cats,
        annotations=ann,
        files=(str(path),),
        problems=problems,
        pointer_base="/" if results else "/annotations/",
        predictions=results,
    )
