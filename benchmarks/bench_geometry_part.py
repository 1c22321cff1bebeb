"""Timing of the geometry gate against the time to load the same batch.

``time_geometry(path)`` is called by the benchmark table; run directly to generate a
synthetic polygon batch and time it::

    python benchmarks/bench_geometry_part.py --generate /tmp/geom.json --n 1300000 --vertices 16
    python benchmarks/bench_geometry_part.py /tmp/geom.json

The generator writes COCO polygons of three shapes in equal parts: jittered regular
polygons (convex-ish blobs), random star polygons (spiky, mostly not provable by the
star test, so they exercise the shapely path) and U-shaped concave outlines.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from annogate.checks.geometry import run
from annogate.formats import load_batch
from annogate.gates import GateContext


def time_geometry(path: Path) -> dict[str, Any]:
    """Seconds to load ``path`` and to run the geometry gate on it, and what the gate saw."""
    path = Path(path)
    gc_was = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        batch = load_batch(path)
        t1 = time.perf_counter()
        result = run(batch, GateContext(section={}, rules={}, base_dir=path.parent, load=load_batch))
        t2 = time.perf_counter()
    finally:
        if gc_was:
            gc.enable()
    m = result.metrics
    return {
        "file": str(path),
        "annotations": m["annotations"],
        "polygon_rings": m["polygon_rings"],
        "rings_proven_by_star_test": m["rings_proven_by_star_test"],
        "rings_validated_by_shapely": m["rings_validated_by_shapely"],
        "findings": m["findings"],
        "load_s": round(t1 - t0, 3),
        "geometry_s": round(t2 - t1, 3),
        "ratio": round((t2 - t1) / (t1 - t0), 3) if t1 > t0 else None,
    }


def generate(path: Path, n: int, vertices: int, n_images: int = 200_000, seed: int = 0) -> None:
    """Write a COCO file of ``n`` polygons (a third each: blobs, stars, U shapes)."""
    rng = np.random.default_rng(seed)
    v = vertices
    kind = np.arange(n) % 3
    ang = np.linspace(0, 2 * np.pi, v, endpoint=False)[None, :] + rng.uniform(0, 1, (n, 1))
    r = rng.uniform(5, 40, (n, 1)) * rng.uniform(0.6, 1.0, (n, v))
    stars = kind == 1
    ang[stars] = np.sort(rng.uniform(0, 2 * np.pi, (int(stars.sum()), v)), axis=1)
    cx = rng.uniform(50, 590, (n, 1))
    cy = rng.uniform(50, 430, (n, 1))
    xs = cx + r * np.cos(ang)
    ys = cy + r * np.sin(ang)
    u = kind == 2  # a U: the lower half of the ring is pulled up towards the centre
    pull = np.where(np.sin(ang) > 0.3, 0.35, 1.0)
    ys[u] = (cy + r * np.sin(ang) * pull)[u]
    xs = np.round(xs, 2)
    ys = np.round(ys, 2)
    img = rng.integers(1, n_images + 1, n)
    cat = rng.integers(1, 81, n)
    with open(path, "w") as fh:
        fh.write('{"images": [')
        fh.write(
            ",".join(
                f'{{"id": {i}, "file_name": "{i:012d}.jpg", "width": 640, "height": 480}}'
                for i in range(1, n_images + 1)
            )
        )
        fh.write('], "categories": [')
        fh.write(",".join(f'{{"id": {k}, "name": "c{k}", "supercategory": ""}}' for k in range(1, 81)))
        fh.write('], "annotations": [\n')
        for i in range(n):
            x, y = xs[i], ys[i]
            seg = np.empty(2 * v)
            seg[0::2] = x
            seg[1::2] = y
            x0, y0 = float(x.min()), float(y.min())
            area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(np.roll(x, -1), y)))
            rec = {
                "id": i + 1,
                "image_id": int(img[i]),
                "category_id": int(cat[i]),
                "iscrowd": 0,
                "segmentation": [seg.tolist()],
                "area": round(area, 2),
                "bbox": [x0, y0, round(float(x.max()) - x0, 2), round(float(y.max()) - y0, 2)],
            }
            fh.write(("," if i else "") + json.dumps(rec) + "\n")
        fh.write("]}\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", nargs="?", type=Path)
    ap.add_argument("--generate", type=Path)
    ap.add_argument("--n", type=int, default=1_300_000)
    ap.add_argument("--vertices", type=int, default=16)
    args = ap.parse_args()
    if args.generate:
        generate(args.generate, args.n, args.vertices)
        print(f"wrote {args.generate} ({args.generate.stat().st_size / 1e6:.0f} MB)")
    target = args.path or args.generate
    if target:
        print(json.dumps(time_geometry(target), indent=1))


if __name__ == "__main__":
    main()
