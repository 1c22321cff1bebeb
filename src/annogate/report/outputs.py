"""Where annogate may write: output targets checked before any gate runs.

Why: a gate that reviews label files must never damage them. Every output path
(audit report, rework list, junit XML, ...) is checked up front so that a bad one
is a usage error before the session spends minutes gating, and so that no output
can land on an input: a batch, a golden file or a rules file. Writes themselves
go through :func:`annogate.report.audit.atomic_write_text`, which refuses special
files again at write time.

Links: a symlinked target is written through (the link stays, its target is
replaced), so every check looks at the real path. Two rules keep a link from
turning an output against the labels: a *dangling* symlink is refused (annogate
never creates a file where a link points: that is how an output is planted in a
batch folder), and no link (the file's or a folder's on its way) may carry an
output into a folder being gated that the path as written is not already in.
Naming a place inside a gated folder directly stays allowed (``pytest --annogate .
--annogate-report r.json`` gates the current folder and writes beside it).

Pure standard library (no pytest): the plugin turns :class:`OutputError` into a
``pytest.UsageError``; scripts can call the same checks.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

__all__ = ["OutputError", "below", "check_output", "same_file", "special_kind"]


class OutputError(ValueError):
    """An output target that annogate refuses to write: names the option, the path and why."""


def special_kind(mode: int) -> str | None:
    """``"a FIFO"``, ``"a device"``... for a non-regular, non-directory file mode, else None."""
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
        return None
    return "a special file"


def same_file(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are one file: equal resolved paths, or the same inode
    (hard links, bind mounts, case-insensitive file systems)."""
    try:
        if Path(os.path.realpath(a)) == Path(os.path.realpath(b)):
            return True
        return os.path.samefile(a, b)
    except OSError:
        return False


def check_output(
    target: str | os.PathLike[str],
    *,
    option: str,
    suffixes: Sequence[str] = (),
    inputs: Iterable[tuple[Path, str]] = (),
    is_input: Callable[[Path], str | None] | None = None,
    gated: Iterable[Path] = (),
) -> Path:
    """Check one output target; return the real path to write (symlinks followed).

    Refused, with an :class:`OutputError` naming ``option``: a suffix not in
    ``suffixes`` (when given); a directory; a FIFO, device or socket (never replaced
    by a regular file); a folder that is missing or not writable; an existing file
    that is one of ``inputs`` (``(path, what)`` pairs) or that ``is_input`` names
    (it returns what the file is, e.g. ``"a label batch"``, or None); a dangling
    symlink; a target whose real path lies in one of the ``gated`` folders (the
    folders being gated) while the path as given does not (a link carried it there).

    A symlinked target is written through: the link stays and its target is
    replaced, so the real path is what the checks look at.
    """
    given = os.fspath(target)
    where = f"{option} {given}"
    p = Path(given)
    if suffixes and p.suffix.lower() not in suffixes:
        raise OutputError(f"{where}: unknown suffix {p.suffix or '(none)'!r}; use {' or '.join(suffixes)}")
    real = Path(os.path.realpath(p))
    try:
        st: os.stat_result | None = os.stat(real)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise OutputError(f"{where}: cannot inspect the target: {e.strerror or e}") from None
    if st is not None:
        if stat.S_ISDIR(st.st_mode):
            raise OutputError(f"{where}: is a directory; give a file name")
        kind = special_kind(st.st_mode)
        if kind:
            raise OutputError(f"{where}: is {kind}; annogate writes regular files only and never replaces {kind}")
    if st is None and os.path.islink(p):
        raise OutputError(
            f"{where}: is a symlink to {real}, which does not exist; annogate never creates a file"
            " through a link: give the real path"
        )
    parent = real.parent
    if not parent.is_dir():
        raise OutputError(f"{where}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{where}: folder {parent} is not writable")
    if st is not None:
        for path, what in inputs:
            if same_file(real, path):
                raise OutputError(f"{where}: is {what}; an output must not overwrite an input")
        if is_input is not None:
            what_is = is_input(real)
            if what_is:
                raise OutputError(f"{where}: is {what_is}; an output must not overwrite an input")
    named = Path(os.path.abspath(p))
    for folder in gated:
        if below(real, folder) and not below(named, folder):
            raise OutputError(
                f"{where}: resolves to {real}, inside {folder}, which is being gated;"
                " a link must not carry an output among the labels"
            )
    return real


def below(path: Path, folder: Path) -> bool:
    """``path`` lies in ``folder`` (as written or resolved) or is it."""
    for f in dict.fromkeys((Path(os.path.abspath(folder)), Path(os.path.realpath(folder)))):
        if path == f or path.is_relative_to(f):
            return True
    return False
