"""Load-time and memory benchmark: annogate's COCO reader beside its peers, one run.

    python benchmarks/bench_load.py                     # 20k images, ~130k polygons
    python benchmarks/bench_load.py --images 200000     # the brief's 540 MB batch

Generates a synthetic COCO batch (images x annotations-per-image, polygons of
``--vertices`` points), then measures each reader in a fresh subprocess so peak
RSS (ru_maxrss) is its own: ``json.loads``, ``orjson.loads`` with the garbage
collector on and off, ``pycocotools.COCO`` and ``annogate.load_batch``, plus
annogate's schema and geometry gates on the loaded batch. Prints one table with
times, peak memory, and ratios to ``orjson.loads`` (gc off) and to the file size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def generate(path: Path, *, images: int, per_image: int, vertices: int, seed: int = 0) -> None:
    """Write a realistic pretty-ish COCO file (one element per line) without holding it in memory."""
    rng = random.Random(seed)
    cats = [{"id": k + 1, "name": f"class_{k}", "supercategory": "thing"} for k in range(80)]
    with open(path, "w") as f:
        f.write('{"info": {"description": "synthetic"},\n"images": [\n')
        for i in range(images):
            f.write(json.dumps({"id": i + 1, "file_name": f"img_{i:07d}.jpg", "width": 640, "height": 480}))
            f.write(",\n" if i + 1 < images else "\n")
        f.write('],\n"annotations": [\n')
        aid = 0
        total = images * per_image
        import math

        for i in range(images):
            for _ in range(per_image):
                aid += 1
                cx, cy = rng.uniform(60, 580), rng.uniform(60, 420)
                r = rng.uniform(10, 55)
                ring = []
                for v in range(vertices):
                    a = 2 * math.pi * v / vertices
                    ring += [round(cx + r * math.cos(a), 2), round(cy + r * math.sin(a), 2)]
                xs, ys = ring[0::2], ring[1::2]
                box = [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
                area = (
                    abs(sum(xs[k] * ys[(k + 1) % vertices] - xs[(k + 1) % vertices] * ys[k] for k in range(vertices)))
                    / 2
                )
                ann = {
                    "id": aid,
                    "image_id": i + 1,
                    "category_id": rng.randint(1, 80),
                    "iscrowd": 0,
                    "segmentation": [ring],
                    "area": round(area, 2),
                    "bbox": box,
                }
                f.write(json.dumps(ann, separators=(",", ":")))
                f.write(",\n" if aid < total else "\n")
        f.write('],\n"categories": ' + json.dumps(cats) + "\n}\n")


RUNNERS = {
    "json.loads": "import json; t=time.perf_counter(); d=json.loads(open(P,'rb').read()); t=time.perf_counter()-t",
    "orjson.loads (gc on)": "import orjson; t=time.perf_counter(); d=orjson.loads(open(P,'rb').read()); t=time.perf_counter()-t",
    "orjson.loads (gc off)": "import orjson,gc; gc.disable(); t=time.perf_counter(); d=orjson.loads(open(P,'rb').read()); t=time.perf_counter()-t",
    "pycocotools.COCO": "import contextlib,io\nfrom pycocotools.coco import COCO\nt=time.perf_counter()\nwith contextlib.redirect_stdout(io.StringIO()): d=COCO(P)\nt=time.perf_counter()-t",
    "annogate load_batch": "from annogate import load_batch; t=time.perf_counter(); d=load_batch(P); t=time.perf_counter()-t",
    "annogate load + schema + geometry": (
        "from annogate import Engine\nfrom pathlib import Path\ne=Engine()\nt=time.perf_counter()\nb=e.load(Path(P))\n"
        "tl=time.perf_counter()-t\nt1=time.perf_counter(); rs=e.run_gate(Path(P),'schema'); ts=time.perf_counter()-t1\n"
        "t1=time.perf_counter(); rg=e.run_gate(Path(P),'geometry'); tg=time.perf_counter()-t1\nt=time.perf_counter()-t\n"
        "extra={'load':tl,'schema':ts,'geometry':tg,'findings':len(rs.findings)+len(rg.findings)}"
    ),
}


def run_one(name: str, path: Path) -> dict[str, float]:
    code = (
        "import time,resource,json,sys\nP=sys.argv[1]\nextra={}\n"
        + RUNNERS[name]
        + "\nprint(json.dumps({'seconds':t,'peak_mb':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,**extra}))"
    )
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": 1.0}
    res: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--per-image", type=float, default=6.5)
    ap.add_argument("--vertices", type=int, default=16)
    ap.add_argument("--skip", nargs="*", default=[], help="runner names to skip, e.g. json.loads")
    args = ap.parse_args()
    data = HERE / "_data"
    data.mkdir(exist_ok=True)
    per = max(1, round(args.per_image))
    path = data / f"coco_{args.images}x{per}x{args.vertices}.json"
    if not path.exists():
        t = time.perf_counter()
        generate(path, images=args.images, per_image=per, vertices=args.vertices)
        print(f"generated {path.name} in {time.perf_counter() - t:.1f} s")
    size_mb = path.stat().st_size / 2**20
    print(
        f"file: {path.name}, {size_mb:.0f} MiB, {args.images * per:,} annotations, {args.vertices} vertices; cpus={os.cpu_count()}"
    )
    results = {n: run_one(n, path) for n in RUNNERS if n not in args.skip}
    base = results.get("orjson.loads (gc off)", {}).get("seconds")
    print(f"\n{'reader':36} {'seconds':>8} {'x orjson(gc off)':>17} {'peak MiB':>9} {'x file':>7}")
    for n, r in results.items():
        if "error" in r:
            print(f"{n:36} {'failed':>8}")
            continue
        ratio = f"{r['seconds'] / base:.2f}" if base else "-"
        print(f"{n:36} {r['seconds']:8.2f} {ratio:>17} {r['peak_mb']:9.0f} {r['peak_mb'] / size_mb:7.2f}")
    g = results.get("annogate load + schema + geometry", {})
    if "load" in g:
        print(
            f"\nannogate gates: load {g['load']:.2f} s, schema {g['schema']:.2f} s, geometry {g['geometry']:.2f} s "
            f"(geometry / load = {g['geometry'] / g['load']:.2f}); findings: {int(g['findings'])}"
        )


if __name__ == "__main__":
    main()
