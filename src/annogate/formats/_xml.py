"""Safe XML parsing with source lines, shared by the XML readers (Pascal VOC, CVAT).

Why a helper of our own: label XML comes from outside (annotation vendors, exports
pulled from servers) and is parsed inside a CI gate, so it must not be able to
expand entities (billion laughs), read local files or the network (external
entities), exhaust memory (one 100 MB attribute or text run) or blow the stack of
whatever walks the tree (100k-deep nesting). And every finding must name the line
of the element it is about, which ``xml.etree`` does not keep.

So: :func:`parse_xml` drives defusedxml's ``DefusedXMLParser`` (expat) with
``forbid_dtd``, ``forbid_entities`` and ``forbid_external`` all on, in 64 KiB
chunks, under :class:`XMLLimits` (file size, nesting depth, element count, and the
longest single token: a start tag with its attributes, or a text run), with a tree
builder that stamps each element with the 1-based line of its start tag
(``element.sourceline``, as lxml names it). Anything wrong raises one exception
type, :class:`XMLProblem`, carrying a stable ``rule`` and the line and column; a
reader turns it into a ``SourceProblem`` (one bad file in a folder) or a
``LoadError`` (the whole batch is that file) with :meth:`XMLProblem.to_load_error`.
"""

from __future__ import annotations

import codecs
import os
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from defusedxml import DTDForbidden, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import DefusedXMLParser

if TYPE_CHECKING:
    from annogate.formats import LoadError

__all__ = [
    "DEFAULT_LIMITS",
    "XElement",
    "XMLLimits",
    "XMLProblem",
    "child_text",
    "line_of",
    "parse_xml",
]

_CHUNK = 1 << 16


class XElement(ET.Element):
    """An ``ElementTree`` element that knows the 1-based line of its start tag."""

    sourceline: int = 0


def line_of(element: ET.Element | None) -> int:
    """1-based line of ``element``'s start tag (0 when unknown, e.g. ``None``)."""
    return int(getattr(element, "sourceline", 0)) if element is not None else 0


def child_text(element: ET.Element, tag: str) -> tuple[str | None, int]:
    """Stripped text of the first child ``tag`` and its line; ``(None, line of element)`` if absent.

    Why: readers quote the line of the field that is wrong (``<xmin>`` rather than
    its ``<object>``), and fall back to the parent's line when the field is missing.
    """
    child = element.find(tag)
    if child is None:
        return None, line_of(element)
    return (child.text or "").strip(), line_of(child)


@dataclass(frozen=True, kw_only=True)
class XMLLimits:
    """Caps that keep a hostile file's cost bounded (bytes of memory, seconds of time).

    ``max_token`` bounds the longest single start tag (attributes included) and the
    longest text run of one element; ``max_depth`` the nesting (label formats use
    fewer than 10 levels); ``max_elements`` the tree size; ``max_bytes`` the file.
    """

    max_bytes: int = 1 << 30
    max_depth: int = 64
    max_elements: int = 20_000_000
    max_token: int = 8 << 20


DEFAULT_LIMITS = XMLLimits()


class XMLProblem(ValueError):
    """An XML file that cannot be read safely or at all.

    ``rule`` is one of ``syntax`` (not well-formed, truncated), ``encoding`` (bytes
    that are not the declared/default encoding), ``xml_unsafe`` (a DTD, entity
    declaration or external reference: refused, never expanded) or ``limit`` (a
    cap of :class:`XMLLimits` exceeded). ``line``/``column`` are 1-based, or None.
    """

    def __init__(self, msg: str, *, rule: str, line: int | None = None, column: int | None = None) -> None:
        super().__init__(msg if line is None else f"line {line}: {msg}")
        self.msg = msg
        self.rule = rule
        self.line = line
        self.column = column

    def to_load_error(self, path: Path) -> LoadError:
        """The same problem as the ``LoadError`` a single-file reader raises."""
        from annogate.formats import LoadError

        return LoadError(f"{self.msg} [{self.rule}]", path=path, line=self.line, column=self.column)


class _Builder:
    """TreeBuilder wrapper: stamps lines, enforces depth, element and text caps.

    Also records the byte offset of the last parser event, so that the feed loop can
    tell when expat has buffered more than ``max_token`` bytes without producing any
    event (a giant attribute, tag or comment being accumulated).
    """

    def __init__(self, limits: XMLLimits) -> None:
        self._tb = ET.TreeBuilder(element_factory=XElement)
        self._limits = limits
        self.expat: Any = None
        self.depth = 0
        self.elements = 0
        self.text_run = 0
        self.last_event_byte = 0

    def _where(self) -> tuple[int, int]:
        p = self.expat
        return int(p.CurrentLineNumber), int(p.CurrentColumnNumber) + 1

    def start(self, tag: str, attrs: dict[str, str]) -> ET.Element:
        if "}" in tag:  # expat's "uri}local" -> ElementTree's "{uri}local"
            tag = "{" + tag
        p = self.expat
        self.last_event_byte = int(p.CurrentByteIndex)
        self.depth += 1
        self.elements += 1
        self.text_run = 0
        line, col = self._where()
        if self.depth > self._limits.max_depth:
            raise XMLProblem(
                f"elements nested deeper than {self._limits.max_depth} levels", rule="limit", line=line, column=col
            )
        if self.elements > self._limits.max_elements:
            raise XMLProblem(f"more than {self._limits.max_elements} elements", rule="limit", line=line, column=col)
        el = self._tb.start(tag, attrs)
        el.sourceline = line  # type: ignore[attr-defined]
        return el

    def end(self, tag: str) -> ET.Element:
        if "}" in tag:
            tag = "{" + tag
        self.last_event_byte = int(self.expat.CurrentByteIndex)
        self.depth -= 1
        self.text_run = 0
        return self._tb.end(tag)

    def data(self, text: str) -> None:
        self.last_event_byte = int(self.expat.CurrentByteIndex)
        self.text_run += len(text)
        if self.text_run > self._limits.max_token:
            line, col = self._where()
            raise XMLProblem(
                f"a text run longer than {self._limits.max_token} characters", rule="limit", line=line, column=col
            )
        self._tb.data(text)

    def comment(self, text: str) -> None:
        self.last_event_byte = int(self.expat.CurrentByteIndex)

    def pi(self, target: str, text: str | None = None) -> None:
        self.last_event_byte = int(self.expat.CurrentByteIndex)

    def close(self) -> ET.Element:
        return self._tb.close()


def _chunks(source: Path | bytes, limits: XMLLimits, lag: Callable[[], int] = lambda: 0) -> Iterator[bytes]:
    """The document in blocks of at least 64 KiB, growing with ``lag()`` (bytes fed since the last event).

    Why growing: expat re-scans an incomplete token from its start on every feed, so
    a huge attribute fed in fixed blocks costs quadratic time; doubling the block
    while no event arrives keeps the total work linear.
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        if len(data) > limits.max_bytes:
            raise XMLProblem(f"larger than {limits.max_bytes} bytes", rule="limit")
        i = 0
        while i < len(data):
            n = max(_CHUNK, lag())
            yield data[i : i + n]
            i += n
        return
    size = os.stat(source).st_size
    if size > limits.max_bytes:
        raise XMLProblem(f"file of {size} bytes, larger than the {limits.max_bytes}-byte limit", rule="limit")
    with open(source, "rb") as fh:
        while block := fh.read(max(_CHUNK, lag())):
            yield block


def _declares_other_encoding(head: bytes) -> bool:
    """True when the document says it is not UTF-8 (BOM or ``encoding=`` in the declaration)."""
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE, b"\x00<", b"<\x00")):
        return True
    head = head.removeprefix(codecs.BOM_UTF8)
    if head.startswith(b"<?xml"):
        decl = head[: head.find(b"?>") + 2].lower()
        if b"encoding" in decl and not any(e in decl for e in (b"utf-8", b"utf8")):
            return True
    return False


def _first_bad_utf8(source: Path | bytes, limits: XMLLimits) -> int | None:
    """Byte offset of the first invalid UTF-8 sequence, or None (bounded: streams chunks)."""
    dec = codecs.getincrementaldecoder("utf-8")()
    offset = 0
    try:
        for block in _chunks(source, limits):
            dec.decode(block)
            offset += len(block)
        dec.decode(b"", final=True)
    except UnicodeDecodeError as e:
        return offset + int(e.start)
    return None


def parse_xml(source: Path | bytes, *, limits: XMLLimits = DEFAULT_LIMITS) -> XElement:
    """Parse ``source`` (a path or the bytes of a document) safely; returns the root element.

    Every element of the tree is an :class:`XElement` with ``sourceline`` set. Raises
    :class:`XMLProblem` for anything that is not a safe, well-formed document within
    ``limits``, and ``OSError`` when the file cannot be opened.
    """
    builder = _Builder(limits)
    parser = DefusedXMLParser(target=builder, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    expat = parser.parser  # type: ignore[attr-defined]
    builder.expat = expat
    # Straight from expat to the builder (ElementTree's pure-Python relay per event
    # doubles the cost); defusedxml's DTD/entity/external handlers stay installed.
    expat.ordered_attributes = False
    expat.StartElementHandler = builder.start
    expat.EndElementHandler = builder.end
    fed = 0
    head = b""

    def lag() -> int:
        return fed - builder.last_event_byte

    try:
        for block in _chunks(source, limits, lag):
            if len(head) < 512:
                head += block[:512]
            parser.feed(block)
            fed += len(block)
            if fed - builder.last_event_byte > limits.max_token:
                raise XMLProblem(
                    f"a single tag, attribute value or comment longer than {limits.max_token} bytes",
                    rule="limit",
                    line=int(expat.CurrentLineNumber),
                )
        root = parser.close()
    except DTDForbidden:
        raise XMLProblem(
            "a document type declaration (DTD) is not accepted: DTDs carry entity definitions "
            "(entity-expansion bombs, external files) and label formats never need one",
            rule="xml_unsafe",
            line=int(expat.CurrentLineNumber),
        ) from None
    except EntitiesForbidden as e:
        raise XMLProblem(
            f"entity declaration {e.name!r} is not accepted (no entity expansion)",
            rule="xml_unsafe",
            line=int(expat.CurrentLineNumber),
        ) from None
    except ExternalReferenceForbidden as e:
        raise XMLProblem(
            f"external reference {e.sysid!r} is not followed", rule="xml_unsafe", line=int(expat.CurrentLineNumber)
        ) from None
    except ET.ParseError as e:
        line, col = e.position
        msg = str(e).split(":", 1)[0] if ": line" in str(e) else str(e)
        if not _declares_other_encoding(head):
            bad = _first_bad_utf8(source, limits)
            if bad is not None:
                raise XMLProblem(
                    f"not valid UTF-8 (byte offset {bad}) and no other encoding declared",
                    rule="encoding",
                    line=int(line),
                    column=int(col) + 1,
                ) from None
        raise XMLProblem(f"not well-formed XML: {msg}", rule="syntax", line=int(line), column=int(col) + 1) from None
    except RecursionError:
        raise XMLProblem("nesting too deep", rule="limit") from None
    if not isinstance(root, XElement):  # pragma: no cover - the builder only makes XElements
        raise XMLProblem("no root element", rule="syntax")
    return root
