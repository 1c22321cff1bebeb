"""Geometry gate on hostile batches: time and peak memory, one fresh process per case.

Cases (issue 8): 20,000 identical boxes on one image; 64,000 left-aligned stacked
boxes on one image; 300,000 defects (tiny boxes); one 1,000,000-vertex polygon among
200 annotations; a 256 KB class name on 2,000 bad boxes (report size measured too).

Usage::

    python benchmarks/bench_geometry_hostile.py                 # this checkout
    git worktree add /tmp/old <commit>
    python benchmarks/bench_geometry_hostile.py --src /tmp/old/src  # an older one
    python benchmarks/bench_geometry_hostile.py --before /tmp/old/src defects_300k long_name_2k  # both, row by row

Each case runs in a subprocess with an address-space limit (``--mem-gb``, default 6)
and a timeout (``--timeout``, default 120 s), so a quadratic old version reports
"MemoryError" or "timeout" instead of taking the machine down. Peak RSS is the
child's ``ru_maxrss`` and includes loading the batch. "result MB" is the gate's
result as JSON (``GateResult.to_dict``: what xdist ships and reports are built from).

Bounded findings (issue 8; ``--before`` at eedef5a, 2 CPUs at load average ~10-13,
so seconds are noisy; memory and sizes are not)::

    case            tree     gate s  peak RSS MB  findings kept/total  result MB
    defects_300k    before     7.49          526        300000/300000       91.6
    defects_300k    after      3.71          234          1000/300000        5.6
    long_name_2k    before     0.06         1055            2000/2000      500.6
    long_name_2k    after      0.10           54            1000/2000        0.9

After: at most 1000 findings per rule (``max_findings_per_rule``), every defect
counted; strings cut to 200 chars (names) / 1000 (messages, paths). What is left of
the 5.6 MB is the cost facts' per-row lists (row, annotator, class per defect).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

CASES = ("identical_20k", "stacked_64k", "defects_300k", "polygon_1M", "comb_1M", "bowtie_1M", "long_name_2k")


def make(case: str, path: Path) -> None:
    """Write the batch of ``case`` to ``path`` (plain COCO JSON)."""
    images = [{"id": 1, "file_name": "a.jpg", "width": 10_000, "height": 10_000}]
    cats = [{"id": 1, "name": "x"}]
    anns: list[dict[str, object]] = []
    if case == "identical_20k":
        anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50]} for i in range(20_000)]
    elif case == "stacked_64k":
        # same left edge and width, one above the other: every box is within the x sweep's reach
        images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 70_000}]
        anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [0, i, 50, 1]} for i in range(64_000)]
    elif case == "defects_300k":
        images = [{"id": k, "file_name": f"{k}.jpg", "width": 100, "height": 100} for k in range(1, 1001)]
        anns = [
            {"id": i + 1, "image_id": i % 1000 + 1, "category_id": 1, "bbox": [(i // 1000) * 0.3, 5, 0.5, 0.5]}
            for i in range(300_000)
        ]
    elif case == "polygon_1M":
        import math

        n = 1_000_000
        ring: list[float] = []
        for k in range(n):
            a = 2 * math.pi * k / n
            r = 4000 + 500 * math.sin(40 * a)
            ring += [round(5000 + r * math.cos(a), 3), round(5000 + r * math.sin(a), 3)]
        anns = [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [i * 10, 10, 8, 8], "area": 64} for i in range(200)
        ]
        anns[100] = {"id": 101, "image_id": 1, "category_id": 1, "segmentation": [ring]}
    elif case in ("comb_1M", "bowtie_1M"):
        # a comb: 250,000 teeth, far from star-shaped, so GEOS must judge it; the
        # bow-tie variant swaps two vertices so that it crosses itself
        teeth = 250_000
        ring = []
        for k in range(teeth):
            x = 1000 + k * 0.032
            ring += [x, 1000.0, x, 9000.0, x + 0.016, 9000.0, x + 0.016, 1000.0]
        ring += [ring[-2], 500.0, 1000.0, 500.0]
        if case == "bowtie_1M":
            ring[2:4], ring[4:6] = ring[4:6], ring[2:4]
        anns = [
            {"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [i * 10, 10, 8, 8], "area": 64} for i in range(200)
        ]
        anns[100] = {"id": 101, "image_id": 1, "category_id": 1, "segmentation": [ring]}
    elif case == "long_name_2k":
        cats = [{"id": 1, "name": "n" * 262_144}]
        anns = [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [i, 5, -1, 4]} for i in range(2_000)]
    path.write_text(json.dumps({"images": images, "categories": cats, "annotations": anns}))


_CHILD = r"""
import json, resource, sys, time
from pathlib import Path
from annogate.formats import load_batch
from annogate.gates import GateContext
from annogate.checks.geometry import run
p = Path(sys.argv[1])
b = load_batch(p)
t = time.perf_counter()
r = run(b, GateContext(section={}, rules={}, base_dir=p.parent, load=load_batch))
dt = time.perf_counter() - t
report = len(json.dumps(r.to_dict()))
print(json.dumps({"s": dt, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "kept": len(r.findings), "total": int(r.metrics.get("findings", len(r.findings))),
                  "report_mb": report / 2**20, "verdict": r.verdict}))
"""


def run_case(case: str, src: Path | None, mem_gb: float, timeout: float, tmp: Path) -> dict[str, object]:
    path = tmp / f"{case}.json"
    if not path.exists():
        make(case, path)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src)
    limit = int(mem_gb * 2**30)

    def _limit() -> None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    try:
        cp = subprocess.run(
            [sys.executable, "-c", _CHILD, str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            preexec_fn=_limit,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timeout > {timeout:g} s"}
    if cp.returncode != 0:
        last = (cp.stderr.strip().splitlines() or ["?"])[-1]
        return {"error": last[:60]}
    out: dict[str, object] = json.loads(cp.stdout.strip().splitlines()[-1])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--src", type=Path, help="src folder of another checkout (default: the installed annogate)")
    ap.add_argument("--before", type=Path, help="also run each case on this src folder, printed above --src's row")
    ap.add_argument("--mem-gb", type=float, default=6.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("cases", nargs="*", default=list(CASES))
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        trees: list[tuple[str, Path | None]] = [("before", a.before), ("after", a.src)] if a.before else [("", a.src)]
        tree_col = f" {'tree':<7}" if a.before else ""
        print(f"{'case':<15}{tree_col} {'gate s':>8} {'peak RSS MB':>12} {'findings kept/total':>20} {'result MB':>10}")
        for case in a.cases:
            for label, src in trees:
                r = run_case(case, src, a.mem_gb, a.timeout, Path(d))
                col = f" {label:<7}" if a.before else ""
                if "error" in r:
                    print(f"{case:<15}{col} {r['error']}")
                    continue
                print(
                    f"{case:<15}{col} {r['s']:>8.2f} {r['rss_mb']:>12.0f}"
                    f" {str(r['kept']) + '/' + str(r['total']):>20} {r['report_mb']:>10.1f}"
                )


if __name__ == "__main__":
    main()
