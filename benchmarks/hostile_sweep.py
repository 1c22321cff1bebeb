"""Run the whole hostile corpus (tests/hostile) as real sessions and print totals.

    python benchmarks/hostile_sweep.py [--xdist] [--fast] [-k SUBSTRING] [-j JOBS] [--timeout S]

Each case is one ``pytest --annogate`` (or ``annogate``) subprocess with a timeout and
a 4 GiB address-space cap; ``--xdist`` runs every case a second time with ``-n 2``.
Prints one line per case, then: cases, crashes, hangs, blow-ups, wrong verdicts, bad
writes, and the list of failures with their symptoms. Exit status 1 if any failed.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.hostile import KINDS, Case, Outcome, run_case
from tests.hostile.corpus import CASES

_PLURAL = {"crash": "crashes", "hang": "hangs", "blow-up": "blow-ups", "wrong verdict": "wrong verdicts"}
_PLURAL["bad write"] = "bad writes"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--xdist", action="store_true", help="also run every case with -n 2")
    ap.add_argument("--fast", action="store_true", help="skip the slow cases")
    ap.add_argument("-k", default="", help="only cases whose name contains this")
    ap.add_argument("-j", type=int, default=4, help="sessions run at once (default 4)")
    ap.add_argument("--timeout", type=float, default=None, help="override each case's timeout (s)")
    ap.add_argument(
        "--src", default=None, help="run the sessions on another tree's src/ (PYTHONPATH), e.g. an old commit"
    )
    ap.add_argument("-v", action="store_true", help="print the output tail of each failure")
    a = ap.parse_args(argv)
    runs: list[tuple[Case, bool]] = []
    for c in CASES:
        if (a.fast and c.slow) or a.k not in c.name:
            continue
        runs.append((c, False))
        if a.xdist or c.xdist:
            runs.append((c, True))

    def one(item: tuple[Case, bool]) -> Outcome:
        c, x = item
        with tempfile.TemporaryDirectory(prefix="annogate-hostile-") as d:
            env = {"PYTHONPATH": str(Path(a.src).resolve())} if a.src else None
            return run_case(c, Path(d), xdist=x, timeout=a.timeout, env=env)

    t0 = time.monotonic()
    with ThreadPoolExecutor(max_workers=max(1, a.j)) as pool:
        outcomes = list(pool.map(one, runs))
    wall = time.monotonic() - t0
    for o in outcomes:
        flag = "FAIL" if o.problems else "ok  "
        note = f"  [{o.notes[0]}]" if o.notes else ""
        print(f"{flag} {o.case:<52} exit {o.rc!s:>4} {o.seconds:6.1f} s {o.peak_mb:7.0f} MB  {o.describe()}{note}")
    print()
    print(f"cases: {len(outcomes)}   wall: {wall:.0f} s")
    for kind in KINDS:
        n = sum(kind in o.kinds for o in outcomes)
        print(f"{_PLURAL[kind]}: {n}")
    print(f"gate exceptions shown inside items: {sum(bool(o.notes) for o in outcomes)}")
    failed = [o for o in outcomes if o.problems]
    if failed:
        print("\nfailures:")
        for o in failed:
            print(f"  {o.case}: {o.describe()}")
            if a.v:
                print("    " + o.output[-1500:].replace("\n", "\n    "))
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
