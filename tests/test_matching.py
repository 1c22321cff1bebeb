"""annogate.matching against pycocotools' COCOeval, and the behaviours it adds.

Conformance data (read from ../shared/thirdparty, never copied):
* ``faster_coco_eval/tests/dataset/cocoapi/instances_val2014_100.json`` — COCO
  val2014 ground truth, 100 images (MiXaiLL76/faster_coco_eval, Apache-2.0;
  annotations CC BY 4.0);
* ``cocoapi/results/instances_val2014_fake{bbox,segm}100_results.json`` — the cocoapi
  demo detections (cocodataset/cocoapi, BSD-2);
* ``faster_coco_eval/tests/dataset/{gt,dt}_dataset.json`` — polygons vs polygons
  (MiXaiLL76/faster_coco_eval, Apache-2.0).

The tests build Batches with ``tests/builders.py`` (the readers' own row builder, fed
from Python dicts) so that they test matching alone, independent of the COCO reader.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annogate.matching import COCO_KEYPOINT_SIGMAS, MatchSettings, Status, box_iou, match
from annogate.model import Batch
from tests.builders import coco_batch

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

GT100 = "faster_coco_eval/tests/dataset/cocoapi/instances_val2014_100.json"
BBOX100 = "cocoapi/results/instances_val2014_fakebbox100_results.json"
SEGM100 = "cocoapi/results/instances_val2014_fakesegm100_results.json"


def coco_eval_img(gt_data: Any, dt_data: list[Any], iou_type: str, **params: Any) -> list[dict[str, Any]]:
    """pycocotools' per-image, per-class evaluation at IoU 0.5, area "all", maxDets 100."""
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = copy.deepcopy(gt_data)
        gt.createIndex()
        dt = gt.loadRes(copy.deepcopy(dt_data))
        ev = COCOeval(gt, dt, iou_type)
        ev.params.iouThrs = np.array([0.5])
        ev.params.areaRng = [ev.params.areaRng[0]]
        ev.params.areaRngLbl = ["all"]
        for k, v in params.items():
            setattr(ev.params, k, v)
        ev.evaluate()
    return [e for e in ev.evalImgs if e is not None]


def assert_same_as_cocoeval(
    gold: Batch, batch: Batch, evals: list[dict[str, Any]], settings: MatchSettings, det_ids: np.ndarray
) -> int:
    """Every image and class: same dt->gt matches, same ignored flags, same gt matches."""
    res = match(batch, gold, settings)
    gid = gold.annotations.id
    row_of_gid = {int(v): i for i, v in enumerate(gid.tolist())}
    row_of_did = {int(v): i for i, v in enumerate(det_ids.tolist())}
    # pass-1 view (COCOeval knows nothing of the class-agnostic pass)
    p1 = np.isin(res.batch_status, [Status.MATCHED, Status.IGNORED])
    checked = 0
    for e in evals:
        for did, m, ig in zip(e["dtIds"], e["dtMatches"][0], e["dtIgnore"][0], strict=True):
            r = row_of_did[did]
            ours = int(gid[res.batch_match[r]]) if p1[r] and res.batch_match[r] >= 0 else 0
            assert ours == int(m), (e["image_id"], e["category_id"], did)
            assert (res.batch_status[r] == Status.IGNORED) == bool(ig), (e["image_id"], did)
            assert res.batch_status[r] != Status.TRUNCATED
            checked += 1
        for g, m, ig in zip(e["gtIds"], e["gtMatches"][0], e["gtIgnore"], strict=True):
            r = row_of_gid[g]
            assert (res.gold_status[r] == Status.IGNORED) == bool(ig)
            if ig:
                ours = int(det_ids[res.gold_match[r]]) if res.gold_match[r] >= 0 else 0
            else:
                ours = int(det_ids[res.gold_match[r]]) if res.gold_status[r] == Status.MATCHED else 0
            assert ours == int(m), (e["image_id"], e["category_id"], g)
            checked += 1
    return checked


@pytest.fixture(scope="module")
def gt100(thirdparty: Path) -> tuple[Any, Batch]:
    data = json.loads((thirdparty / GT100).read_text())
    return data, coco_batch(data, path=str(thirdparty / GT100))


@pytest.mark.parametrize(("results", "iou_type"), [(BBOX100, "bbox"), (SEGM100, "segm")])
def test_same_matches_as_pycocotools_val2014(
    thirdparty: Path, gt100: tuple[Any, Batch], results: str, iou_type: str
) -> None:
    gt_data, gold = gt100
    dets = json.loads((thirdparty / results).read_text())
    batch = coco_batch(dets, images_from=gold)
    evals = coco_eval_img(gt_data, dets, iou_type)
    n = assert_same_as_cocoeval(gold, batch, evals, MatchSettings(iou_type=iou_type), np.arange(1, len(dets) + 1))  # type: ignore[arg-type]
    assert n > 1000


@pytest.mark.parametrize("iou", [0.5, 0.75, 0.95])
def test_same_matches_other_thresholds(thirdparty: Path, gt100: tuple[Any, Batch], iou: float) -> None:
    gt_data, gold = gt100
    dets = json.loads((thirdparty / BBOX100).read_text())
    batch = coco_batch(dets, images_from=gold)
    evals = coco_eval_img(gt_data, dets, "bbox", iouThrs=np.array([iou]))
    assert_same_as_cocoeval(gold, batch, evals, MatchSettings(iou=iou), np.arange(1, len(dets) + 1))


def test_polygons_vs_polygons(thirdparty: Path) -> None:
    base = thirdparty / "faster_coco_eval/tests/dataset"
    gt_data = json.loads((base / "gt_dataset.json").read_text())
    dt_data = json.loads((base / "dt_dataset.json").read_text())
    dets = dt_data["annotations"] if isinstance(dt_data, dict) else dt_data
    gold = coco_batch(gt_data)
    batch = coco_batch(dets, images_from=gold)
    for iou_type in ("segm", "bbox"):
        evals = coco_eval_img(gt_data, dets, iou_type)
        assert_same_as_cocoeval(gold, batch, evals, MatchSettings(iou_type=iou_type), np.arange(1, len(dets) + 1))  # type: ignore[arg-type]


def test_keypoints_same_as_pycocotools(thirdparty: Path) -> None:
    base = thirdparty / "faster_coco_eval/tests/keypoints_dataset"
    files = sorted(p.name for p in base.glob("*.json"))
    gt_name = next(f for f in files if "gt" in f or "val" in f)
    dt_name = next(f for f in files if f != gt_name)
    gt_data = json.loads((base / gt_name).read_text())
    dets = json.loads((base / dt_name).read_text())
    dets = dets["annotations"] if isinstance(dets, dict) else dets
    gold = coco_batch(gt_data)
    batch = coco_batch(dets, images_from=gold)
    evals = coco_eval_img(gt_data, dets, "keypoints", maxDets=[100])
    assert_same_as_cocoeval(gold, batch, evals, MatchSettings(iou_type="keypoints"), np.arange(1, len(dets) + 1))


# ---------------------------------------------------------------------------
# synthetic cases


def _doc(anns: list[dict[str, Any]], cats: tuple[str, ...] = ("person", "car")) -> dict[str, Any]:
    return {
        "images": [
            {"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
            {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100},
        ],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(cats)],
        "annotations": [
            {"id": k + 1, "iscrowd": 0, **a, "area": a["bbox"][2] * a["bbox"][3]} for k, a in enumerate(anns)
        ],
    }


def test_wrong_class_is_mislabelled_not_missing_plus_extra() -> None:
    gold = coco_batch(_doc([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50]}]))
    batch = coco_batch(_doc([{"image_id": 1, "category_id": 2, "bbox": [11, 10, 50, 50]}]))
    res = match(batch, gold)
    assert res.batch_status.tolist() == [Status.MISLABELLED]
    assert res.gold_status.tolist() == [Status.MISLABELLED]
    assert res.counts()["extra"] == 0 and res.counts()["missing"] == 0
    rows, grows, iou = res.pairs()
    assert rows.tolist() == [0] and grows.tolist() == [0] and iou[0] > 0.9
    assert match(batch, gold, MatchSettings(class_agnostic=False)).counts()["extra"] == 1


def test_images_join_by_file_name_not_id() -> None:
    g = _doc([{"image_id": 1, "category_id": 1, "bbox": [10, 10, 50, 50]}])
    b = _doc([{"image_id": 7, "category_id": 1, "bbox": [10, 10, 50, 50]}])
    b["images"] = [{"id": 7, "file_name": "a.jpg", "width": 200, "height": 100}]
    res = match(coco_batch(b), coco_batch(g))
    assert res.batch_status.tolist() == [Status.MATCHED]
    assert res.images.tolist() == [0]  # b.jpg is not in the batch: not evaluated


def test_crowd_absorbs_as_ignored() -> None:
    gold = coco_batch(_doc([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 100, 100], "iscrowd": 1}]))
    batch = coco_batch(
        _doc(
            [
                {"image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "score": 0.9},
                {"image_id": 1, "category_id": 1, "bbox": [50, 50, 20, 20], "score": 0.8},
            ]
        )
    )
    res = match(batch, gold)
    assert res.batch_status.tolist() == [Status.IGNORED, Status.IGNORED]
    assert res.gold_status.tolist() == [Status.IGNORED]
    assert res.gold_match.tolist() == [1]  # the last absorbed, as COCOeval's gtMatches
    assert res.counts()["extra"] == 0 and res.counts()["missing"] == 0


def test_tie_goes_to_later_golden_and_score_order() -> None:
    gold = coco_batch(
        _doc(
            [
                {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
                {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            ]
        )
    )
    batch = coco_batch(
        _doc(
            [
                {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.1},
                {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
            ]
        )
    )
    res = match(batch, gold)
    # higher score first takes the later of two equal golden objects
    assert res.batch_match.tolist() == [0, 1]


def test_max_dets_truncates_per_image_and_class() -> None:
    gold = coco_batch(_doc([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}]))
    batch = coco_batch(
        _doc([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": s} for s in (0.5, 0.9, 0.7)])
    )
    res = match(batch, gold, MatchSettings(max_dets=2))
    assert res.batch_status.tolist() == [Status.TRUNCATED, Status.MATCHED, Status.UNMATCHED]


def test_restrict_rows_for_agreement() -> None:
    data = _doc(
        [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]},
            {"image_id": 1, "category_id": 1, "bbox": [1, 0, 10, 10]},
        ]
    )
    b = coco_batch(data)
    res = match(b, b, batch_rows=[1], gold_rows=[0])
    assert res.batch_status.tolist() == [Status.UNEVALUATED, Status.MATCHED]
    assert res.gold_status.tolist() == [Status.MATCHED, Status.UNEVALUATED]


def test_long_conflict_chain_matches_sequential_loop() -> None:
    # 150 boxes in a diagonal chain: every detection overlaps two golden boxes
    g = [{"image_id": 1, "category_id": 1, "bbox": [float(i), 0.0, 10.0, 10.0]} for i in range(150)]
    d = [
        {"image_id": 1, "category_id": 1, "bbox": [i + 0.6, 0.0, 10.0, 10.0], "score": 1 - i / 1000} for i in range(150)
    ]
    gd, dd = _doc(g), _doc(d)
    gold, batch = coco_batch(gd), coco_batch(dd)
    dets = [{**a, "id": None} for a in dd["annotations"]]
    for a in dets:
        a.pop("id")
    evals = coco_eval_img(gd, dets, "bbox", maxDets=[200])
    assert_same_as_cocoeval(gold, batch, evals, MatchSettings(max_dets=200), np.arange(1, 151))


def test_box_iou_matches_pycocotools() -> None:
    from pycocotools import mask as mu

    rng = np.random.default_rng(1)
    d = rng.uniform(0, 50, (30, 4))
    g = rng.uniform(0, 50, (20, 4))
    crowd = rng.uniform(size=20) < 0.3
    np.testing.assert_array_equal(box_iou(d, g, crowd), mu.iou(d.tolist(), g.tolist(), crowd.astype(int).tolist()))


def test_sigmas_and_settings() -> None:
    assert len(COCO_KEYPOINT_SIGMAS) == 17
    with pytest.raises(ValueError):
        MatchSettings(iou_type="mask")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        MatchSettings(max_dets=0)


@pytest.mark.parametrize(("results", "iou_type"), [(BBOX100, "bbox"), (SEGM100, "segm")])
def test_same_matches_through_the_coco_reader(thirdparty: Path, results: str, iou_type: str) -> None:
    """The same conformance, with both files read by annogate's own COCO reader."""
    formats = pytest.importorskip("annogate.formats")
    gold = formats.load_batch(thirdparty / GT100)
    batch = formats.load_batch(thirdparty / results, images_from=gold)
    gt_data = json.loads((thirdparty / GT100).read_text())
    dets = json.loads((thirdparty / results).read_text())
    evals = coco_eval_img(gt_data, dets, iou_type)
    assert_same_as_cocoeval(gold, batch, evals, MatchSettings(iou_type=iou_type), np.arange(1, len(dets) + 1))  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_numpy_rasteriser_equals_pycocotools(seed: int) -> None:
    """The vectorised rleFrPoly: same areas and same IoUs as pycocotools, pixel for pixel,
    on convex, star-shaped, self-intersecting, grid-aligned (ties), degenerate and
    partly-outside polygons."""
    from pycocotools import mask as mu

    from annogate.masks import raster_iou, rasterise

    rng = np.random.default_rng(seed)
    n, h, w = 600, int(rng.integers(20, 200)), int(rng.integers(20, 200))
    polys = []
    for i in range(n):
        k = int(rng.integers(3, 20))
        kind = i % 5
        if kind == 0:
            pts = rng.uniform(-20, w + 20, (k, 2))
        elif kind == 1:
            cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(0.3, 60)
            a = np.sort(rng.uniform(0, 2 * np.pi, k))
            rad = r * rng.uniform(0.3, 1, k)
            pts = np.stack([cx + rad * np.cos(a), cy + rad * np.sin(a)], 1)
        elif kind == 2:
            pts = np.round(rng.uniform(-5, w + 5, (k, 2))) * rng.choice([1, 0.5, 0.2, 0.1])
        elif kind == 3:
            x, y = rng.uniform(-3, w), rng.uniform(-3, h)
            bw, bh = rng.uniform(0, 40, 2)
            pts = np.array([[x, y], [x, y + bh], [x + bw, y + bh], [x + bw, y]])
        else:
            pts = rng.uniform(0, w, (k, 2))
            pts[rng.integers(0, k)] = pts[rng.integers(0, k)]
        polys.append(pts.ravel())
    npts = np.array([len(p) // 2 for p in polys])
    start = np.r_[0, np.cumsum([len(p) for p in polys])[:-1]]
    ras = rasterise(np.concatenate(polys), start, npts, np.full(n, h), np.full(n, w))
    assert ras.ok.all()
    rles = mu.frPyObjects([p.tolist() for p in polys], h, w)
    np.testing.assert_array_equal(ras.area, [mu.area(x) for x in rles])
    pa, pb = rng.integers(0, n, 3000), rng.integers(0, n, 3000)
    crowd = rng.uniform(size=3000) < 0.2
    ref = [
        mu.iou([rles[a]], [rles[b]], [int(c)])[0][0]
        for a, b, c in zip(pa.tolist(), pb.tolist(), crowd.tolist(), strict=True)
    ]
    np.testing.assert_array_equal(raster_iou(ras, pa, ras, pb, crowd), ref)


def test_segm_mixes_fast_and_pycocotools_objects() -> None:
    """Multi-ring polygons and RLE masks go through pycocotools; matches stay COCOeval's."""
    from pycocotools import mask as mu

    def sq(x: float, y: float, s: float) -> list[float]:
        return [x, y, x + s, y, x + s, y + s, x, y + s]

    rle = mu.encode(np.asfortranarray((np.indices((100, 200))[1] < 40).astype(np.uint8)))  # columns 0-39
    rle["counts"] = rle["counts"].decode()
    g = _doc(
        [
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 40, 100], "segmentation": rle},
            {
                "image_id": 1,
                "category_id": 1,
                "bbox": [100, 10, 50, 20],
                "segmentation": [sq(100, 10, 20), sq(130, 10, 20)],
            },
            {"image_id": 1, "category_id": 2, "bbox": [60, 50, 30, 30], "segmentation": [sq(60, 50, 30)]},
        ]
    )
    d = _doc(
        [
            {
                "image_id": 1,
                "category_id": 1,
                "bbox": [0, 0, 38, 100],
                "segmentation": [[0, 0, 38, 0, 38, 100, 0, 100]],
                "score": 0.9,
            },
            {
                "image_id": 1,
                "category_id": 1,
                "bbox": [100, 10, 50, 20],
                "segmentation": [sq(101, 10, 20), sq(131, 10, 20)],
                "score": 0.8,
            },
            {"image_id": 1, "category_id": 2, "bbox": [61, 50, 30, 30], "score": 0.7},
        ]
    )
    dets = [{k: v for k, v in a.items() if k != "id"} for a in d["annotations"]]
    gold, batch = coco_batch(g), coco_batch(d)
    evals = coco_eval_img(g, dets, "segm")
    assert_same_as_cocoeval(gold, batch, evals, MatchSettings(iou_type="segm"), np.arange(1, 4))
    assert match(batch, gold, MatchSettings(iou_type="segm")).counts()["matched"] == 3


# ---------------------------------------------------------------------------
# hostile geometry never reaches pycocotools' C code (issue 8)

_HOSTILE_SCRIPT = """
import json, sys
from builders import Obj, make_batch
from annogate.matching import MatchSettings, match

case = json.loads(sys.argv[1])
side = case.pop("side")
good = Obj(image="a.jpg", category="person", bbox=[10, 10, 40, 40], polygons=[[10, 10, 50, 10, 50, 50, 10, 50]])
bad = Obj(image="a.jpg", category="person", bbox=case.pop("bbox", [10, 10, 40, 40]), **case)
imgs = {"a.jpg": (100, 100)}
batch = make_batch([bad if side == "batch" else good, good], images=imgs, categories=["person"])
gold = make_batch([bad if side == "golden" else good], images=imgs, categories=["person"])
res = match(batch, gold, MatchSettings(iou_type="segm"))
print(json.dumps({"counts": res.counts(), "unmatchable": res.meta["unmatchable"]}))
"""

_HUGE = 1e308
_HOSTILE = {
    "polygon_1e308": {"polygons": [[0, 0, _HUGE, 0, _HUGE, _HUGE, 0, _HUGE]]},
    "two_rings_1e308": {"polygons": [[0, 0, 5, 0, 5, 5], [0, 0, _HUGE, 0, _HUGE, _HUGE]]},
    "short_ring_1e308": {"polygons": [[_HUGE, _HUGE, 0, 0]]},
    "polygon_1e8_pixels": {"polygons": [[0, 0, 1e8, 0, 1e8, 1e8], [0, 0, 5, 0, 5, 5]]},
    "box_1e308": {"bbox": [0, 0, _HUGE, _HUGE], "area": 100.0},
    "rle_counts_overrun": {"rle": {"size": [100, 100], "counts": [0, 20000]}},
    "rle_string_overrun": {"rle": {"size": [100, 100], "counts": "0" + "o" * 50}},
    "rle_wraps_int64": {"rle": {"size": [100, 100], "counts": [2**62] * 4 + [10000]}},
    "rle_wrong_size": {"rle": {"size": [50, 50], "counts": [2500]}},
}


@pytest.mark.parametrize("side", ["batch", "golden"])
@pytest.mark.parametrize("case", sorted(_HOSTILE))
def test_hostile_masks_match_nothing_and_never_reach_c(case: str, side: str) -> None:
    """Each case crashed (segfault), hung (endless loop in C) or ate gigabytes before;
    run in a subprocess with a timeout so that a regression fails this test instead of
    killing pytest."""
    import subprocess
    import sys

    arg = json.dumps({**_HOSTILE[case], "side": side})
    proc = subprocess.run(
        [sys.executable, "-c", _HOSTILE_SCRIPT, arg],
        cwd=Path(__file__).resolve().parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-2000:])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    counts = out["counts"]
    if side == "batch":  # the hostile object is an extra, its good twin still matches
        assert (counts["matched"], counts["extra"], counts["missing"]) == (1, 1, 0), out
        assert out["unmatchable"] == {"batch": 1, "golden": 0}
    else:  # the golden object is hostile: nothing matches it
        assert (counts["matched"], counts["extra"], counts["missing"]) == (0, 2, 1), out
        assert out["unmatchable"] == {"batch": 0, "golden": 1}


@pytest.mark.parametrize(("results", "iou_type"), [(BBOX100, "bbox"), (SEGM100, "segm")])
def test_sweep_pruning_is_exact(
    thirdparty: Path, gt100: tuple[Any, Batch], results: str, iou_type: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The x-sweep that prunes candidate pairs (used on crowded images) gives pycocotools' matches too."""
    import annogate.matching as m

    monkeypatch.setattr(m, "_DIRECT_PER_OBJECT", -1)  # always sweep
    gt_data, gold = gt100
    dets = json.loads((thirdparty / results).read_text())
    batch = coco_batch(dets, images_from=gold)
    evals = coco_eval_img(gt_data, dets, iou_type)
    st = MatchSettings(iou_type=iou_type)  # type: ignore[arg-type]
    assert assert_same_as_cocoeval(gold, batch, evals, st, np.arange(1, len(dets) + 1)) > 1000
    monkeypatch.setattr(m, "_DIRECT_PER_OBJECT", 10**9)  # never sweep: both passes agree
    direct = match(batch, gold, st)
    monkeypatch.setattr(m, "_DIRECT_PER_OBJECT", -1)
    swept = match(batch, gold, st)
    np.testing.assert_array_equal(direct.batch_match, swept.batch_match)
    np.testing.assert_array_equal(direct.batch_status, swept.batch_status)


def test_crowded_image_sweep_matches_pycocotools() -> None:
    """400 overlapping boxes on one image (the sweep's case), against COCOeval."""
    rng = np.random.default_rng(3)
    g = [
        {"image_id": 1, "category_id": 1, "bbox": [*rng.uniform(0, 150, 2).tolist(), *rng.uniform(5, 40, 2).tolist()]}
        for _ in range(400)
    ]
    d = [
        {
            "image_id": 1,
            "category_id": 1,
            "bbox": [float(v) for v in np.asarray(a["bbox"]) + rng.normal(0, 2, 4)],
            "score": float(rng.uniform()),
        }
        for a in g
    ]
    gd, dd = _doc(g), _doc(d)
    dets = [{k: v for k, v in a.items() if k != "id"} for a in dd["annotations"]]
    evals = coco_eval_img(gd, dets, "bbox", maxDets=[1000])
    assert_same_as_cocoeval(coco_batch(gd), coco_batch(dd), evals, MatchSettings(max_dets=1000), np.arange(1, 401))


def test_too_many_candidates_is_refused_not_attempted() -> None:
    from annogate.matching import MAX_CANDIDATES, TooManyCandidates

    n = int(np.sqrt(MAX_CANDIDATES)) + 2
    same = coco_batch(_doc([{"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10]}] * n))
    with pytest.raises(TooManyCandidates):
        match(same, same, MatchSettings(max_dets=10**6))


def test_ragged_helpers_equal_python_loops() -> None:
    from annogate.ragged import ragged, ranges

    rng = np.random.default_rng(5)
    s = rng.integers(0, 50, 40)
    e = s + rng.integers(-3, 6, 40)  # some empty and some "negative" ranges
    assert ranges(s, e).tolist() == [x for a, b in zip(s.tolist(), e.tolist(), strict=True) for x in range(a, b)]
    c = np.clip(e - s, 0, None)
    owner, pos = ragged(c)
    assert owner.tolist() == [k for k, n in enumerate(c.tolist()) for _ in range(n)]
    assert pos.tolist() == [j for n in c.tolist() for j in range(n)]
    assert ranges([], []).size == 0 and ragged([])[0].size == 0
