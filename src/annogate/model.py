"""The columnar model every reader produces and every check consumes.

Why columnar: a batch can hold millions of annotations. Python objects per
annotation cost ~1 kB each and make every check a Python loop; NumPy columns cost
a few dozen bytes per annotation and let each check run vectorised, once, for all
formats. Readers (``annogate.formats``) are the only code that sees the source
syntax; everything downstream sees only these arrays.

Conventions
-----------
* Row ``i`` of every :class:`Annotations` column describes the same annotation.
* ``image`` and ``category`` are *indices* into :class:`Images` / :class:`Categories`
  (``-1`` when the source id dangles); the raw source ids are kept beside them so
  that messages can quote what the file said.
* Missing numbers are ``nan`` (floats) or ``-1`` (integers).
* Polygons are stored flat, as in GeoArrow: ``poly_xy`` holds every ring's raw
  coordinate list one after the other; ``ring_offsets`` (length R+1, in coordinate
  units, so an odd-length ring stays representable and detectable) delimits rings;
  ``ann_ring_offsets`` (length N+1) delimits the rings of each annotation.
* Images are matched across files by ``file_name``, never by numeric id.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "SEG_NONE",
    "SEG_POLYGON",
    "SEG_RLE",
    "Annotations",
    "Batch",
    "Categories",
    "Images",
    "SourceProblem",
]

SEG_NONE = 0
SEG_POLYGON = 1
SEG_RLE = 2

I32 = npt.NDArray[np.int32]
I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
B = npt.NDArray[np.bool_]
Obj = npt.NDArray[np.object_]


def _empty_obj(n: int = 0) -> Obj:
    return np.empty(n, dtype=object)


@dataclass(frozen=True, kw_only=True, eq=False)
class Images:
    """One row per image: file name (the cross-file key), size, source id and line."""

    id: I64
    file_name: Obj
    width: F64
    height: F64
    line: I32
    # False where the source id is not an exact 64-bit integer (missing, 1.0, 2**70):
    # such a row is never joined and never a duplicate; the reader reports it as a
    # source problem. None: every id is valid.
    id_valid: B | None = None

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @classmethod
    def empty(cls) -> Images:
        return cls(
            id=np.empty(0, np.int64),
            file_name=_empty_obj(),
            width=np.empty(0, np.float64),
            height=np.empty(0, np.float64),
            line=np.empty(0, np.int32),
        )

    def index_by_name(self) -> dict[str, int]:
        """File name -> row; the join key between a batch and its golden file."""
        return {str(n): i for i, n in enumerate(self.file_name)}


@dataclass(frozen=True, kw_only=True, eq=False)
class Categories:
    """One row per class. ``keypoints`` holds each class's keypoint names (may be empty)."""

    id: I64
    name: Obj
    supercategory: Obj
    keypoints: tuple[tuple[str, ...], ...]
    line: I32
    # per class: 0-based keypoint index pairs joined by an edge (COCO ``skeleton`` is
    # 1-based in the file; readers convert). Empty when no class has one.
    skeleton: tuple[tuple[tuple[int, int], ...], ...] = ()
    # as Images.id_valid
    id_valid: B | None = None

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @classmethod
    def empty(cls) -> Categories:
        return cls(
            id=np.empty(0, np.int64),
            name=_empty_obj(),
            supercategory=_empty_obj(),
            keypoints=(),
            line=np.empty(0, np.int32),
        )

    def index_by_name(self) -> dict[str, int]:
        return {str(n): i for i, n in enumerate(self.name)}


@dataclass(frozen=True, kw_only=True, eq=False)
class Annotations:
    """One row per annotation (object). See the module docstring for conventions."""

    id: I64
    image: I32
    category: I32
    image_id: I64
    category_id: I64
    bbox: F64  # (N, 4) x, y, width, height; nan when absent
    area: F64
    iscrowd: B
    score: F64
    annotator: I32  # index into Batch.annotators, -1 unknown
    line: I32  # 1-based line of the annotation's opening brace / element
    file: I32  # index into Batch.files (folder formats have many source files)
    seg_kind: npt.NDArray[np.int8]
    poly_xy: F64
    ring_offsets: I64
    ann_ring_offsets: I64
    rle: Obj  # dict {"size": [h, w], "counts": str | list[int]} or None
    keypoints: F64  # flat (x, y, v) triples of all annotations
    kp_offsets: I64  # (N+1) in triples (a length that is not a multiple of 3 is a schema problem, truncated here)
    num_keypoints: I32  # -1 absent
    # Optional per-format facts (None when the format has none). ``rotation``: degrees,
    # clockwise in image coordinates (y down) about the box centre; ``bbox`` is then the
    # unrotated box. ``attributes``: a dict per row (CVAT/VOC flags such as occluded,
    # difficult, truncated, z_order, free attributes) or None.
    rotation: F64 | None = None
    attributes: Obj | None = None
    # Which ids the source states exactly (see Images.id_valid). ``image_id_valid`` /
    # ``category_id_valid``: True where the row names an image / class by an exact id,
    # so an unresolved one dangles whatever its value (-5 included). None (formats that
    # join by name): a reference is made wherever the id column is >= 0.
    id_valid: B | None = None
    image_id_valid: B | None = None
    category_id_valid: B | None = None

    def __len__(self) -> int:
        return int(self.id.shape[0])

    @classmethod
    def empty(cls) -> Annotations:
        return cls(
            id=np.empty(0, np.int64),
            image=np.empty(0, np.int32),
            category=np.empty(0, np.int32),
            image_id=np.empty(0, np.int64),
            category_id=np.empty(0, np.int64),
            bbox=np.empty((0, 4), np.float64),
            area=np.empty(0, np.float64),
            iscrowd=np.empty(0, np.bool_),
            score=np.empty(0, np.float64),
            annotator=np.empty(0, np.int32),
            line=np.empty(0, np.int32),
            file=np.empty(0, np.int32),
            seg_kind=np.empty(0, np.int8),
            poly_xy=np.empty(0, np.float64),
            ring_offsets=np.zeros(1, np.int64),
            ann_ring_offsets=np.zeros(1, np.int64),
            rle=_empty_obj(),
            keypoints=np.empty(0, np.float64),
            kp_offsets=np.zeros(1, np.int64),
            num_keypoints=np.empty(0, np.int32),
        )

    def rings(self, i: int) -> list[F64]:
        """The raw coordinate lists of annotation ``i``'s polygon rings (for messages/tests)."""
        r0, r1 = int(self.ann_ring_offsets[i]), int(self.ann_ring_offsets[i + 1])
        return [self.poly_xy[self.ring_offsets[r] : self.ring_offsets[r + 1]] for r in range(r0, r1)]

    def keypoints_of(self, i: int) -> F64:
        """Annotation ``i``'s keypoints as a (K, 3) array of x, y, visibility."""
        return self.keypoints[3 * int(self.kp_offsets[i]) : 3 * int(self.kp_offsets[i + 1])].reshape(-1, 3)


@dataclass(frozen=True, kw_only=True, slots=True)
class SourceProblem:
    """Something a reader saw in the source that is wrong, in the source's own terms.

    Why a model-level type: readers must not know gate internals. A reader records
    what it could not convert cleanly (a wrong JSON type, a YOLO row with 6 fields, an
    XML attribute that is not a number) as a ``SourceProblem``; the schema gate turns
    each into a finding. ``rule`` is a short stable name (``schema``, ``syntax``,
    ``encoding``, ``missing_image``...). ``pointer`` is a JSON pointer, an XPath-like
    locator or ``None``; ``file`` is the file inside a folder batch (``None``: the batch
    path itself); ``line`` is 1-based.
    """

    rule: str
    message: str
    file: str | None = None
    line: int | None = None
    pointer: str | None = None
    annotation_id: int | None = None
    image: str | None = None
    category: str | None = None
    severity: str = "error"


@dataclass(frozen=True, kw_only=True, eq=False)
class Batch:
    """One export of labels, in columns, with where each row came from.

    ``problems`` holds what the reader found while converting (wrong JSON types,
    dangling references): they are schema findings, reported by the schema gate,
    so a reader never has to raise on a bad annotation.
    """

    path: Path
    format: str
    images: Images
    categories: Categories
    annotations: Annotations
    files: tuple[str, ...]
    annotators: tuple[str, ...] = ()
    sha256: str = ""
    problems: list[SourceProblem] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    # How to point at annotation row i in the source: ``pointer_base + str(i)`` (COCO's
    # ``/annotations/``), or a per-row locator column (XML formats), or nothing.
    pointer_base: str | None = "/annotations/"
    row_pointers: Obj | None = None
    # Set when the file is of a known kind that carries no instances to gate (COCO
    # captions or panoptic): every gate skips with this reason instead of failing.
    skip_reason: str | None = None
    # The rows are model predictions (a COCO results list): their ids are not keys,
    # and images/categories come from another file when one was given (empty tables
    # otherwise, in which case references cannot be checked here).
    predictions: bool = False

    def pointer(self, i: int) -> str | None:
        """JSON pointer (or format-specific locator) of annotation row ``i``, if any."""
        if self.row_pointers is not None:
            v = self.row_pointers[i]
            return None if v is None else str(v)
        return None if self.pointer_base is None else f"{self.pointer_base}{i}"

    def image_name(self, i: int) -> str | None:
        """File name of annotation ``i``'s image, or None when its image dangles."""
        k = int(self.annotations.image[i])
        return str(self.images.file_name[k]) if k >= 0 else None

    def category_name(self, i: int) -> str | None:
        k = int(self.annotations.category[i])
        return str(self.categories.name[k]) if k >= 0 else None

    def annotator_name(self, i: int) -> str | None:
        k = int(self.annotations.annotator[i])
        return self.annotators[k] if k >= 0 else None

    def source_file(self, i: int) -> str:
        return self.files[int(self.annotations.file[i])] if self.files else str(self.path)
