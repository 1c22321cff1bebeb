"""``annogate PATH... [pytest args]``: pytest with ``--annogate`` on the given paths.

This is what the pre-commit hook calls with the staged label files. Every argument
is passed to pytest unchanged: pytest parses options and their values, and the
collection decides which paths are label batches (a staged file that is plainly
something else, like package.json, is skipped; one no reader can read fails).

Exit codes are pytest's: 0 every batch passed, 1 a batch failed a gate (or a file
in scope could not be read), 2 interrupted (e.g. an invalid nested rules file),
3 internal error (e.g. an output could not be written), 4 usage error (bad option,
rules or output path), 5 no label batches under the given paths ("annogate: no
label batches under ..."; 0 with ``--annogate-allow-empty``, as the pre-commit hook does).

The pytest cache: by default the console script runs with ``-p no:cacheprovider``,
because pytest keeps its cache in the rootdir, which for a label repository is
often the batch folder itself, and a gate must leave the reviewed folders as it
found them (a stray ``.pytest_cache`` shows up in ``git status``, in dataset
uploads and in the next pre-commit run). When an option that needs the cache is
given (``--lf``, ``--ff``, ``--nf``, ``--sw``, ``--cache-show``...), the cache is
kept in the user's cache folder instead (``$XDG_CACHE_HOME/annogate/pytest/<hash
of the working directory>``), unless ``-o cache_dir=...`` says otherwise.

Only the standard library and pytest are imported here: importing annogate's
modules before ``pytest.main`` would make pytest warn that the plugin "was already
imported so cannot be rewritten".
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

__all__ = ["CACHE_OPTIONS", "cache_args", "main"]

#: pytest options that read or write the cache (cacheprovider and stepwise).
CACHE_OPTIONS: tuple[str, ...] = (
    "--lf",
    "--last-failed",
    "--ff",
    "--failed-first",
    "--nf",
    "--new-first",
    "--lfnf",
    "--last-failed-no-failures",
    "--sw",
    "--stepwise",
    "--sw-skip",
    "--stepwise-skip",
    "--sw-reset",
    "--stepwise-reset",
    "--cache-show",
    "--cache-clear",
)


def _user_cache_dir(cwd: Path) -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    key = hashlib.sha256(str(cwd).encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return Path(base) / "annogate" / "pytest" / key


def cache_args(args: Sequence[str], *, cwd: Path | None = None) -> list[str]:
    """Extra pytest arguments that keep pytest's cache out of the label folders (see above)."""
    wants = any(a == o or a.startswith(o + "=") for a in args for o in CACHE_OPTIONS)
    if not wants:
        if any("cacheprovider" in a for a in args):
            return []  # the user already decides (e.g. the pre-commit hook's own -p no:cacheprovider)
        return ["-p", "no:cacheprovider"]
    if any("cache_dir" in a for a in args):
        return []
    return ["-o", f"cache_dir={_user_cache_dir(cwd or Path.cwd())}"]


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print((__doc__ or "").strip().split("\n\n")[0])
        print("\nsub-commands: annogate plan | trend DIR | merge REPORT... (each with --help)")
        print("\nannogate options (see `pytest --help` for the rest):")
        print("  --annogate-rules PATH   --annogate-report PATH   --annogate-rework PATH (.csv/.json)")
        print("  --annogate-html PATH    --annogate-history DIR   --annogate-max-findings N")
        print("  --annogate-compare BASELINE.json --annogate-compare-fail METRIC:+N%|pt ...")
        print("  --annogate-shard K/N    --annogate-allow-empty")
        return 0 if args else 4
    if args[0] in ("plan", "trend", "merge"):
        # ``annogate ./plan`` still gates a folder called plan
        from annogate.commands import run_subcommand

        code = run_subcommand(args)
        assert code is not None
        return code
    return int(pytest.main(["--annogate", *cache_args(args), *args]))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
