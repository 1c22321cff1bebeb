"""Golden-set matching speed: annogate vs faster-coco-eval vs pycocotools, same pairs.

Why: the product promises golden-set matching (boxes and polygons) at least 3x
faster than faster-coco-eval with the same matches as pycocotools. This script
generates a synthetic golden subset (about 6.5 objects per image, 20 classes, 1%
crowd regions, 16-vertex polygons) and a perturbed batch (jittered boxes and
polygons, 5% dropped, 3% wrong class, 3% extra objects, random scores), then for
boxes and for polygons:

* times ``annogate.matching.match`` on prebuilt Batches (reading is the reader's
  cost, not matching's);
* times faster-coco-eval's ``COCOeval_faster.evaluate()`` restricted to what
  annogate computes (one IoU threshold 0.5, area "all", maxDets 100), the most
  favourable setting for it and the ratio reported; index building
  (``COCO``/``loadRes``) is timed apart; and, for reference, with COCO's default
  parameters (10 thresholds x 4 area ranges, what a plain ``evaluate()`` runs);
* times pycocotools' ``COCOeval.evaluate()`` with the same restriction;
* checks that annogate's same-class matches equal pycocotools' ``evalImgs`` (and
  faster-coco-eval's matched pairs), and prints a table.

Run: ``python benchmarks/bench_matching.py [--images N] [--no-pycocotools]``
(default 2,000 images, under 2 minutes; ``--images 10000`` for the 65k-object target).
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import io
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from annogate.matching import MatchResult, MatchSettings, Status, match
from annogate.model import SEG_POLYGON, Annotations, Batch, Categories, Images

W, H, NV, NCLS = 640.0, 480.0, 16, 20


def _columns(rng: np.random.Generator, n_img: int) -> dict[str, np.ndarray]:
    """Golden objects as columns: image, class, box, polygon (NV vertices), crowd."""
    per = rng.poisson(6.5, n_img)
    img = np.repeat(np.arange(n_img), per)
    n = img.shape[0]
    w = rng.uniform(12, 160, n)
    h = rng.uniform(12, 160, n)
    x = rng.uniform(0, W - w)
    y = rng.uniform(0, H - h)
    ang = np.linspace(0, 2 * np.pi, NV, endpoint=False)
    rad = rng.uniform(0.8, 1.0, (n, NV))
    px = (x + w / 2)[:, None] + (w / 2)[:, None] * rad * np.cos(ang)
    py = (y + h / 2)[:, None] + (h / 2)[:, None] * rad * np.sin(ang)
    return {
        "img": img,
        "cls": rng.integers(0, NCLS, n),
        "box": np.stack([x, y, w, h], 1),
        "px": px,
        "py": py,
        "crowd": rng.uniform(size=n) < 0.01,
        "score": np.full(n, np.nan),
    }


def _perturb(rng: np.random.Generator, g: dict[str, np.ndarray], n_img: int) -> dict[str, np.ndarray]:
    """The batch under test: jitter, drop 5%, relabel 3%, add 3% extras, random scores."""
    keep = (rng.uniform(size=len(g["img"])) > 0.05) & ~g["crowd"]
    b = {k: v[keep].copy() for k, v in g.items()}
    n = len(b["img"])
    x, y, w, h = b["box"].T
    sw, sh = np.exp(rng.normal(0, 0.08, n)), np.exp(rng.normal(0, 0.08, n))
    nx, ny = x + rng.normal(0, 0.06, n) * w, y + rng.normal(0, 0.06, n) * h
    b["px"] = nx[:, None] + (b["px"] - x[:, None]) * sw[:, None]
    b["py"] = ny[:, None] + (b["py"] - y[:, None]) * sh[:, None]
    b["box"] = np.stack([nx, ny, w * sw, h * sh], 1)
    flip = rng.uniform(size=n) < 0.03
    b["cls"][flip] = (b["cls"][flip] + rng.integers(1, NCLS, flip.sum())) % NCLS
    extra = _columns(rng, n_img)
    pick = rng.uniform(size=len(extra["img"])) < 0.03
    out = {k: np.concatenate([b[k], extra[k][pick]]) for k in b}
    out["crowd"][:] = False
    out["score"] = rng.uniform(size=len(out["img"]))
    order = np.argsort(out["img"], kind="stable")
    return {k: v[order] for k, v in out.items()}


def _batch(c: dict[str, np.ndarray], n_img: int, id0: int, name: str) -> Batch:
    n = len(c["img"])
    poly = np.stack([c["px"], c["py"]], 2).reshape(n, -1)
    imgs = Images(
        id=np.arange(id0, id0 + n_img, dtype=np.int64),
        file_name=np.array([f"img_{i:06d}.jpg" for i in range(n_img)], object),
        width=np.full(n_img, W),
        height=np.full(n_img, H),
        line=np.zeros(n_img, np.int32),
    )
    cats = Categories(
        id=np.arange(1, NCLS + 1, dtype=np.int64),
        name=np.array([f"class{i}" for i in range(NCLS)], object),
        supercategory=np.array([""] * NCLS, object),
        keypoints=((),) * NCLS,
        line=np.zeros(NCLS, np.int32),
    )
    ann = Annotations(
        id=np.arange(1, n + 1, dtype=np.int64),
        image=c["img"].astype(np.int32),
        category=c["cls"].astype(np.int32),
        image_id=c["img"] + id0,
        category_id=c["cls"] + 1,
        bbox=c["box"],
        area=c["box"][:, 2] * c["box"][:, 3],
        iscrowd=c["crowd"],
        score=c["score"],
        annotator=np.full(n, -1, np.int32),
        line=np.arange(1, n + 1, dtype=np.int32),
        file=np.zeros(n, np.int32),
        seg_kind=np.full(n, SEG_POLYGON, np.int8),
        poly_xy=poly.ravel(),
        ring_offsets=np.arange(0, 2 * NV * n + 1, 2 * NV, dtype=np.int64),
        ann_ring_offsets=np.arange(n + 1, dtype=np.int64),
        rle=np.empty(n, object),
        keypoints=np.empty(0),
        kp_offsets=np.zeros(n + 1, np.int64),
        num_keypoints=np.full(n, -1, np.int32),
    )
    return Batch(path=Path(name), format="coco", images=imgs, categories=cats, annotations=ann, files=(name,))


def _coco(
    gc: dict[str, np.ndarray], bc: dict[str, np.ndarray], n_img: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The same data as pycocotools wants it: a ground-truth dict and a results list."""

    def polys(c: dict[str, np.ndarray]) -> list[list[list[float]]]:
        return [[p] for p in np.stack([c["px"], c["py"]], 2).reshape(len(c["img"]), -1).tolist()]

    gp = polys(gc)
    gt = {
        "images": [
            {"id": i + 1, "file_name": f"img_{i:06d}.jpg", "width": int(W), "height": int(H)} for i in range(n_img)
        ],
        "categories": [{"id": i + 1, "name": f"class{i}"} for i in range(NCLS)],
        "annotations": [
            {
                "id": k + 1,
                "image_id": int(im) + 1,
                "category_id": int(c) + 1,
                "bbox": b,
                "area": b[2] * b[3],
                "iscrowd": int(cr),
                "segmentation": s,
            }
            for k, (im, c, b, cr, s) in enumerate(
                zip(gc["img"].tolist(), gc["cls"].tolist(), gc["box"].tolist(), gc["crowd"].tolist(), gp, strict=True)
            )
        ],
    }
    bp = polys(bc)
    dts = [
        {"image_id": int(im) + 1, "category_id": int(c) + 1, "bbox": b, "score": s, "segmentation": p}
        for im, c, b, s, p in zip(
            bc["img"].tolist(), bc["cls"].tolist(), bc["box"].tolist(), bc["score"].tolist(), bp, strict=True
        )
    ]
    return gt, dts


def _restrict(p: Any) -> None:
    p.iouThrs = np.array([0.5])
    p.areaRng = [[0, 1e5**2]]
    p.areaRngLbl = ["all"]
    p.maxDets = [100]


def run_faster(
    gt: dict[str, Any], dts: list[dict[str, Any]], iou_type: str, *, restrict: bool = True
) -> tuple[float, float, set[tuple[int, int]]]:
    """faster-coco-eval's evaluate(): restricted to one threshold/area/maxDets, or COCO's defaults."""
    from faster_coco_eval import COCO, COCOeval_faster

    t0 = time.perf_counter()
    g = COCO(copy.deepcopy(gt))
    d = g.loadRes(copy.deepcopy(dts))
    t1 = time.perf_counter()
    ev = COCOeval_faster(g, d, iou_type, extra_calc=True, print_function=lambda *a, **k: None)
    if restrict:
        _restrict(ev.params)
    ev.evaluate()
    t2 = time.perf_counter()
    if not restrict:
        return t2 - t1, t1 - t0, set()
    pairs = {(int(k.split("_")[0]), int(k.split("_")[1])) for k in ev.eval.get("matched", {})}
    return t2 - t1, t1 - t0, pairs


def run_pycocotools(
    gt: dict[str, Any], dts: list[dict[str, Any]], iou_type: str
) -> tuple[float, float, list[dict[str, Any]]]:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        g = COCO()
        g.dataset = copy.deepcopy(gt)
        g.createIndex()
        d = g.loadRes(copy.deepcopy(dts))
        t1 = time.perf_counter()
        ev = COCOeval(g, d, iou_type)
        _restrict(ev.params)
        ev.evaluate()
        t2 = time.perf_counter()
    return t2 - t1, t1 - t0, [e for e in ev.evalImgs if e is not None]


def _ours_pairs(res: MatchResult) -> set[tuple[int, int]]:
    """Same-class (pass 1) non-ignored matches as (det id, gt id) with COCO's ids (row + 1)."""
    rows = np.flatnonzero(res.batch_status == Status.MATCHED)
    return {(int(r) + 1, int(g) + 1) for r, g in zip(rows.tolist(), res.batch_match[rows].tolist(), strict=True)}


def _cocoeval_pairs(evals: list[dict[str, Any]]) -> set[tuple[int, int]]:
    out: set[tuple[int, int]] = set()
    for e in evals:
        for did, m, ig in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0], strict=True):
            if m and not ig:
                out.add((int(did), int(m)))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=3, help="annogate runs; the best is reported")
    ap.add_argument("--no-pycocotools", action="store_true", help="skip pycocotools (slow on large sets)")
    ap.add_argument(
        "--no-default", action="store_true", help="skip faster-coco-eval with COCO's default 10 thresholds x 4 areas"
    )
    ap.add_argument("--types", default="bbox,segm")
    a = ap.parse_args(argv)

    rng = np.random.default_rng(a.seed)
    gc = _columns(rng, a.images)
    bc = _perturb(rng, gc, a.images)
    gold = _batch(gc, a.images, 1, "golden.json")
    batch = _batch(bc, a.images, 500_001, "batch.json")  # other ids: images join by file name
    gt, dts = _coco(gc, bc, a.images)
    print(f"{a.images} images, {len(gc['img'])} golden objects, {len(bc['img'])} batch objects, {NV}-vertex polygons")

    rows: list[tuple[str, str, float, str]] = []
    ok = True
    for iou_type in a.types.split(","):
        st = MatchSettings(iou_type=iou_type)  # type: ignore[arg-type]
        best = float("inf")
        res: MatchResult | None = None
        for _ in range(a.repeat):
            t = time.perf_counter()
            res = match(batch, gold, st)
            best = min(best, time.perf_counter() - t)
        assert res is not None
        t = time.perf_counter()
        match(batch, gold, MatchSettings(iou_type=st.iou_type, class_agnostic=False))
        t_p1 = time.perf_counter() - t
        fast, fast_load, fpairs = run_faster(gt, dts, iou_type)
        ours = _ours_pairs(res)
        same_fast = ours == fpairs
        ok &= same_fast
        rows.append((iou_type, "annogate match (both passes)", best, f"{fast / best:.1f}x faster"))
        rows.append((iou_type, "annogate match (same-class only)", t_p1, f"{fast / t_p1:.1f}x faster"))
        rows.append((iou_type, "faster-coco-eval evaluate", fast, "1.0x"))
        rows.append((iou_type, "faster-coco-eval COCO+loadRes", fast_load, "(not in ratio)"))
        if not a.no_default:
            full, _, _ = run_faster(gt, dts, iou_type, restrict=False)
            rows.append(
                (
                    iou_type,
                    "faster-coco-eval evaluate, defaults",
                    full,
                    f"{fast / full:.2f}x (annogate {full / best:.1f}x faster)",
                )
            )
        line = f"{iou_type}: {res.counts()}; matches == faster-coco-eval: {same_fast}"
        if not a.no_pycocotools:
            slow, _slow_load, evals = run_pycocotools(gt, dts, iou_type)
            same_py = ours == _cocoeval_pairs(evals)
            ok &= same_py
            rows.append((iou_type, "pycocotools evaluate", slow, f"{fast / slow:.2f}x"))
            line += f"; matches == pycocotools evalImgs: {same_py}"
        print(line)

    print()
    print(f"{'type':<6} {'what':<36} {'seconds':>9}  ratio vs faster-coco-eval")
    for t_, what, sec, ratio in rows:
        print(f"{t_:<6} {what:<36} {sec:>9.3f}  {ratio}")
    if not ok:
        print("MISMATCH: matches differ", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
