"""``annogate PATH... [pytest args]``: pytest with ``--annogate`` on the given paths.

This is what the pre-commit hook calls with the staged label files. Arguments
that are existing paths are the batches; everything else is passed to pytest
unchanged (``-q``, ``-x``, ``-n auto``, ``--annogate-report r.json``...).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from annogate.engine import Engine
from annogate.rules import RulesError


def _batches_only(args: list[str]) -> tuple[list[str], list[str]]:
    """Drop file arguments that are no label batch (pre-commit passes every staged
    ``.json``); pytest would call them 'not found'. Folders and options stay."""
    engine: Engine | None = None
    keep: list[str] = []
    dropped: list[str] = []
    for a in args:
        p = Path(a)
        if not a.startswith("-") and p.is_file():
            try:
                engine = engine or Engine()
                is_batch = engine.is_batch(p) is not None
            except RulesError:
                is_batch = True  # let the session report the rules error
            if not is_batch:
                dropped.append(a)
                continue
        keep.append(a)
    return keep, dropped


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(__doc__.strip())
        print("\nannogate options (see `pytest --help` for the rest):")
        print("  --annogate-rules PATH   --annogate-report PATH   --annogate-rework PATH")
        return 0 if args else 4
    # -p no:cacheprovider is not forced: --lf works through the cache as usual.
    # rootdir/ini from the label repository itself; our plugin is loaded by entry point.
    args, dropped = _batches_only(args)
    if dropped and not any(Path(a).exists() for a in args):
        print("annogate: no label batches among the given paths")
        return 0
    code = pytest.main(["--annogate", *args])
    if code == pytest.ExitCode.NO_TESTS_COLLECTED:
        # pre-commit passes every staged .json/.xml/.txt; none being a label batch is fine
        print("annogate: no label batches among the given paths")
        return 0
    return int(code)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
