"""A small typed model builder for tests: Batches from Python objects or COCO dicts.

Why: tests of matching and the golden/confusion/agreement gates must exercise the
gates alone, independent of the COCO reader's quirks, without hand-filling twenty
NumPy columns. Both helpers go through :class:`annogate.formats._builder.BatchBuilder`,
the same builder the row-at-a-time readers use, so the columns are built one way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from annogate.formats._builder import BatchBuilder
from annogate.model import Batch

__all__ = ["Obj", "coco_batch", "make_batch"]


@dataclass(frozen=True, kw_only=True)
class Obj:
    """One object: where, what, and its geometry (any of box, polygon rings, RLE, keypoints)."""

    image: str
    category: str
    bbox: Sequence[float] | None = None
    polygons: Sequence[Sequence[float]] = ()
    rle: Mapping[str, Any] | None = None
    keypoints: Sequence[float] | None = None
    area: float | None = None
    iscrowd: bool = False
    score: float | None = None
    annotator: str | None = None
    id: int | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)


def make_batch(
    objects: Sequence[Obj],
    *,
    images: Mapping[str, tuple[float, float]],
    categories: Sequence[str] = (),
    keypoints: Mapping[str, Sequence[str]] | None = None,
    path: str = "batch.json",
) -> Batch:
    """A Batch of ``objects`` on ``images`` (file name -> (width, height)); classes in ``categories`` order first.

    ``area`` defaults to the box area (as COCO exporters write it) when a box is given.
    """
    b = BatchBuilder(path=Path(path), format="coco")
    for name, (w, h) in images.items():
        b.add_image(name, width=w, height=h)
    for c in categories:
        b.add_category(c, keypoints=tuple((keypoints or {}).get(c, ())))
    for k, o in enumerate(objects):
        area = o.area
        if area is None and o.bbox is not None:
            area = float(o.bbox[2]) * float(o.bbox[3])
        b.add_annotation(
            image=o.image,
            category=o.category,
            file=path,
            line=k + 1,
            bbox=o.bbox,
            polygons=o.polygons,
            rle=o.rle,
            keypoints=o.keypoints,
            area=area,
            iscrowd=o.iscrowd,
            score=o.score,
            annotator=o.annotator,
            id=k + 1 if o.id is None else o.id,
        )
    return b.build(pointer_base="/annotations/")


def coco_batch(data: Any, *, images_from: Batch | None = None, path: str = "batch.json") -> Batch:
    """A Batch from a COCO dict, or from a results list resolved against ``images_from``.

    Image and class ids are resolved here (the builder keys by name); annotation ids
    default to 1-based positions, as ``COCO.loadRes`` numbers results. A missing
    ``area`` stays unknown (nan); ``num_keypoints`` is taken as the file says.
    """
    b = BatchBuilder(path=Path(path), format="coco")
    if isinstance(data, list):
        assert images_from is not None
        anns = data
        img_name = {int(i): str(n) for i, n in zip(images_from.images.id, images_from.images.file_name, strict=True)}
        cat_name = {int(i): str(n) for i, n in zip(images_from.categories.id, images_from.categories.name, strict=True)}
        for n, w, h in zip(
            images_from.images.file_name, images_from.images.width, images_from.images.height, strict=True
        ):
            b.add_image(str(n), width=float(w), height=float(h))
        for n, kp in zip(images_from.categories.name, images_from.categories.keypoints, strict=True):
            b.add_category(str(n), keypoints=kp)
    else:
        anns = data.get("annotations", [])
        img_name = {int(i["id"]): str(i["file_name"]) for i in data.get("images", [])}
        cat_name = {int(c["id"]): str(c["name"]) for c in data.get("categories", [])}
        for i in data.get("images", []):
            b.add_image(str(i["file_name"]), width=i.get("width"), height=i.get("height"))
        for c in data.get("categories", []):
            b.add_category(str(c["name"]), keypoints=tuple(c.get("keypoints", ())))
    nk: list[int] = []
    for k, a in enumerate(anns):
        seg = a.get("segmentation")
        b.add_annotation(
            image=img_name.get(int(a["image_id"]), f"<dangling {a['image_id']}>"),
            category=cat_name.get(int(a["category_id"])),
            file=path,
            line=k + 1,
            bbox=a.get("bbox", [np.nan] * 4),
            polygons=seg if isinstance(seg, list) else (),
            rle=seg if isinstance(seg, dict) else None,
            keypoints=a.get("keypoints") or None,
            area=a.get("area"),
            iscrowd=bool(a.get("iscrowd", 0)),
            score=a.get("score"),
            id=int(a.get("id", k + 1)),
        )
        nk.append(int(a.get("num_keypoints", -1)))
    batch = b.build(pointer_base="/annotations/")
    # keep the file's ids (the builder numbers from 1), so results resolve against this batch
    img_ids = np.asarray(list(img_name), np.int64)
    cat_ids = np.asarray(list(cat_name), np.int64)
    ann = replace(
        batch.annotations,
        num_keypoints=np.asarray(nk, np.int32),
        image_id=np.asarray([int(a["image_id"]) for a in anns], np.int64),
        category_id=np.asarray([int(a["category_id"]) for a in anns], np.int64),
    )
    return replace(
        batch,
        images=replace(batch.images, id=img_ids[: len(batch.images)]),
        categories=replace(batch.categories, id=cat_ids[: len(batch.categories)]),
        annotations=ann,
    )
