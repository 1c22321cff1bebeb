"""Thumbnails of findings for the HTML report: the batch object (and its golden counterpart) drawn with Pillow.

Why a crop around the object rather than the whole image: a wrong 20-pixel box on a
4000-pixel photo is invisible in a 256-pixel thumbnail. The crop is the union of the
batch object and its golden counterpart with a margin, clamped to the image.

Images are hostile input too: the file name comes from the label file, so it is
resolved under ``images_root`` and refused if it leaves it (``../``, absolute paths,
symlinks out); the pixel count is read from the header before anything is decoded,
and an image above :data:`MAX_PIXELS` (a decompression bomb, or just a 100 MP scan)
is not decoded: the geometry is then drawn on a blank canvas of the image's size,
as it is when the image is not reachable at all.
"""

from __future__ import annotations

import base64
import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from annogate.model import Batch

__all__ = ["MAX_PIXELS", "THUMB", "Shape", "Thumbnail", "open_image", "render_thumbnail", "shape_of"]

#: Longest side of a thumbnail, in pixels.
THUMB = 256
#: Largest image (width × height) that is decoded; larger ones get a blank canvas.
MAX_PIXELS = 50_000_000

BATCH_COLOUR = (192, 57, 43)  # red: what the batch says
GOLDEN_COLOUR = (46, 125, 91)  # green: what the golden set says


@dataclass(frozen=True, kw_only=True)
class Shape:
    """The drawable geometry of one object, in image pixels."""

    bbox: tuple[float, float, float, float] | None  # x, y, w, h
    rings: tuple[tuple[tuple[float, float], ...], ...] = ()
    keypoints: tuple[tuple[float, float], ...] = ()

    def extent(self) -> tuple[float, float, float, float] | None:
        """x0, y0, x1, y1 of everything finite in the shape (None if nothing is)."""
        xs: list[float] = []
        ys: list[float] = []
        if self.bbox is not None:
            x, y, w, h = self.bbox
            xs += [x, x + w]
            ys += [y, y + h]
        for ring in self.rings:
            xs += [p[0] for p in ring]
            ys += [p[1] for p in ring]
        xs += [p[0] for p in self.keypoints]
        ys += [p[1] for p in self.keypoints]
        pairs = [(a, b) for a, b in zip(xs, ys, strict=False) if math.isfinite(a) and math.isfinite(b)]
        if not pairs:
            return None
        return (min(a for a, _ in pairs), min(b for _, b in pairs), max(a for a, _ in pairs), max(b for _, b in pairs))


@dataclass(frozen=True, kw_only=True)
class Thumbnail:
    """A rendered thumbnail: a PNG data URI and whether the real image is underneath."""

    data_uri: str
    on_image: bool
    width: int
    height: int


#: Most polygon vertices drawn per object (a million-vertex polygon is drawn decimated).
MAX_VERTICES = 4096


def _finite(v: Any) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def shape_of(batch: Batch, i: int) -> Shape:
    """The geometry of annotation row ``i`` of ``batch``."""
    ann = batch.annotations
    b = [_finite(v) for v in ann.bbox[i]] if len(ann.bbox) > i else []
    bbox = (b[0], b[1], b[2], b[3]) if len(b) == 4 and all(v is not None for v in b) else None
    rings: list[tuple[tuple[float, float], ...]] = []
    for flat in ann.rings(i)[:64]:
        n = len(flat) // 2
        step = max(1, math.ceil(n / MAX_VERTICES))
        pts = tuple((float(flat[2 * k]), float(flat[2 * k + 1])) for k in range(0, n, step))
        rings.append(pts)
    kps: list[tuple[float, float]] = []
    if len(ann.kp_offsets) > i + 1:
        for x, y, v in ann.keypoints_of(i)[:512]:
            if v > 0:
                kps.append((float(x), float(y)))
    return Shape(bbox=bbox, rings=tuple(rings), keypoints=tuple(kps))  # type: ignore[arg-type]


def _inside(root: Path, name: str) -> Path | None:
    """``root / name`` if it is a regular file inside ``root`` after resolving links, else None."""
    if not name or "\x00" in name or os.path.isabs(name):
        return None
    try:
        base = root.resolve()
        target = (base / name).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if target != base and base not in target.parents:
        return None
    return target if target.is_file() else None


def open_image(root: Path | None, name: str | None, *, max_pixels: int = MAX_PIXELS) -> Any | None:
    """The image ``name`` under ``root``, opened lazily (header only), or None if unreachable or too big.

    ``Image.open`` reads the header only; the size is checked before any pixel is
    decoded, with Pillow's own bomb guard lowered to the same limit as a second line.
    """
    if root is None or not name:
        return None
    path = _inside(root, name)
    if path is None:
        return None
    from PIL import Image

    try:
        img = Image.open(path)
    except Exception:  # any unreadable or hostile file: fall back to the blank canvas
        return None
    w, h = img.size
    if w <= 0 or h <= 0 or w * h > max_pixels:
        img.close()
        return None
    return img


def _crop_box(shapes: list[Shape], width: float | None, height: float | None) -> tuple[float, float, float, float]:
    boxes = [e for s in shapes if (e := s.extent()) is not None]
    if not boxes:
        return (0.0, 0.0, width or 256.0, height or 256.0)
    x0 = min(b[0] for b in boxes)
    y0 = min(b[1] for b in boxes)
    x1 = max(b[2] for b in boxes)
    y1 = max(b[3] for b in boxes)
    side = max(x1 - x0, y1 - y0, 16.0)
    margin = side * 0.6
    x0, y0, x1, y1 = x0 - margin, y0 - margin, x1 + margin, y1 + margin
    if width and height:
        x0, y0 = max(x0, 0.0), max(y0, 0.0)
        x1, y1 = min(x1, width), min(y1, height)
        if x1 - x0 < 1 or y1 - y0 < 1:  # object entirely outside the image: show the whole image
            x0, y0, x1, y1 = 0.0, 0.0, width, height
    return (x0, y0, x1, y1)


def render_thumbnail(
    shape: Shape,
    golden: Shape | None,
    *,
    image_width: float | None,
    image_height: float | None,
    image: Any | None = None,
    size: int = THUMB,
) -> Thumbnail:
    """Draw ``shape`` (red) and ``golden`` (green, dashed-looking thin outline) on the image crop or a blank canvas."""
    from PIL import Image, ImageDraw

    if image is not None:
        image_width, image_height = float(image.size[0]), float(image.size[1])
    shapes = [shape] + ([golden] if golden is not None else [])
    x0, y0, x1, y1 = _crop_box(shapes, image_width, image_height)
    cw, ch = max(x1 - x0, 1.0), max(y1 - y0, 1.0)
    scale = size / max(cw, ch)
    out_w, out_h = max(1, round(cw * scale)), max(1, round(ch * scale))
    canvas = None
    if image is not None:
        try:
            image.draft("RGB", (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale))))
            fx, fy = image.size[0] / image_width, image.size[1] / image_height  # draft may shrink the image
            region = image.convert("RGB").crop((round(x0 * fx), round(y0 * fy), round(x1 * fx), round(y1 * fy)))
            canvas = region.resize((out_w, out_h))
        except Exception:  # a truncated or corrupt image body: blank canvas
            canvas = None
    on_image = canvas is not None
    if canvas is None:
        canvas = Image.new("RGB", (out_w, out_h), (246, 247, 249))
        draw = ImageDraw.Draw(canvas)
        if image_width and image_height:  # the image's frame, where it falls in the crop
            draw.rectangle(
                [(-x0) * scale, (-y0) * scale, (image_width - x0) * scale, (image_height - y0) * scale],
                outline=(180, 186, 194),
            )
    draw = ImageDraw.Draw(canvas)

    def pt(x: float, y: float) -> tuple[float, float]:
        return ((x - x0) * scale, (y - y0) * scale)

    def paint(s: Shape, colour: tuple[int, int, int], width: int) -> None:
        if s.bbox is not None:
            x, y, w, h = s.bbox
            a, b = pt(x, y)
            c, d = pt(x + w, y + h)
            draw.rectangle([min(a, c), min(b, d), max(a, c), max(b, d)], outline=colour, width=width)
        for ring in s.rings:
            if len(ring) >= 2:
                draw.line([pt(x, y) for x, y in (*ring, ring[0])], fill=colour, width=max(1, width - 1))
        for x, y in s.keypoints:
            px, py = pt(x, y)
            draw.ellipse([px - 2, py - 2, px + 2, py + 2], fill=colour)

    if golden is not None:
        paint(golden, GOLDEN_COLOUR, 2)
    paint(shape, BATCH_COLOUR, 2)
    buf = io.BytesIO()
    canvas.save(buf, format="PNG", optimize=True)
    uri = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    return Thumbnail(data_uri=uri, on_image=on_image, width=out_w, height=out_h)
