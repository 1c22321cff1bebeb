"""Image sizes from file headers, as displayed (EXIF orientation applied), never decoding pixels.

Why: formats that store normalised coordinates (YOLO) need each image's width and
height, and those refer to the image as displayed: a JPEG stored 15×10 with EXIF
orientation 6 is shown (and trained on, by OpenCV and Ultralytics) as 10×15. Reading
pixels to learn that would make a label gate as slow as a data loader and hand
every image to a C decoder.

Why ``imagesize`` and not Pillow: ``imagesize`` is pure Python, reads only headers
(JPEG SOF and APP1/EXIF, PNG IHDR, GIF, BMP, TIFF, WebP, HEIF/AVIF), applies EXIF
orientation itself (2.0+) and has no dependencies. Pillow's ``Image.open`` is lazy
too, but it refuses headers that claim more than ``MAX_IMAGE_PIXELS`` (a global we
would have to change), reads PNG EXIF by decoding the whole image, and brings C
decoders into a code path that only needs two integers. A hostile header claiming
10**9 × 10**9 pixels comes back here as two numbers; nothing is allocated for it.

Bounds: the file is wrapped so that at most :data:`MAX_READ_BYTES` bytes and
:data:`MAX_READ_CALLS` read calls are spent on one header (``imagesize`` scans JPEG
markers byte by byte when a file has garbage between segments); SVG and unknown
formats are refused before ``imagesize`` sees them (SVG would go through an XML
parser and has no pixel size).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import imagesize

__all__ = ["IMAGE_SUFFIXES", "ImageSize", "ImageSizeError", "read_image_size"]

MAX_READ_BYTES = 8 << 20
MAX_READ_CALLS = 200_000
# Suffixes Ultralytics accepts as images (IMG_FORMATS), plus the usual upper-case variants via lower().
IMAGE_SUFFIXES = frozenset(
    {".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".gif", ".heic", ".heif", ".avif"}
)
_RASTER_MAGIC = (
    b"\xff\xd8",  # JPEG / MPO
    b"\x89PNG\r\n\x1a\n",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",  # TIFF / DNG little-endian
    b"MM\x00*",  # TIFF big-endian
    b"II+\x00",  # BigTIFF
)


class ImageSizeError(ValueError):
    """The file is not an image whose size can be read from its header."""


@dataclass(frozen=True, kw_only=True, slots=True)
class ImageSize:
    """Displayed width and height in pixels, and the EXIF orientation (1 when absent)."""

    width: int
    height: int
    orientation: int = 1


class _Budget(io.RawIOBase):
    """A read-only file view that stops a header parser after a fixed amount of work."""

    def __init__(self, fh: io.BufferedReader) -> None:
        super().__init__()
        self._fh = fh
        self._bytes = 0
        self._calls = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1) -> bytes:
        self._calls += 1
        if self._calls > MAX_READ_CALLS:
            raise ImageSizeError("header scan exceeded its read budget")
        n = MAX_READ_BYTES - self._bytes if size is None or size < 0 else min(size, MAX_READ_BYTES - self._bytes)
        if n <= 0 and (size is None or size != 0):
            raise ImageSizeError("header scan exceeded its byte budget")
        data = self._fh.read(n)
        self._bytes += len(data)
        return data

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._fh.seek(offset, whence)

    def tell(self) -> int:
        return self._fh.tell()


def _looks_raster(head: bytes) -> bool:
    if head.startswith(_RASTER_MAGIC):
        return True
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return True
    return head[4:8] == b"ftyp"  # HEIF / AVIF


def read_image_size(path: Path) -> ImageSize:
    """Width and height of ``path`` as displayed, from its header alone.

    Raises :class:`ImageSizeError` (with a reason) for anything that is not a raster
    image with a readable, positive size, and ``OSError`` when the file cannot be opened.
    """
    with open(path, "rb") as fh:
        head = fh.read(32)
        if not _looks_raster(head):
            raise ImageSizeError("not a raster image (unknown header)")
        fh.seek(0)
        try:
            info = imagesize.get_info(_Budget(fh), dpi=False, colors=False, channels=False)
        except ImageSizeError:
            raise
        except Exception as e:  # a malformed header: imagesize raises ValueError, struct.error, ...
            raise ImageSizeError(f"unreadable image header ({type(e).__name__}: {e})") from None
    if info.width <= 0 or info.height <= 0:
        raise ImageSizeError("image header gives no size")
    orientation = info.rotation if 1 <= info.rotation <= 8 else 1
    return ImageSize(width=int(info.width), height=int(info.height), orientation=orientation)
