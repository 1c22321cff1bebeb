"""Row-at-a-time construction of the columnar model, for readers of small-file formats.

Why: YOLO, Pascal VOC, LabelMe, CVAT XML and Label Studio files are read one object
at a time (an XML element, a text row, a JSON shape), and each reader would otherwise
repeat the same twenty columns, offsets and index bookkeeping. A reader calls
``add_image`` / ``add_category`` / ``add_annotation`` and ``problem`` in source order
and gets a :class:`~annogate.model.Batch` from :meth:`BatchBuilder.build`; it never
touches a NumPy offset array or a gate. COCO keeps its own streaming column builder
(it must handle a million elements per second).

Conventions (see ``annogate.model``): boxes are ``(x, y, w, h)`` in pixels, top-left
origin; polygons are flat ``[x0, y0, x1, y1, ...]`` rings in pixels; keypoints are
``(x, y, v)`` triples with COCO visibility (0 not labelled, 1 labelled not visible,
2 visible); ``rotation`` is degrees clockwise (y down) about the box centre, with
``bbox`` the unrotated box.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from annogate.model import (
    SEG_NONE,
    SEG_POLYGON,
    SEG_RLE,
    Annotations,
    Batch,
    Categories,
    Images,
    SourceProblem,
)

__all__ = [
    "MAX_IMAGE_SIDE",
    "PARENT_DIR",
    "AnnotatorFrom",
    "BatchBuilder",
    "image_side_problem",
    "label_files",
    "read_capped",
    "read_label_files",
    "sha256_of_files",
]

_NAN = float("nan")

#: Largest image width or height (pixels) a label file may state. Why: "finite and
#: positive" still lets ``2**70`` or ``1e308`` through, a size no image has (the largest
#: real ones are ~10^6 px a side) that makes every box "fit" and overflows pixel counts;
#: every reader flags a side outside ``(0, MAX_IMAGE_SIDE]`` as an ``image_size``
#: problem and treats that size as unknown.
MAX_IMAGE_SIDE = 1 << 31


def image_side_problem(value: float | None) -> str | None:
    """Why ``value`` is no usable image side (NaN/inf, not positive, above ``MAX_IMAGE_SIDE``), or None."""
    if value is None:
        return "missing"
    if value != value or value in (float("inf"), float("-inf")):
        return f"{value!r} is not a finite number"
    if value <= 0:
        return f"{value:g} is not positive"
    if value > MAX_IMAGE_SIDE:
        return f"{value:g} exceeds the {MAX_IMAGE_SIDE} pixel limit"
    return None


#: ``annotator_from = "parent_dir"``: the folder holding the label file names its annotator.
PARENT_DIR = "parent_dir"


@dataclass(frozen=True)
class AnnotatorFrom:
    """Where a folder batch's layout says who labelled a file (rules key ``annotator_from``).

    Why: LabelMe, VOC and YOLO files carry no annotator, yet teams keep one sub-folder
    per annotator (``alice/x.json``, ``bob/x.json``). With this, each object's
    annotator is taken from the file's path relative to the batch folder, and the same
    image in two annotators' folders is one image labelled twice (what the agreement
    gate needs), not a duplicate. ``spec`` is ``"parent_dir"`` (the name of the folder
    holding the file; none for a file directly in the batch folder) or a regular
    expression with a named group ``annotator``, searched in the relative path
    (``/``-separated); no match means no annotator for that file.
    """

    spec: str

    def __post_init__(self) -> None:
        if self.spec != PARENT_DIR:
            try:
                pattern = re.compile(self.spec)
            except re.error as e:
                raise ValueError(f"annotator_from {self.spec!r} is not a regular expression: {e}") from None
            if "annotator" not in pattern.groupindex:
                raise ValueError(
                    f'annotator_from {self.spec!r}: "parent_dir" or a regular expression with a group (?P<annotator>...)'
                )

    def of(self, rel: str | Path) -> str | None:
        """The annotator of the file at ``rel`` (relative to the batch folder), or None."""
        path = PurePosixPath(Path(rel).as_posix())
        if self.spec == PARENT_DIR:
            return path.parent.name or None
        m = re.search(self.spec, path.as_posix())  # compiled once: re caches patterns
        name = m.group("annotator") if m else None
        return name or None

    @classmethod
    def of_option(cls, value: AnnotatorFrom | str | None) -> AnnotatorFrom | None:
        """A reader's ``annotator_from=`` load option: the typed object, its spec, or None."""
        if value is None or isinstance(value, AnnotatorFrom):
            return value
        return cls(str(value))


def sha256_of_files(paths: Iterable[Path], *, root: Path | None = None) -> str:
    """One digest over several files (name and content), for folder batches.

    The audit report records what was judged; for a folder that is every file read,
    in a stable order, each prefixed with its path relative to ``root``.
    """
    h = hashlib.sha256()
    for p in sorted(Path(x) for x in paths):
        name = str(p.relative_to(root)) if root is not None else p.name
        h.update(name.encode("utf-8", "surrogateescape") + b"\0")
        with open(p, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
        h.update(b"\0")
    return h.hexdigest()


class BatchBuilder:
    """Collects images, classes and objects row by row, then builds a :class:`Batch`.

    Keyword-only, typed adders; every object carries its source file and 1-based line.
    Images are keyed by file name (the cross-file join key), classes by name; an
    object may name an image or class not added yet, which is then added on the fly
    (a class absent from the format's class list is also recorded as a problem by
    the reader if the format declares its classes).
    """

    def __init__(self, *, path: Path, format: str) -> None:
        self.path = Path(path)
        self.format = format
        self.files: list[str] = []
        self._file_index: dict[str, int] = {}
        self.problems: list[SourceProblem] = []
        # images
        self._img_index: dict[str, int] = {}
        self._img_name: list[str] = []
        self._img_w: list[float] = []
        self._img_h: list[float] = []
        self._img_line: list[int] = []
        # categories
        self._cat_index: dict[str, int] = {}
        self._cat_name: list[str] = []
        self._cat_super: list[str | None] = []
        self._cat_kp: list[tuple[str, ...]] = []
        self._cat_skel: list[tuple[tuple[int, int], ...]] = []
        self._cat_line: list[int] = []
        # annotators
        self._annotator_index: dict[str, int] = {}
        self.annotators: list[str] = []
        # annotations
        self._a: dict[str, list[Any]] = {
            k: []
            for k in (
                "id",
                "image",
                "category",
                "bbox",
                "area",
                "iscrowd",
                "score",
                "annotator",
                "line",
                "file",
                "seg_kind",
                "rle",
                "num_keypoints",
                "rotation",
                "attributes",
                "pointer",
            )
        }
        self._poly: list[float] = []
        self._ring_offsets: list[int] = [0]
        self._ann_ring_offsets: list[int] = [0]
        self._kp: list[float] = []
        self._kp_offsets: list[int] = [0]
        self._any_rotation = False
        self._any_attributes = False
        self._any_pointer = False

    # -- sources -----------------------------------------------------------
    def file_index(self, file: str | Path) -> int:
        """Index of a source file (added on first use); findings name it."""
        key = str(file)
        k = self._file_index.get(key)
        if k is None:
            k = self._file_index[key] = len(self.files)
            self.files.append(key)
        return k

    def problem(
        self,
        *,
        rule: str,
        message: str,
        file: str | Path | None = None,
        line: int | None = None,
        pointer: str | None = None,
        annotation_id: int | None = None,
        image: str | None = None,
        category: str | None = None,
        severity: str = "error",
    ) -> None:
        """Record something wrong in the source (reported by the schema gate)."""
        self.problems.append(
            SourceProblem(
                rule=rule,
                message=message,
                file=None if file is None else str(file),
                line=line,
                pointer=pointer,
                annotation_id=annotation_id,
                image=image,
                category=category,
                severity=severity,
            )
        )

    # -- images and classes ------------------------------------------------
    def add_image(self, name: str, *, width: float | None, height: float | None, line: int = 0) -> int:
        """Add (or update the size of) the image called ``name``; returns its row."""
        k = self._img_index.get(name)
        if k is None:
            k = self._img_index[name] = len(self._img_name)
            self._img_name.append(name)
            self._img_w.append(_NAN if width is None else float(width))
            self._img_h.append(_NAN if height is None else float(height))
            self._img_line.append(int(line))
        else:
            if width is not None and self._img_w[k] != self._img_w[k]:
                self._img_w[k] = float(width)
            if height is not None and self._img_h[k] != self._img_h[k]:
                self._img_h[k] = float(height)
        return k

    def has_image(self, name: str) -> bool:
        return name in self._img_index

    def add_category(
        self,
        name: str,
        *,
        supercategory: str | None = None,
        keypoints: Sequence[str] = (),
        skeleton: Sequence[tuple[int, int]] = (),
        line: int = 0,
    ) -> int:
        """Add the class called ``name`` (once); returns its row. Skeleton edges are 0-based."""
        k = self._cat_index.get(name)
        if k is None:
            k = self._cat_index[name] = len(self._cat_name)
            self._cat_name.append(name)
            self._cat_super.append(supercategory)
            self._cat_kp.append(tuple(keypoints))
            self._cat_skel.append(tuple((int(a), int(b)) for a, b in skeleton))
            self._cat_line.append(int(line))
        return k

    def has_category(self, name: str) -> bool:
        return name in self._cat_index

    def annotator(self, name: str | None) -> int:
        if name is None:
            return -1
        k = self._annotator_index.get(name)
        if k is None:
            k = self._annotator_index[name] = len(self.annotators)
            self.annotators.append(name)
        return k

    # -- objects -----------------------------------------------------------
    def add_annotation(
        self,
        *,
        image: str,
        category: str | None,
        file: str | Path,
        line: int,
        bbox: Sequence[float] | None = None,
        polygons: Sequence[Sequence[float]] = (),
        rle: Mapping[str, Any] | None = None,
        keypoints: Sequence[float] | None = None,
        area: float | None = None,
        iscrowd: bool = False,
        score: float | None = None,
        annotator: str | None = None,
        rotation: float | None = None,
        attributes: Mapping[str, Any] | None = None,
        id: int | None = None,
        pointer: str | None = None,
    ) -> int:
        """Add one object; returns its row.

        ``bbox`` defaults to the bounds of the polygons or keypoints when absent, as
        COCO exporters do; ``area`` defaults to nan (unknown), which the geometry gate
        does not compare. ``category=None`` is an unlabelled shape (class index -1).
        """
        a = self._a
        row = len(a["id"])
        img = self.add_image(image, width=None, height=None) if image not in self._img_index else self._img_index[image]
        cat = -1 if category is None else self.add_category(category)
        if bbox is None:
            bbox = _bounds(polygons, keypoints)
        a["id"].append(row + 1 if id is None else int(id))
        a["image"].append(img)
        a["category"].append(cat)
        a["bbox"].append(tuple(float(v) for v in bbox) if bbox is not None else (_NAN,) * 4)
        a["area"].append(_NAN if area is None else float(area))
        a["iscrowd"].append(bool(iscrowd))
        a["score"].append(_NAN if score is None else float(score))
        a["annotator"].append(self.annotator(annotator))
        a["line"].append(int(line))
        a["file"].append(self.file_index(file))
        a["rle"].append(dict(rle) if rle is not None else None)
        a["rotation"].append(0.0 if rotation is None else float(rotation))
        a["attributes"].append(dict(attributes) if attributes else None)
        a["pointer"].append(pointer)
        self._any_rotation |= bool(rotation)
        self._any_attributes |= bool(attributes)
        self._any_pointer |= pointer is not None
        if rle is not None:
            a["seg_kind"].append(SEG_RLE)
        elif polygons:
            a["seg_kind"].append(SEG_POLYGON)
        else:
            a["seg_kind"].append(SEG_NONE)
        for ring in polygons:
            self._poly.extend(float(v) for v in ring)
            self._ring_offsets.append(len(self._poly))
        self._ann_ring_offsets.append(len(self._ring_offsets) - 1)
        if keypoints is not None:
            kp = [float(v) for v in keypoints]
            self._kp.extend(kp[: len(kp) - len(kp) % 3])
            a["num_keypoints"].append(sum(1 for j in range(2, len(kp), 3) if kp[j] > 0))
        else:
            a["num_keypoints"].append(-1)
        self._kp_offsets.append(len(self._kp) // 3)
        return row

    # -- result ------------------------------------------------------------
    def build(self, *, sha256: str = "", pointer_base: str | None = None) -> Batch:
        a = self._a
        n = len(a["id"])
        images = Images(
            id=np.arange(1, len(self._img_name) + 1, dtype=np.int64),
            file_name=_obj(self._img_name),
            width=np.asarray(self._img_w, np.float64),
            height=np.asarray(self._img_h, np.float64),
            line=np.asarray(self._img_line, np.int32),
        )
        categories = Categories(
            id=np.arange(1, len(self._cat_name) + 1, dtype=np.int64),
            name=_obj(self._cat_name),
            supercategory=_obj(self._cat_super),
            keypoints=tuple(self._cat_kp),
            line=np.asarray(self._cat_line, np.int32),
            skeleton=tuple(self._cat_skel) if any(self._cat_skel) else (),
        )
        image = np.asarray(a["image"], np.int32)
        category = np.asarray(a["category"], np.int32)
        annotations = Annotations(
            id=np.asarray(a["id"], np.int64),
            image=image,
            category=category,
            image_id=(image.astype(np.int64) + 1),
            category_id=np.where(category >= 0, category.astype(np.int64) + 1, -1),
            bbox=np.asarray(a["bbox"], np.float64).reshape(n, 4),
            area=np.asarray(a["area"], np.float64),
            iscrowd=np.asarray(a["iscrowd"], np.bool_),
            score=np.asarray(a["score"], np.float64),
            annotator=np.asarray(a["annotator"], np.int32),
            line=np.asarray(a["line"], np.int32),
            file=np.asarray(a["file"], np.int32),
            seg_kind=np.asarray(a["seg_kind"], np.int8),
            poly_xy=np.asarray(self._poly, np.float64),
            ring_offsets=np.asarray(self._ring_offsets, np.int64),
            ann_ring_offsets=np.asarray(self._ann_ring_offsets, np.int64),
            rle=_obj(a["rle"]),
            keypoints=np.asarray(self._kp, np.float64),
            kp_offsets=np.asarray(self._kp_offsets, np.int64),
            num_keypoints=np.asarray(a["num_keypoints"], np.int32),
            rotation=np.asarray(a["rotation"], np.float64) if self._any_rotation else None,
            attributes=_obj(a["attributes"]) if self._any_attributes else None,
        )
        return Batch(
            path=self.path,
            format=self.format,
            images=images,
            categories=categories,
            annotations=annotations,
            files=tuple(self.files) or (str(self.path),),
            annotators=tuple(self.annotators),
            sha256=sha256,
            problems=list(self.problems),
            pointer_base=pointer_base,
            row_pointers=_obj(a["pointer"]) if self._any_pointer else None,
        )


def _obj(values: Sequence[Any]) -> np.ndarray[Any, np.dtype[np.object_]]:
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def _bounds(polygons: Sequence[Sequence[float]], keypoints: Sequence[float] | None) -> tuple[float, ...] | None:
    xs: list[float] = []
    ys: list[float] = []
    for ring in polygons:
        xs.extend(float(v) for v in ring[0::2])
        ys.extend(float(v) for v in ring[1::2])
    if not xs and keypoints is not None:
        trip = list(keypoints)
        for j in range(0, len(trip) - 2, 3):
            if trip[j + 2] > 0:
                xs.append(float(trip[j]))
                ys.append(float(trip[j + 1]))
    if not xs or not ys:
        return None
    x0, y0 = min(xs), min(ys)
    return (x0, y0, max(xs) - x0, max(ys) - y0)


def read_capped(path: Path, cap: int) -> bytes | None:
    """The file's bytes, or None when it holds more than ``cap``: bounded by the read
    itself, not by a size the file system reported earlier (a file that grows, or a
    special file whose size says 0, cannot make a reader load it whole)."""
    with open(path, "rb") as fh:
        data = fh.read(cap + 1)
    return None if len(data) > cap else data


def label_files(folder: Path, suffix: str) -> list[Path]:
    """The files of a folder batch with ``suffix``, sorted, in any sub-folder that is not
    hidden. Only the parts *below* ``folder`` are looked at: a batch that itself lies
    under a hidden folder (``~/.cache``, ``.ci/``, ``../x``) is still read."""
    return sorted(
        p
        for p in folder.rglob(f"*{suffix}")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )


def read_label_files(
    path: Path,
    root: Path,
    files: Sequence[Path],
    read_file: Callable[[Path], str | None],
    builder: BatchBuilder,
    *,
    kind: str,
) -> Batch:
    """Read every file of a folder batch (or the one file given) into ``builder``.

    Why shared: a folder reader records each unreadable or hostile file as a problem of
    the batch and goes on; only when no file at all can be read is the batch
    unreadable (:class:`~annogate.formats.LoadError`, naming the first reason, or the
    single file's problem with its line). ``read_file`` returns None or why it failed.
    """
    from annogate.formats import LoadError

    failures = [f for f in (read_file(p) for p in files) if f is not None]
    if files and len(failures) == len(files):
        if not path.is_dir():
            problem = builder.problems[-1]
            raise LoadError(f"{problem.message} [{problem.rule}]", path=path, line=problem.line)
        raise LoadError(f"none of the {len(files)} {kind} files could be read; first: {failures[0]}", path=path)
    return builder.build(sha256=sha256_of_files(files, root=root))
