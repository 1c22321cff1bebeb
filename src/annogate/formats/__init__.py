"""Readers: each label format in one module, each producing the columnar model.

A format is a :class:`Format`: a name, a content sniffer (so a batch is recognised
by what it holds, not only by its extension) and a loader. Built-in formats are
listed here; third-party ones arrive through the ``annogate_formats`` hook.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import import_module
from pathlib import Path
from typing import Any

from annogate.formats._jsonscan import JSONError
from annogate.model import Batch

__all__ = ["BUILTIN_FORMAT_MODULES", "Format", "JSONError", "LoadError", "detect_format", "load_batch"]

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


def detect_format(path: Path, *, formats: Sequence[Format] = ()) -> Format | None:
    """The format of ``path`` by extension and content, or None if it is no label batch."""
    candidates = [f for f in _formats(formats) if path.suffix.lower() in f.suffixes]
    if not candidates or not path.is_file():
        return None
    try:
        with open(path, "rb") as fh:
            head = fh.read(SNIFF_BYTES)
    except OSError:
        return None
    for f in candidates:
        if f.sniff(path, head):
            return f
    return None


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
