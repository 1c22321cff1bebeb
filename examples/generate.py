"""Regenerate the example batches (deterministic): ``python examples/generate.py``.

Street-scene labels for 40 images (1280x720). ``golden/golden.json`` holds the
truth for 12 honeypot images. ``clean/batch.json`` agrees with it (1-pixel
jitter). ``defective/batch.json`` carries planted defects: a dangling category, a
box past the right edge, a bow-tie polygon, a zero-width box, annotator bob's
boxes shifted right by 12% of their width, cyclists labelled pedestrian, a
missed car and a phantom object.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CLASSES = ["pedestrian", "cyclist", "car", "truck", "traffic_light"]
W, H = 1280, 720
N_IMAGES = 40
GOLDEN = list(range(0, 40, 10)) + list(range(1, 40, 5))  # 12 honeypots


def _objects(rng: random.Random, n: int) -> list[dict[str, Any]]:
    objs = []
    for _ in range(n):
        cls = rng.choice(CLASSES)
        w = rng.uniform(40, 260)
        h = rng.uniform(40, 220)
        x = rng.uniform(0, W - w)
        y = rng.uniform(0, H - h)
        objs.append({"cls": cls, "box": [round(x, 1), round(y, 1), round(w, 1), round(h, 1)]})
    # keep objects of one image apart enough not to look like duplicates
    return objs


def _poly(box: list[float]) -> list[list[float]]:
    x, y, w, h = box
    # an octagon inscribed in the box: a realistic outline whose extent is the box
    pts = [
        (x + 0.3 * w, y),
        (x + 0.7 * w, y),
        (x + w, y + 0.3 * h),
        (x + w, y + 0.7 * h),
        (x + 0.7 * w, y + h),
        (x + 0.3 * w, y + h),
        (x, y + 0.7 * h),
        (x, y + 0.3 * h),
    ]
    return [[round(v, 2) for p in pts for v in p]]


def _poly_area(ring: list[float]) -> float:
    xs, ys = ring[0::2], ring[1::2]
    return abs(sum(xs[i] * ys[(i + 1) % len(xs)] - xs[(i + 1) % len(xs)] * ys[i] for i in range(len(xs)))) / 2


def _ann(aid: int, img: int, cls: str, box: list[float], annotator: str, poly: bool) -> dict[str, Any]:
    a: dict[str, Any] = {
        "id": aid,
        "image_id": img,
        "category_id": CLASSES.index(cls) + 1,
        "bbox": box,
        "iscrowd": 0,
        "annotator_id": annotator,
    }
    if poly:
        a["segmentation"] = _poly(box)
        a["area"] = round(_poly_area(a["segmentation"][0]), 2)
    else:
        a["area"] = round(box[2] * box[3], 2)
    return a


def main() -> None:
    rng = random.Random(20261129)
    images = [{"id": i + 1, "file_name": f"street_{i:04d}.jpg", "width": W, "height": H} for i in range(N_IMAGES)]
    cats = [{"id": k + 1, "name": c, "supercategory": "street"} for k, c in enumerate(CLASSES)]
    scene = {i: _objects(rng, rng.randint(3, 6)) for i in range(N_IMAGES)}
    annotator = {i: ("alice", "bob", "carol")[i % 3] for i in range(N_IMAGES)}

    # golden: the truth on the honeypots (ids differ from the batches on purpose)
    g_images = [dict(images[i], id=1000 + i) for i in GOLDEN]
    g_anns = []
    for i in GOLDEN:
        for o in scene[i]:
            g_anns.append(_ann(5000 + len(g_anns), 1000 + i, o["cls"], o["box"], "expert", poly=False))
    for a in g_anns:
        del a["annotator_id"]
    _write(HERE / "golden" / "golden.json", {"images": g_images, "annotations": g_anns, "categories": cats})

    def batch(defective: bool) -> dict[str, Any]:
        anns: list[dict[str, Any]] = []
        rr = random.Random(7 if defective else 3)
        flipped = 0
        for i in range(N_IMAGES):
            for k, o in enumerate(scene[i]):
                x, y, w, h = o["box"]
                x += rr.uniform(-1, 1)
                y += rr.uniform(-1, 1)
                cls = o["cls"]
                if defective and annotator[i] == "bob":
                    x += 0.12 * w  # systematic right shift: IoU still ~0.79, drift is not
                if defective and cls == "cyclist" and i in GOLDEN and flipped < 2:
                    cls, flipped = "pedestrian", flipped + 1
                if defective and i == GOLDEN[3] and o["cls"] == "car" and k == 0:
                    continue  # a missed object
                x = min(max(x, 0), W - w)
                y = min(max(y, 0), H - h)
                box = [round(x, 1), round(y, 1), round(w, 1), round(h, 1)]
                anns.append(_ann(len(anns) + 1, i + 1, cls, box, annotator[i], poly=(k % 2 == 0)))
        if defective:
            anns.append(
                _ann(len(anns) + 1, GOLDEN[5] + 1, "truck", [600.0, 300.0, 120.0, 90.0], "carol", poly=False)
            )  # phantom
            anns.append(
                dict(_ann(len(anns) + 1, 5, "car", [100.0, 100.0, 80.0, 60.0], "bob", poly=False), category_id=99)
            )
            anns.append(
                _ann(len(anns) + 1, 8, "truck", [1200.0, 400.0, 120.0, 100.0], "carol", poly=False)
            )  # 40 px past the right edge
            bow = _ann(len(anns) + 1, 9, "car", [300.0, 300.0, 100.0, 100.0], "alice", poly=True)
            bow["segmentation"] = [[300.0, 300.0, 400.0, 400.0, 400.0, 300.0, 300.0, 400.0]]  # bow-tie
            bow["area"] = 5000.0
            anns.append(bow)
            anns.append(
                _ann(len(anns) + 1, 12, "traffic_light", [500.0, 50.0, 0.0, 30.0], "bob", poly=False)
            )  # zero width
        return {
            "info": {"description": "annogate example batch", "year": 2026},
            "images": images,
            "annotations": anns,
            "categories": cats,
        }

    _write(HERE / "clean" / "batch.json", batch(False))
    _write(HERE / "defective" / "batch.json", batch(True))


def _write(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n")


if __name__ == "__main__":
    main()
