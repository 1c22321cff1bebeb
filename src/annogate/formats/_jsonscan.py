"""Stream a large JSON document as chunks of its big top-level arrays.

Why not ``orjson.loads`` on the whole file: on a 540 MB COCO file it builds ~4.7 GB
of Python objects (and with the garbage collector on, spends most of its time
tracing them). Why not ijson: it is lean but about twice as slow. This module
finds the *structure* of the document with vectorised NumPy passes over raw
blocks (quotes, brackets, escapes: the first stage of simdjson, done with array
operations), then hands ``orjson.loads`` slices of a few thousand elements at a
time. Memory stays at one block plus one chunk of Python objects, and parsing
stays at orjson's speed.

The scanner never trusts the input: any structural error (truncation, stray
bracket, missing comma between elements) is raised as :class:`JSONError` carrying
the 1-based line and column, so callers can report it like a parser would.
"""

from __future__ import annotations

import hashlib
import os
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt
import orjson

__all__ = ["Chunk", "FileTooLarge", "JSONError", "Scan", "scan_json"]

_BLOCK = 16 << 20
_CHUNK_ELEMENTS = 8192

_LUT = np.zeros(256, np.int8)
_LUT[ord("{")] = 1
_LUT[ord("[")] = 1
_LUT[ord("}")] = -1
_LUT[ord("]")] = -1
_WS = b" \t\r\n"
_ISWS = np.zeros(256, bool)
_ISWS[list(_WS)] = True
# Non-whitespace bytes remembered before a value, to read its key: enough for any
# streamed key even with every character written as a \uXXXX escape.
_KEY_TAIL = 160


class FileTooLarge(ValueError):
    """The file is larger than the caller's cap (raised before anything is read)."""

    def __init__(self, *, path: Path, size: int, limit: int) -> None:
        super().__init__(f"{path}: {size:,} bytes, over the limit of {limit:,} bytes")
        self.path = path
        self.size = size
        self.limit = limit


class JSONError(ValueError):
    """A syntax error at a 1-based line and column of the file."""

    def __init__(self, msg: str, *, path: Path, line: int, column: int) -> None:
        super().__init__(f"{path}:{line}:{column}: {msg}")
        self.msg = msg
        self.path = path
        self.line = line
        self.column = column


@dataclass(kw_only=True)
class Chunk:
    """Consecutive elements of one big array, already parsed.

    ``key`` is the top-level key owning the array (``None`` when the root itself is
    the array, as in a COCO results file); ``first`` is the index of ``items[0]``
    within that array; ``lines`` the 1-based line of each element's opening
    bracket (or of the chunk start for scalar elements).
    """

    key: str | None
    first: int
    items: list[Any]
    lines: npt.NDArray[np.int64]


@dataclass(kw_only=True)
class Scan:
    """What remains after the big arrays were streamed: the document's skeleton."""

    skeleton: Any = None
    sha256: str = ""
    size: int = 0
    counts: dict[str | None, int] = field(default_factory=dict)
    # top-level keys written more than once (a JSON parser keeps only the last value)
    duplicate_keys: tuple[str, ...] = ()


def _line_col(path: Path, offset: int) -> tuple[int, int]:
    """Line and column of a byte offset; re-reads the prefix block by block (error path only,
    so an error deep in a huge file never loads the file whole)."""
    line, line_start, done = 1, 0, 0
    with open(path, "rb") as f:
        while done < offset:
            block = f.read(min(_BLOCK, offset - done))
            if not block:
                break
            n = block.count(b"\n")
            if n:
                line += n
                line_start = done + block.rfind(b"\n") + 1
            done += len(block)
    return line, offset - line_start + 1


def _unescaped_quotes(arr: npt.NDArray[np.uint8], carry_bs: int = 0) -> npt.NDArray[np.int64]:
    """Positions of the quotes in ``arr`` that are not escaped by a backslash.

    ``carry_bs`` is the number of backslashes that ended the previous block. A quote
    is escaped when preceded by an odd run of backslashes: rare in label files, so
    those few quotes are resolved in Python.
    """
    quotes = np.flatnonzero(arr == 34)
    if quotes.size:
        suspicious = np.flatnonzero(arr[np.maximum(quotes - 1, 0)] == 92)
        keep = np.ones(quotes.size, bool)
        for k in suspicious.tolist():
            j = int(quotes[k]) - 1
            run = 0
            while j >= 0 and arr[j] == 92:
                run += 1
                j -= 1
            if j < 0:
                run += carry_bs
            keep[k] = run % 2 == 0
        if quotes[0] == 0 and carry_bs % 2 == 1:
            keep[0] = False
        quotes = quotes[keep]
    return quotes


def _trailing_backslashes(arr: npt.NDArray[np.uint8]) -> int:
    """How many backslashes end ``arr``; searches backwards in growing windows (no block copy)."""
    w = 64
    while True:
        lo = max(0, arr.size - w)
        other = np.flatnonzero(arr[lo:] != 92)
        if other.size:
            return int(arr.size - 1 - (lo + int(other[-1])))
        if lo == 0:
            return int(arr.size)
        w *= 8


def _nonws_before(arr: npt.NDArray[np.uint8], end: int, k: int) -> npt.NDArray[np.int64]:
    """Positions of the last ``k`` non-whitespace bytes of ``arr[:end]`` (fewer at the start).

    Searches backwards in growing windows, so a value preceded by megabytes of
    whitespace costs one pass over that whitespace, and the usual case a few bytes.
    """
    w = 4 * k
    while True:
        lo = max(0, end - w)
        idx = np.flatnonzero(~_ISWS[arr[lo:end]]) + lo
        if idx.size >= k or lo == 0:
            return idx[-k:].astype(np.int64)
        w *= 4


def _key_from_tail(pos: npt.NDArray[np.int64], tail: bytes) -> str | None:
    """The decoded object key that ``tail`` ends with (``"key" :``), or None.

    ``tail`` holds the last non-whitespace bytes before a value and ``pos`` their
    absolute offsets, so whitespace of any length between key, colon and value is
    skipped and escapes (``"annot\\u0061tions"``) are decoded by the JSON parser: a
    key is compared as JSON means it, never as spelt. A key with raw whitespace inside
    or longer than the tail is returned as None (no streamed key is like that).
    """
    n = len(tail)
    if n < 3 or tail[-1] != 58 or tail[-2] != 34:  # ':' and the closing quote
        return None
    close = n - 2
    j = close - 1
    while j >= 0:
        if tail[j] == 34:
            run, t = 0, j - 1
            while t >= 0 and tail[t] == 92 and pos[t] == pos[t + 1] - 1:
                run += 1
                t -= 1
            if t < 0:
                return None  # cannot tell whether this quote is escaped
            if run % 2 == 0:
                break
        j -= 1
    else:
        return None
    if int(pos[close]) - int(pos[j]) != close - j:
        return None
    try:
        key = orjson.loads(tail[j : close + 1])
    except orjson.JSONDecodeError:
        return None
    return key if isinstance(key, str) else None


def top_level_keys(buf: bytes) -> list[tuple[str, int]]:
    """The root object's keys, decoded, each with the first byte of its value.

    Vectorised over ``buf`` (the skeleton of a streamed file, or a file's first
    megabyte); a root that is not an object has no keys. Used to find duplicate
    top-level keys (a JSON parser silently keeps the last one) and to recognise a
    format by content. Keys of nested objects do not count.
    """
    buf = buf[3:] if buf.startswith(b"\xef\xbb\xbf") else buf
    arr = np.frombuffer(buf, np.uint8)
    nw = np.flatnonzero(~_ISWS[arr])
    if nw.size == 0 or arr[nw[0]] != ord("{"):
        return []
    quotes = _unescaped_quotes(arr)
    quotes = quotes[: quotes.size - quotes.size % 2]
    opens, closes = quotes[0::2], quotes[1::2]
    lut = _LUT[arr]
    pos = np.flatnonzero(lut)
    pos = pos[(np.searchsorted(quotes, pos) & 1) == 0]
    depth = np.cumsum(lut[pos].astype(np.int64))
    k = np.searchsorted(pos, opens)
    d = np.where(k > 0, depth[np.maximum(k - 1, 0)], 0)
    sel = d == 1
    opens, closes = opens[sel], closes[sel]
    j = np.searchsorted(nw, closes + 1)
    has_next = j < nw.size
    opens, closes, j = opens[has_next], closes[has_next], j[has_next]
    is_key = arr[nw[j]] == 58
    out: list[tuple[str, int]] = []
    for o, c, jj in zip(opens[is_key].tolist(), closes[is_key].tolist(), j[is_key].tolist(), strict=True):
        try:
            key = orjson.loads(buf[o : c + 1])
        except orjson.JSONDecodeError:
            continue
        nxt = int(arr[nw[jj + 1]]) if jj + 1 < nw.size else -1
        out.append((str(key), nxt))
    return out


class _Scanner:
    def __init__(self, path: Path, big_keys: frozenset[str], fh: BinaryIO) -> None:
        self.path = path
        self.big_keys = big_keys
        self.fh = fh
        self.in_string = False
        self.trailing_bs = 0  # backslashes ending the previous block (escape carry)
        self.depth = 0
        self.lines_before = 0  # newlines before the current block
        self.root_is_array: bool | None = None
        self.late_error: tuple[str, int] | None = None
        # the last non-whitespace bytes of earlier blocks, with their absolute offsets
        self.tail_pos = np.empty(0, np.int64)
        self.tail = b""

    def key_at(self, arr: npt.NDArray[np.uint8], p: int, base: int) -> str | None:
        """The decoded key of the value opening at block position ``p``, wherever it starts."""
        idx = _nonws_before(arr, p, _KEY_TAIL)
        pos, tail = idx + base, arr[idx].tobytes()
        if idx.size < _KEY_TAIL and self.tail:
            pos = np.concatenate([self.tail_pos, pos])[-_KEY_TAIL:]
            tail = (self.tail + tail)[-_KEY_TAIL:]
        return _key_from_tail(pos, tail)

    def carry_tail(self, arr: npt.NDArray[np.uint8], base: int) -> None:
        """Remember the block's last non-whitespace bytes for keys read in the next block."""
        idx = _nonws_before(arr, arr.size, _KEY_TAIL)
        if idx.size >= _KEY_TAIL:
            self.tail_pos, self.tail = idx + base, arr[idx].tobytes()
        elif idx.size:
            self.tail_pos = np.concatenate([self.tail_pos, idx + base])[-_KEY_TAIL:]
            self.tail = (self.tail + arr[idx].tobytes())[-_KEY_TAIL:]

    def error(self, msg: str, offset: int) -> JSONError:
        line, col = _line_col(self.path, offset)
        return JSONError(msg, path=self.path, line=line, column=col)

    def structure(
        self, arr: npt.NDArray[np.uint8], base: int
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Positions (block-relative), deltas and depths-after of brackets outside strings."""
        quotes = _unescaped_quotes(arr, self.trailing_bs)
        lut = _LUT[arr]
        pos = np.flatnonzero(lut)
        before = np.searchsorted(quotes, pos)
        pos = pos[((before + int(self.in_string)) & 1) == 0]
        delta = lut[pos].astype(np.int64)
        depth = self.depth + np.cumsum(delta)
        # carry string state to the next block
        self.in_string = bool((quotes.size + int(self.in_string)) & 1)
        tb = _trailing_backslashes(arr)
        self.trailing_bs = tb + (self.trailing_bs if tb == arr.size else 0)
        if depth.size:
            if int(depth.min()) < 0:
                # report after the events before it: a parse error there names a
                # better place (e.g. "]" closing "{" inside an element)
                k = int(np.argmax(depth < 0))
                self.late_error = ("unbalanced closing bracket", base + int(pos[k]))
                pos, delta, depth = pos[:k], delta[:k], depth[:k]
            self.depth = int(depth[-1]) if depth.size else self.depth
        return pos, delta, depth


def scan_json(
    path: Path,
    *,
    big_keys: frozenset[str],
    chunk_elements: int = _CHUNK_ELEMENTS,
    max_bytes: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    block_size: int | None = None,
) -> Iterator[Chunk | Scan]:
    """Yield :class:`Chunk` objects for the big arrays, then one final :class:`Scan`.

    ``big_keys`` names the top-level keys whose array values are streamed (a root
    array is always streamed). Everything else is kept in the skeleton, parsed once
    at the end, so its syntax is checked too. A file of more than ``max_bytes``
    raises :class:`FileTooLarge` before its first byte is read (or, for a file that
    grows or does not report its size, as soon as the limit is passed). A control
    character (NUL, as in a sparse or zero-filled file) is a syntax error at its
    line and column in the block that holds it, so such a file is never read on.

    ``progress(done_bytes, total_bytes)`` is called after each block is scanned (and
    its chunks consumed), with ``done_bytes`` rising to the file's size: a front end
    shows a long load without knowing anything about JSON. ``block_size`` (default
    16 MiB) is the read size; tests pass small blocks to exercise the block seams.
    """
    step = block_size if block_size is not None else _BLOCK
    if step <= 0:
        raise ValueError(f"block_size must be positive, got {step}")
    sha = hashlib.sha256()
    skeleton_parts: list[bytes] = []
    counts: dict[str | None, int] = {}
    with open(path, "rb") as fh:
        size0 = os.fstat(fh.fileno()).st_size
        if max_bytes is not None:
            if size0 > max_bytes:
                raise FileTooLarge(path=path, size=size0, limit=max_bytes)
        sc = _Scanner(path, big_keys, fh)
        offset = 0  # absolute offset of the current block
        # state of the big array being streamed
        cur_key: str | None = None
        in_big = False
        big_depth = 0  # depth inside the big array (elements open at big_depth + 1)
        pending = bytearray()  # unparsed bytes of the big array (after its last cut)
        pending_abs = 0  # absolute offset of pending[0]
        pending_lines: list[int] = []
        closed = 0  # elements closed in pending
        first_chunk = True
        index = 0
        skel_from = 0  # block-relative start of bytes still to copy to the skeleton
        started = False
        while True:
            block = fh.read(step)
            if not block:
                break
            if max_bytes is not None and offset + len(block) > max_bytes:
                raise FileTooLarge(path=path, size=offset + len(block), limit=max_bytes)
            sha.update(block)
            if not started:
                if block.startswith(b"\xef\xbb\xbf"):
                    block = block[3:]
                    offset += 3
                stripped = block.lstrip(_WS)
                if stripped:
                    started = True
                    sc.root_is_array = stripped[:1] == b"["
            arr = np.frombuffer(block, np.uint8)
            pos, delta, depth = sc.structure(arr, offset)
            nl = np.flatnonzero(arr == 10)
            if np.count_nonzero(arr < 32) != nl.size:  # \t, \r or a control character
                bad = arr < 32
                for ws in (9, 10, 13):
                    bad &= arr != ws
                if bad.any():
                    at = int(np.argmax(bad))
                    raise sc.error(
                        f"control character 0x{int(arr[at]):02x} (invalid in JSON: a zero-filled or binary file?)",
                        offset + at,
                    )
            skel_from = 0
            cut_from = 0  # block-relative start of bytes not yet moved to pending
            # Only bracket events near the top matter: entering/leaving a big array
            # (few, walked in Python) and its elements opening/closing (many,
            # handled as arrays).
            sel = np.flatnonzero(((delta == 1) & (depth <= 3)) | ((delta == -1) & (depth <= 2)))
            pos, delta, depth = pos[sel], delta[sel], depth[sel]
            k, n_ev = 0, int(pos.size)
            entry_depth = 1 if sc.root_is_array else 2
            while k < n_ev:
                if not in_big:
                    cand = np.flatnonzero((delta[k:] == 1) & (depth[k:] == entry_depth))
                    if cand.size == 0:
                        break
                    jj = k + int(cand[0])
                    p = int(pos[jj])
                    k = jj + 1
                    key: str | None = None
                    if not sc.root_is_array:
                        if block[p : p + 1] != b"[":
                            continue
                        key = sc.key_at(arr, p, offset)
                        if key not in sc.big_keys:
                            continue
                    in_big, cur_key, big_depth = True, key, entry_depth
                    skeleton_parts.append(block[skel_from : p + 1])
                    skel_from = cut_from = p + 1
                    pending = bytearray()
                    pending_abs = offset + p + 1
                    pending_lines = []
                    closed = 0
                    first_chunk = True
                    index = 0
                    continue
                # in a big array: the segment up to its closing bracket (or block end)
                dd, dp = delta[k:], depth[k:]
                close = np.flatnonzero((dd == -1) & (dp == big_depth - 1))
                end = k + int(close[0]) if close.size else n_ev
                sd, sp, spos = delta[k:end], depth[k:end], pos[k:end]
                opens = spos[(sd == 1) & (sp == big_depth + 1)]
                closes = spos[(sd == -1) & (sp == big_depth)]
                if opens.size:
                    pending_lines.extend((sc.lines_before + np.searchsorted(nl, opens) + 1).tolist())
                # cut after every chunk_elements-th closed element
                for ci in range(chunk_elements - closed - 1, int(closes.size), chunk_elements):
                    p = int(closes[ci])
                    pending += block[cut_from : p + 1]
                    cut_from = p + 1
                    ch = _parse_chunk(
                        sc, pending, pending_abs, cur_key, index, pending_lines[:chunk_elements], first_chunk, path
                    )
                    del pending_lines[:chunk_elements]
                    index += len(ch.items)
                    first_chunk = False
                    closed -= chunk_elements
                    yield ch
                    pending_abs = offset + p + 1
                    pending = bytearray()
                closed += int(closes.size)
                if not close.size:
                    break
                p = int(pos[end])
                pending += block[cut_from:p]
                if pending.strip(_WS):
                    ch = _parse_chunk(sc, pending, pending_abs, cur_key, index, pending_lines, first_chunk, path)
                    index += len(ch.items)
                    yield ch
                counts[cur_key] = index
                in_big = False
                pending = bytearray()
                pending_lines = []
                skel_from = cut_from = p
                k = end + 1
            if sc.late_error is not None:
                raise sc.error(*sc.late_error)
            if in_big:
                pending += block[cut_from:]
            else:
                skeleton_parts.append(block[skel_from:])
            sc.carry_tail(arr, offset)
            sc.lines_before += int(nl.size)
            offset += len(block)
            if progress is not None:
                # a file that grows while read (or reports no size) never shows over 100%
                progress(offset, max(size0, offset))
        size = offset
        if not started:
            raise JSONError("empty file: expected a JSON document", path=path, line=1, column=1)
        if sc.in_string:
            raise sc.error("unexpected end of file inside a string", size)
        if sc.depth != 0 or in_big:
            raise sc.error(f"unexpected end of file: {max(sc.depth, 1)} unclosed bracket(s)", size)
        skeleton_bytes = b"".join(skeleton_parts)
        try:
            skeleton = orjson.loads(skeleton_bytes)
        except orjson.JSONDecodeError as e:
            # map the skeleton position back to the file: re-parse the file with the
            # standard library only on this error path, for its exact line/column
            import json

            try:
                with open(path, "rb") as f:
                    json.loads(f.read())
            except json.JSONDecodeError as e2:
                raise JSONError(e2.msg, path=path, line=e2.lineno, column=e2.colno) from None
            except UnicodeDecodeError as e3:
                raise JSONError(f"invalid UTF-8: {e3.reason}", path=path, line=1, column=1) from None
            raise JSONError(str(e), path=path, line=1, column=1) from None
    keys = [k for k, _ in top_level_keys(skeleton_bytes)] if isinstance(skeleton, dict) else []
    dups = tuple(k for k, n in Counter(keys).items() if n > 1)
    yield Scan(skeleton=skeleton, sha256=sha.hexdigest(), size=size, counts=counts, duplicate_keys=dups)


def _parse_chunk(
    sc: _Scanner,
    data: bytearray,
    abs_start: int,
    key: str | None,
    first: int,
    lines: list[int],
    first_chunk: bool,
    path: Path,
) -> Chunk:
    body = bytes(data)
    stripped = body.lstrip(_WS)
    lead = len(body) - len(stripped)
    if not first_chunk:
        if not stripped.startswith(b","):
            raise sc.error("expected ',' between array elements", abs_start + lead)
        stripped = stripped[1:]
        lead += 1
        if not stripped.strip(_WS):
            raise sc.error("trailing comma after the last array element", abs_start + lead - 1)
    try:
        items = orjson.loads(b"[" + stripped + b"]")
    except orjson.JSONDecodeError as e:
        raise sc.error(f"invalid JSON: {e.msg}", abs_start + lead + max(e.pos - 1, 0)) from None
    if not isinstance(items, list):  # pragma: no cover - orjson returns a list for "[...]"
        raise sc.error("invalid array", abs_start)
    ln = np.asarray(lines, np.int64)
    if ln.size != len(items):
        # scalar elements have no bracket of their own: give every element the
        # chunk's first line rather than misattribute lines
        ln = np.full(len(items), ln[0] if ln.size else _line_col(path, abs_start + lead)[0], np.int64)
    return Chunk(key=key, first=first, items=items, lines=ln)


def top_level_array_keys(head: bytes) -> set[str]:
    """Keys of the root object whose values are arrays, as far as ``head`` shows them.

    Used to recognise a format by content from the first bytes of a file: nested
    keys (``{"dependencies": {"images": []}}``) do not count; keys are decoded and
    may be followed by any amount of whitespace, as the streaming reader reads them.
    """
    return {k for k, first in top_level_keys(head) if first == ord("[")}


def first_array_element(head: bytes) -> Any:
    """The first element of a root array, parsed, if ``head`` holds all of it (else None)."""
    head = head[3:] if head.startswith(b"\xef\xbb\xbf") else head
    stripped = head.lstrip(_WS)
    if stripped[:1] != b"[":
        return None
    sc = _Scanner(Path("<head>"), frozenset(), None)  # type: ignore[arg-type]
    arr = np.frombuffer(stripped, np.uint8)
    pos, delta, depth = sc.structure(arr, 0)
    ends = pos[(delta == -1) & (depth == 1)]
    if ends.size == 0:
        return None
    try:
        return orjson.loads(stripped[1 : int(ends[0]) + 1])
    except orjson.JSONDecodeError:
        return None
