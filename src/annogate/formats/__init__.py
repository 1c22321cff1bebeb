"""Readers: each label format in one module, each producing the columnar model.

A format is a :class:`Format`: a name, a content sniffer (so a batch is recognised
by what it holds, not only by its extension) and a loader. Built-in formats are
listed here; third-party ones arrive through the ``annogate_formats`` hook.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from annogate.formats._jsonscan import JSONError
from annogate.model import Batch

__all__ = [
    "BUILTIN_FORMAT_MODULES",
    "Format",
    "JSONError",
    "LoadError",
    "detect_format",
    "explain_unclaimed",
    "load_batch",
    "read_head",
    "sample_files",
]

SNIFF_BYTES = 1 << 20


class LoadError(ValueError):
    """A label file that cannot be read at all: names the file, and line/column if known."""

    def __init__(self, msg: str, *, path: Path, line: int | None = None, column: int | None = None) -> None:
        loc = f"{path}:{line}:{column}" if line is not None else str(path)
        super().__init__(f"{loc}: {msg}")
        self.msg = msg
        self.path = path
        self.line = line
        self.column = column


@dataclass(frozen=True, kw_only=True)
class Format:
    """A label format: how to recognise a batch of it and how to read one.

    The reader contract: ``load(path, **options) -> Batch`` returns the columnar model
    (build it with :class:`annogate.formats._builder.BatchBuilder` unless the format
    needs streaming), records everything wrong in the source as
    :class:`annogate.model.SourceProblem` in ``Batch.problems`` (never raising for a
    bad object), and raises :class:`LoadError` only when nothing can be read.
    ``sniff(path, head)`` decides by content: ``head`` is the file's first megabyte,
    or ``b""`` for a folder. ``folder=True`` formats are batches made of a directory
    (YOLO, Pascal VOC, LabelMe folders); their ``suffixes`` are those of the files
    inside that they read.
    """

    name: str
    suffixes: tuple[str, ...]
    sniff: Callable[[Path, bytes], bool]
    load: Callable[..., Batch]
    folder: bool = False


# One module per format, each exposing ``FORMAT``; detection tries them in this order.
BUILTIN_FORMAT_MODULES: tuple[str, ...] = ("coco", "voc", "cvat", "labelstudio", "yolo", "labelme")


def _builtin_formats() -> tuple[Format, ...]:
    return tuple(import_module(f"annogate.formats.{m}").FORMAT for m in BUILTIN_FORMAT_MODULES)


def _formats(formats: Sequence[Format] = ()) -> tuple[Format, ...]:
    """The formats to consider: those given (plugins included), else the built-in ones."""
    return tuple(formats) or _builtin_formats()


def read_head(path: Path, limit: int = SNIFF_BYTES) -> bytes | None:
    """The first ``limit`` bytes of a regular file, or None if ``path`` is anything else.

    Why not ``open(path)``: a FIFO blocks the session for ever and ``/dev/zero``
    never ends. The file is opened non-blocking and checked with ``fstat`` on the
    open descriptor, so a path swapped for a FIFO after a check is still refused.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0))
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return fh.read(limit)
    except OSError:
        return None
    finally:
        os.close(fd)


def sample_files(
    folder: Path,
    suffixes: Sequence[str],
    *,
    per_dir: int = 2,
    max_files: int = 32,
    max_entries: int = 4000,
    max_depth: int = 3,
) -> list[Path]:
    """A small sample of the files below ``folder`` with one of ``suffixes``, spread over its sub-folders.

    Why a sample and why spread: a folder sniffer must decide whether a folder *is*
    a dataset without reading it (it runs for every folder the collection visits),
    and a folder holding several batches (``examples/``) must show its mix: so the
    first ``per_dir`` files (sorted) of each folder, breadth first, at most
    ``max_depth`` levels down, ``max_entries`` directory entries looked at in all.
    Hidden entries and symlinked folders are skipped.
    """
    want = tuple(x.lower() for x in suffixes)
    out: list[Path] = []
    seen = 0
    level = [folder]
    for _ in range(max_depth + 1):
        nxt: list[Path] = []
        for d in level:
            try:
                with os.scandir(d) as it:
                    entries = []
                    for e in it:
                        seen += 1
                        if seen > max_entries:
                            break
                        entries.append(e)
            except OSError:
                continue
            entries.sort(key=lambda e: e.name)
            taken = 0
            for e in entries:
                if e.name.startswith("."):
                    continue
                try:
                    if e.is_dir(follow_symlinks=False):
                        nxt.append(Path(e.path))
                    elif taken < per_dir and e.name.lower().endswith(want) and e.is_file():
                        out.append(Path(e.path))
                        taken += 1
                        if len(out) >= max_files:
                            return out
                except OSError:
                    continue
            if seen > max_entries:
                return out
        level = nxt
    return out


def _sniff_file(path: Path, formats: Sequence[Format]) -> Format | None:
    candidates = [f for f in formats if path.suffix.lower() in f.suffixes]
    if not candidates:
        return None
    head = read_head(path)
    if head is None:
        return None
    for f in candidates:
        if f.sniff(path, head):
            return f
    return None


def detect_format(path: Path, *, formats: Sequence[Format] = ()) -> Format | None:
    """The format of ``path`` by extension and content, or None if it is no label batch.

    A folder is a batch when a folder format's sniffer claims it (``sniff(dir, b"")``)
    and none of a sample of its files (:func:`sample_files`) is a batch of another
    format on its own: a folder that mixes batches (``examples/``: a COCO file, a CVAT
    file, a VOC and a LabelMe folder) is not one batch of whichever sniffer asked
    first; its batches are collected one by one.
    """
    fmts = _formats(formats)
    if path.is_dir():
        for f in fmts:
            if f.folder and f.sniff(path, b"") and not _mixed(path, f, fmts):
                return f
        return None
    return _sniff_file(path, fmts)


def _mixed(folder: Path, fmt: Format, formats: Sequence[Format]) -> bool:
    suffixes = sorted({s for f in formats for s in f.suffixes})
    for p in sample_files(folder, suffixes):
        other = _sniff_file(p, formats)
        if other is not None and other.name != fmt.name:
            return True
    return False


#: What each built-in reader looks for, named in the message of a file no reader claims.
LOOKED_FOR: dict[str, str] = {
    "coco": (
        "COCO object (images, annotations, categories), COCO results array (image_id, category_id, "
        "bbox/segmentation, score), COCO captions/panoptic"
    ),
    "labelstudio": "Label Studio export (array of tasks with data and annotations/predictions)",
    "labelme": "LabelMe file (object with shapes and imagePath)",
    "voc": "Pascal VOC XML (root <annotation>)",
    "cvat": "CVAT for images 1.1 XML (root <annotations>)",
    "yolo": "YOLO label rows (class cx cy w h ...), data.yaml with names and train/val/path, obj.data",
}


def explain_unclaimed(path: Path, *, formats: Sequence[Format] = ()) -> str:
    """Why no reader claims ``path``: what the file is, and which shapes were looked for.

    For the failing item of a file in scope that is no batch: empty, whitespace,
    UTF-16, binary, not JSON/XML, or JSON/XML/text of no known label shape. Reads at
    most the first megabyte (parses only a file no larger than that).
    """
    fmts = _formats(formats)
    suffix = path.suffix.lower()
    wanted = [f for f in fmts if suffix in f.suffixes] or list(fmts)
    looked = "; ".join(dict.fromkeys(LOOKED_FOR.get(f.name, f"{f.name} batch") for f in wanted))
    try:
        st = os.stat(path)
    except OSError as e:
        return f"cannot read: {e.strerror or e}"
    if not stat.S_ISREG(st.st_mode):
        kind = "a FIFO" if stat.S_ISFIFO(st.st_mode) else "a device" if stat.S_ISCHR(st.st_mode) else "a special file"
        return f"{kind}, not a regular file: never read"
    head = read_head(path)
    if head is None:
        return "cannot read it as a regular file"
    if st.st_size == 0:
        return f"empty file (0 bytes): not a label batch; looked for: {looked}"
    if not head.strip():
        return f"only whitespace: not a label batch; looked for: {looked}"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (len(head) >= 4 and head[1:4:2] == b"\0\0" and head[0]):
        return "UTF-16 text: annogate reads UTF-8 label files (re-save it as UTF-8)"
    body = head.removeprefix(b"\xef\xbb\xbf")
    cut = len(head) == SNIFF_BYTES and st.st_size > SNIFF_BYTES
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        if not (cut and e.start >= len(body) - 4):  # a character cut by the 1 MB head is fine
            what = "binary data" if b"\0" in body[:4096] else "not UTF-8 text"
            return f"{what} (byte 0x{body[e.start]:02x} at offset {e.start}): not a label batch; looked for: {looked}"
        text = body[: e.start].decode("utf-8")
    start = text.lstrip()[:1]
    if suffix == ".json" or start in ("{", "["):
        return _explain_json(text, cut=cut, looked=looked)
    if suffix == ".xml" or start == "<":
        return _explain_xml(text, looked=looked)
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return f"text of no known label shape (first line {first[:80]!r}); looked for: {looked}"


def _explain_json(text: str, *, cut: bool, looked: str) -> str:
    if cut:
        kind = "object" if text.lstrip().startswith("{") else "array"
        return f"a JSON {kind} of no known label shape (first megabyte read); looked for: {looked}"
    try:
        doc = json.loads(text)
    except RecursionError:
        return f"JSON nested too deeply to be a label batch; looked for: {looked}"
    except ValueError as e:
        line, col = getattr(e, "lineno", None), getattr(e, "colno", None)
        where = f" at line {line}, column {col}" if line is not None else ""
        return f"not JSON: {getattr(e, 'msg', e)}{where}; looked for: {looked}"
    return f"JSON of no known label shape ({_json_shape(doc)}); looked for: {looked}"


def _json_shape(doc: Any) -> str:
    if isinstance(doc, dict):
        keys = ", ".join(repr(k)[:40] for k in list(doc)[:8])
        return f"an object with keys {keys}" + (", ..." if len(doc) > 8 else "") if doc else "an empty object"
    if isinstance(doc, list):
        if not doc:
            return "an empty array"
        kinds = sorted({type(v).__name__ for v in doc[:100]})
        names = {"int": "numbers", "float": "numbers", "str": "strings", "dict": "objects", "list": "arrays"}
        return "an array of " + " and ".join(dict.fromkeys(names.get(k, k) for k in kinds))
    return f"a bare {type(doc).__name__}"


def _explain_xml(text: str, *, looked: str) -> str:
    import re

    m = re.search(r"<([A-Za-z_][\w.:-]*)", re.sub(r"<\?.*?\?>|<!--.*?-->|<!DOCTYPE[^>]*>", "", text, flags=re.S))
    if m is None:
        return f"not XML (no element found); looked for: {looked}"
    return f"XML whose root element is <{m.group(1)[:60]}>: no known label shape; looked for: {looked}"


def load_batch(
    path: Path,
    *,
    format: str | None = None,
    formats: Sequence[Format] = (),
    **options: Any,
) -> Batch:
    """Read any supported label file into a :class:`Batch`.

    Raises :class:`LoadError` (never anything else for bad content) when the file
    cannot be read; content problems short of that are recorded in the batch.
    """
    path = Path(path)
    fmt: Format | None
    if format is not None:
        fmt = next((f for f in _formats(formats) if f.name == format), None)
        if fmt is None:
            raise LoadError(f"unknown format {format!r}", path=path)
    else:
        fmt = detect_format(path, formats=formats)
        if fmt is None:
            fmt = next((f for f in _formats(formats) if path.suffix.lower() in f.suffixes), None)
        if fmt is None:
            raise LoadError("not a supported label format", path=path)
    try:
        return fmt.load(path, **options)
    except JSONError as e:
        raise LoadError(e.msg, path=path, line=e.line, column=e.column) from None
    except (OSError, UnicodeDecodeError, RecursionError, MemoryError) as e:
        raise LoadError(f"{type(e).__name__}: {e}", path=path) from None
