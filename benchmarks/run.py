"""annogate's performance table: the whole gate beside its peers, one run, one table.

    python benchmarks/run.py --quick                       # 2k images, a minute
    python benchmarks/run.py                               # 20k images, both batch shapes
    python benchmarks/run.py --images 200000               # the brief's ~540 MB batch
    python benchmarks/run.py --scales 25000,50000,100000,200000 --only-scales   # linearity
    python benchmarks/run.py --extras                      # startup, xdist, many batches

Why one script: the machine is shared and noisy (2 cores), so every figure is printed
beside its peer from the *same* run, and ratios matter more than seconds.

Data (in ``benchmarks/_data/``, git-ignored, deterministic from ``--seed``):

* ``synthetic``: the foundation's batch (``bench_load.generate``): 16-gon polygons,
  6-7 objects per image.
* ``real``: COCO-shaped: 1-20 objects per image (skewed low), polygons of 4-200
  vertices (skewed low, mean ~30) with spikes and concave (star) rings, a few
  multi-ring objects, ~1% crowd objects with uncompressed RLE masks, varied image
  sizes. Each batch folder also holds a golden file (2% honeypot images, jittered)
  and a second annotator on 5% of the images, so every gate has work.

Each contender runs in its own subprocess; peak RSS is that process's
``ru_maxrss`` (for the ``pytest --annogate`` row: the pytest child's). Wall time is
measured inside the process around the work (file read included), except for the
pytest rows, which include interpreter and pytest start-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "_data"
sys.path.insert(0, str(HERE))

from bench_load import generate as generate_synthetic  # noqa: E402

N_CLASSES = 80
CLASSES = [f"class_{k}" for k in range(N_CLASSES)]


# -- data ------------------------------------------------------------------------------


def _ring(rng: random.Random, cx: float, cy: float, r: float, n: int, w: int, h: int) -> list[float]:
    """A ring of ``n`` vertices: a wobbly star (concave when ``n`` >= 6) with the odd spike."""
    star = n >= 6 and rng.random() < 0.5
    spike_at = rng.randrange(n) if rng.random() < 0.3 else -1
    out: list[float] = []
    phase = rng.uniform(0, 2 * math.pi)
    for v in range(n):
        a = phase + 2 * math.pi * v / n
        rr = r * rng.uniform(0.85, 1.15)
        if star and v % 2:
            rr *= 0.45
        if v == spike_at:
            rr *= 3.0
        x = min(max(cx + rr * math.cos(a), 0.0), w - 0.01)
        y = min(max(cy + rr * math.sin(a), 0.0), h - 0.01)
        out += [round(x, 2), round(y, 2)]
    return out


def _shoelace(ring: list[float]) -> float:
    xs, ys = ring[0::2], ring[1::2]
    n = len(xs)
    return abs(sum(xs[k] * ys[(k + 1) % n] - xs[(k + 1) % n] * ys[k] for k in range(n))) / 2


def _crowd_rle(rng: random.Random, h: int, w: int, box: list[float]) -> dict[str, Any]:
    """Uncompressed (column-major) RLE of the box, as COCO crowd regions are written."""
    x0, y0 = int(box[0]), int(box[1])
    x1, y1 = min(w, int(box[0] + box[2]) + 1), min(h, int(box[1] + box[3]) + 1)
    counts: list[int] = []
    pos = 0
    for x in range(x0, x1):
        start = x * h + y0
        counts += [start - pos, y1 - y0]
        pos = start + (y1 - y0)
    counts.append(h * w - pos)
    return {"size": [h, w], "counts": counts}


def generate_real(path: Path, *, images: int, seed: int = 0) -> int:
    """Write a COCO-shaped batch (see the module docstring); return its annotation count."""
    rng = random.Random(seed)
    sizes = [(640, 480), (640, 427), (500, 375), (480, 640), (1024, 768), (1920, 1080)]
    cats = [{"id": k + 1, "name": CLASSES[k], "supercategory": "thing"} for k in range(N_CLASSES)]
    dims = [sizes[rng.randrange(len(sizes))] for _ in range(images)]
    with open(path, "w") as f:
        f.write('{"info": {"description": "real-shaped synthetic"},\n"images": [\n')
        for i, (w, h) in enumerate(dims):
            f.write(json.dumps({"id": i + 1, "file_name": f"img_{i:07d}.jpg", "width": w, "height": h}))
            f.write(",\n" if i + 1 < images else "\n")
        f.write('],\n"annotations": [\n')
        aid = 0
        first = True
        for i, (w, h) in enumerate(dims):
            for _ in range(1 + int(19 * rng.random() ** 2)):
                aid += 1
                r = rng.uniform(4, min(w, h) / 5)
                cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
                crowd = rng.random() < 0.01
                rings = [_ring(rng, cx, cy, r, 4 + int(196 * rng.random() ** 6), w, h)]
                if not crowd and rng.random() < 0.05:  # a second part of the object
                    rings.append(_ring(rng, min(cx + 1.6 * r, w - r), cy, r / 2, 4 + rng.randrange(20), w, h))
                xs = [v for rg in rings for v in rg[0::2]]
                ys = [v for rg in rings for v in rg[1::2]]
                box = [min(xs), min(ys), round(max(xs) - min(xs), 2), round(max(ys) - min(ys), 2)]
                seg: Any = _crowd_rle(rng, h, w, box) if crowd else rings
                area = box[2] * box[3] * 0.8 if crowd else sum(map(_shoelace, rings))
                ann = {
                    "id": aid,
                    "image_id": i + 1,
                    "category_id": 1 + min(N_CLASSES - 1, int(N_CLASSES * rng.random() ** 2)),
                    "iscrowd": int(crowd),
                    "segmentation": seg,
                    "area": round(area, 2),
                    "bbox": box,
                }
                f.write(("" if first else ",\n") + json.dumps(ann, separators=(",", ":")))
                first = False
        f.write('\n],\n"categories": ' + json.dumps(cats) + "\n}\n")
    return aid


def make_golden_and_annotators(batch: Path, golden: Path, *, seed: int = 0) -> None:
    """Honeypots (2% of images, boxes jittered by up to 2%) and a second annotator on 5% of images.

    Rewrites ``batch`` once through orjson (fine: generation is not measured).
    """
    import orjson

    rng = random.Random(seed + 1)
    doc = orjson.loads(batch.read_bytes())
    imgs = doc["images"]
    honey = {im["id"] for im in imgs if rng.random() < 0.02}
    second = {im["id"] for im in imgs if rng.random() < 0.05}
    g_anns = []
    extra = []
    next_id = max((a["id"] for a in doc["annotations"]), default=0) + 1
    for a in doc["annotations"]:
        a["annotator_id"] = "alice"
        if a["image_id"] in honey:
            b = a["bbox"]
            g_anns.append(
                {
                    "id": len(g_anns) + 1,
                    "image_id": a["image_id"],
                    "category_id": a["category_id"],
                    "iscrowd": a.get("iscrowd", 0),
                    "bbox": [round(v * rng.uniform(0.99, 1.01), 2) for v in b],
                    "area": a["area"],
                }
            )
        if a["image_id"] in second and not a.get("iscrowd"):
            b = [round(v * rng.uniform(0.99, 1.01), 2) for v in a["bbox"]]
            cid = a["category_id"] if rng.random() < 0.9 else 1 + rng.randrange(N_CLASSES)
            extra.append(
                {
                    "id": next_id,
                    "image_id": a["image_id"],
                    "category_id": cid,
                    "iscrowd": 0,
                    "bbox": b,
                    "area": round(b[2] * b[3], 2),
                    "annotator_id": "bob",
                }
            )
            next_id += 1
    doc["annotations"] += extra
    gold = {
        "images": [im for im in imgs if im["id"] in honey],
        "annotations": g_anns,
        "categories": doc["categories"],
    }
    golden.write_bytes(orjson.dumps(gold))
    # one element per line, as exporters write them (line numbers stay meaningful)
    with open(batch, "wb") as f:
        f.write(b'{"info": {"description": "synthetic"},\n"images": [\n')
        f.write(b",\n".join(map(orjson.dumps, imgs)))
        f.write(b'\n],\n"annotations": [\n')
        f.write(b",\n".join(map(orjson.dumps, doc["annotations"])))
        f.write(b'\n],\n"categories": ' + orjson.dumps(doc["categories"]) + b"\n}\n")


RULES = """pack = "detection"
golden = "golden.json"
[taxonomy]
classes = {classes}
"""


def batch_dir(kind: str, images: int, seed: int) -> Path:
    """``_data/<kind>_<images>/``: batch.json, golden.json, annogate.toml (made once, reused)."""
    d = DATA / f"{kind}_{images}_s{seed}"
    batch = d / "batch.json"
    if batch.exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    # in a child: ru_maxrss is inherited across fork+exec, so this process must stay small
    subprocess.run([sys.executable, __file__, "--generate", kind, str(images), str(seed)], check=True)
    return d


def _generate(kind: str, images: int, seed: int) -> None:
    d = DATA / f"{kind}_{images}_s{seed}"
    batch = d / "batch.json"
    t = time.perf_counter()
    tmp = d / "batch.json.part"
    if kind == "synthetic":
        generate_synthetic(tmp, images=images, per_image=6, vertices=16, seed=seed)
    else:
        generate_real(tmp, images=images, seed=seed)
    make_golden_and_annotators(tmp, d / "golden.json", seed=seed)
    (d / "annogate.toml").write_text(RULES.format(classes=json.dumps(CLASSES)))
    tmp.rename(batch)
    print(f"generated {d.name} in {time.perf_counter() - t:.0f} s", file=sys.stderr)


# -- contenders ------------------------------------------------------------------------

_T0 = "t0=time.perf_counter()\n"
_T1 = "t=time.perf_counter()-t0\n"

RUNNERS: dict[str, str] = {
    "python start (RSS floor)": _T0 + _T1,
    "json.loads": _T0 + "import json; d=json.loads(open(P,'rb').read())\n" + _T1,
    "orjson.loads (gc on)": _T0 + "import orjson; d=orjson.loads(open(P,'rb').read())\n" + _T1,
    "orjson.loads (gc off)": "import gc; gc.disable()\n"
    + _T0
    + "import orjson; d=orjson.loads(open(P,'rb').read())\n"
    + _T1,
    "msgspec.json.decode generic (gc off)": "import gc; gc.disable()\n"
    + _T0
    + "import msgspec; d=msgspec.json.decode(open(P,'rb').read())\n"
    + _T1,
    "msgspec typed Structs, whole file (gc off)": "import gc; gc.disable()\n"
    + "from annogate.formats._coco_typed import decode_document\n"
    + _T0
    + "d=decode_document(open(P,'rb').read())\n"
    + _T1,
    "prototype: msgspec typed -> columns (chunked)": "from annogate.formats._coco_typed import load_coco_typed\n"
    + _T0
    + "b=load_coco_typed(P)\n"
    + _T1
    + "extra['errors']=len(b.problems)\n",
    "pycocotools.COCO": "import contextlib,io\nfrom pycocotools.coco import COCO\n"
    + _T0
    + "with contextlib.redirect_stdout(io.StringIO()): d=COCO(P)\n"
    + _T1,
    "faster_coco_eval.COCO": "import contextlib,io\nfrom faster_coco_eval import COCO\n"
    + _T0
    + "with contextlib.redirect_stdout(io.StringIO()): d=COCO(P)\n"
    + _T1,
    "annogate load_batch": "from annogate import load_batch\n" + _T0 + "d=load_batch(P)\n" + _T1,
    # the whole gate as Engine.run_batch does it, one stage at a time so each is timed
    "annogate whole gate (Engine)": """
from pathlib import Path
import tempfile
from annogate.engine import Engine
from annogate.session import write_artifacts
p=Path(P)
e=Engine()
t0=time.perf_counter()
e.load(p)
extra['load']=time.perf_counter()-t0
run=e.run_batch(p, [])
for g in e.gates:
    t1=time.perf_counter(); run.gates[g.name]=e.run_gate(p, g.name); extra[g.name]=time.perf_counter()-t1
    extra['verdict_'+g.name]=run.gates[g.name].verdict
t1=time.perf_counter()
out=tempfile.mkdtemp()
write_artifacts([run.outcome()], engine=e, report_path=out+'/r.json', rework_path=out+'/r.csv', github=False)
extra['cost+report']=time.perf_counter()-t1
e.release(p)
t=time.perf_counter()-t0
extra['n_annotations']=run.n_annotations
""",
}

PYTEST_ROW = "pytest --annogate (whole session)"
DATUMARO_ROW = "datumaro Validator (detection)"
DATUMARO_PY = Path("/tmp/dmvenv/bin/python")

DATUMARO_CODE = """
import shutil, tempfile, os, logging
logging.disable(logging.CRITICAL)
root=tempfile.mkdtemp(); os.makedirs(root+'/annotations'); os.makedirs(root+'/images/default')
os.symlink(os.path.abspath(P), root+'/annotations/instances_default.json')
t0=time.perf_counter()
from datumaro.components.dataset import Dataset
from datumaro.plugins.validators import DetectionValidator
ds=Dataset.import_from(root, 'coco_instances')
rep=DetectionValidator().validate(ds)
t=time.perf_counter()-t0
extra['reports']=len(rep.get('validation_reports', []))
"""


def child_env() -> dict[str, str]:
    """Children cache bytecode (in ``_data/pycache``, not the source tree) even where the
    environment sets PYTHONDONTWRITEBYTECODE: users' installs have .pyc files, and
    compiling annogate's sources on every run (~1 s) is not what a user pays."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(DATA / "pycache")
    return env


def warm_up() -> None:
    """Write the bytecode cache once (whole gate on the example batch, peers imported)."""
    example = ROOT / "examples" / "clean" / "batch.json"
    _child(RUNNERS["annogate whole gate (Engine)"], example, cwd=example.parent.parent)
    _child("import orjson, msgspec, pycocotools.coco, faster_coco_eval, xdist\nt=0", example)
    subprocess.run([sys.executable, "-m", "pytest", "--version"], env=child_env(), capture_output=True, check=False)


def _child(code: str, path: Path, *, python: str = sys.executable, cwd: Path | None = None) -> dict[str, Any]:
    wrapped = (
        "import time,resource,json,sys\nP=sys.argv[1]\nextra={}\n"
        + code
        + "\nprint('@@'+json.dumps({'seconds':t,'peak_mb':resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024,"
        "'extra':extra}))"
    )
    out = subprocess.run(
        [python, "-c", wrapped, str(path)], capture_output=True, text=True, check=False, cwd=cwd, env=child_env()
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("@@")]
    if out.returncode != 0 or not lines:
        return {"error": (out.stderr.strip().splitlines() or ["?"])[-1][:200]}
    res: dict[str, Any] = json.loads(lines[-1][2:])
    return res


def run_pytest(args: list[str], *, cwd: Path) -> dict[str, Any]:
    """Wall time and peak RSS of a ``python -m pytest`` child (measured by a fresh parent)."""
    code = f"""
import subprocess
t0=time.perf_counter()
r=subprocess.run([sys.executable,'-m','pytest',*{args!r}], cwd={str(cwd)!r}, capture_output=True, text=True)
t=time.perf_counter()-t0
extra['rc']=r.returncode
extra['tail']=r.stdout.strip().splitlines()[-1][:160] if r.stdout.strip() else r.stderr[-160:]
import resource as R
extra['child_peak_mb']=R.getrusage(R.RUSAGE_CHILDREN).ru_maxrss/1024
"""
    res = _child(code, cwd)
    if "extra" in res:
        res["peak_mb"] = res["extra"]["child_peak_mb"]
    return res


def pytest_args(*paths: Path, report: Path | None = None) -> list[str]:
    out = ["--annogate", "-q", "-p", "no:cacheprovider", *map(str, paths)]
    if report is not None:
        out += ["--annogate-report", str(report)]
    return out


# -- table -----------------------------------------------------------------------------


def table(results: dict[str, dict[str, Any]], size_mb: float) -> str:
    base = results.get("orjson.loads (gc off)", {}).get("seconds")
    rows = ["| contender | wall s | x orjson (gc off) | peak MiB | x file size |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        if "error" in r:
            rows.append(f"| {name} | {r['error']} | | | |")
            continue
        ratio = f"{r['seconds'] / base:.2f}" if base else "-"
        rows.append(f"| {name} | {r['seconds']:.2f} | {ratio} | {r['peak_mb']:.0f} | {r['peak_mb'] / size_mb:.2f} |")
    return "\n".join(rows)


def stages(r: dict[str, Any]) -> str:
    ex = r.get("extra", {})
    keys = [k for k, v in ex.items() if isinstance(v, float)]
    return ", ".join(f"{k} {ex[k]:.2f} s" for k in keys) + (
        "; verdicts: " + ", ".join(f"{k[8:]}={v}" for k, v in ex.items() if k.startswith("verdict_"))
    )


def datumaro_ok() -> bool:
    if not DATUMARO_PY.exists():
        return False
    r = subprocess.run([str(DATUMARO_PY), "-c", "import datumaro"], capture_output=True, check=False)
    return r.returncode == 0


def bench_batch(kind: str, images: int, seed: int, skip: set[str]) -> None:
    d = batch_dir(kind, images, seed)
    path = d / "batch.json"
    size_mb = path.stat().st_size / 2**20
    n_ann = sum(1 for _ in open(path, "rb")) - images - 8  # one element per line
    print(f"\n### {kind}: {images:,} images, ~{n_ann:,} annotations, {size_mb:.0f} MiB (`{d.name}`)\n")
    results: dict[str, dict[str, Any]] = {}
    for name, code in RUNNERS.items():
        if name in skip:
            continue
        results[name] = _child(code, path, cwd=d)
    if DATUMARO_ROW not in skip:
        if datumaro_ok():
            results[DATUMARO_ROW] = _child(DATUMARO_CODE, path, python=str(DATUMARO_PY))
        else:
            results[DATUMARO_ROW] = {"error": "skipped: datumaro did not install (see README)"}
    if PYTEST_ROW not in skip:
        results[PYTEST_ROW] = run_pytest(pytest_args(path, report=Path("/tmp/annogate_bench_report.json")), cwd=d)
    print(table(results, size_mb))
    g = results.get("annogate whole gate (Engine)", {})
    if "extra" in g:
        print(f"\nwhole-gate stages: {stages(g)}")
    p = results.get(PYTEST_ROW, {})
    if "extra" in p:
        print(f"pytest: exit {p['extra']['rc']}, `{p['extra']['tail']}`")
    sys.stdout.flush()


def bench_scales(scales: list[int], seed: int) -> None:
    """Seconds per million annotations per stage at each scale (linearity)."""
    print("\n### linearity (synthetic batch): seconds per million annotations\n")
    rows: list[tuple[int, int, float, dict[str, Any], dict[str, Any]]] = []
    for n in scales:
        d = batch_dir("synthetic", n, seed)
        path = d / "batch.json"
        n_ann = sum(1 for _ in open(path, "rb")) - n - 8
        o = _child(RUNNERS["orjson.loads (gc off)"], path, cwd=d)
        g = _child(RUNNERS["annogate whole gate (Engine)"], path, cwd=d)
        rows.append((n, n_ann, path.stat().st_size / 2**20, o, g))
    gates = [k for k, v in rows[0][4].get("extra", {}).items() if isinstance(v, float)]
    print(
        "| images | annotations | MiB | orjson (gc off) | "
        + " | ".join(gates)
        + " | whole gate | load / orjson | whole / orjson | peak MiB | peak / file |"
    )
    print("|---:|---:|---:|---:|" + "---:|" * len(gates) + "---:|---:|---:|---:|---:|")
    for n, n_ann, mb, o, g in rows:
        per = 1e6 / n_ann
        cells = [f"{g['extra'][k] * per:.2f}" for k in gates] if "extra" in g else ["err"] * len(gates)
        whole = f"{g['seconds'] * per:.2f}" if "seconds" in g else "err"
        ok = "seconds" in g and "seconds" in o
        lo = f"{g['extra']['load'] / o['seconds']:.2f}" if ok else "-"
        wo = f"{g['seconds'] / o['seconds']:.2f}" if ok else "-"
        peak = g.get("peak_mb", 0)
        print(
            f"| {n:,} | {n_ann:,} | {mb:.0f} | {o['seconds'] * per:.2f} | "
            + " | ".join(cells)
            + f" | {whole} | {lo} | {wo} | {peak:.0f} | {peak / mb:.2f} |"
        )
    sys.stdout.flush()


# -- extras: start-up, xdist, many batches ----------------------------------------------


def bench_startup(repeats: int) -> None:
    """pytest start-up with annogate installed vs ``-p no:annogate`` (alternating, median)."""
    work = DATA / "startup"
    work.mkdir(parents=True, exist_ok=True)
    (work / "test_trivial.py").write_text("def test_ok():\n    assert True\n")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_trivial.py"]
    times: dict[str, list[float]] = {"with annogate": [], "-p no:annogate": []}
    for _ in range(repeats):
        for label, extra in (("with annogate", []), ("-p no:annogate", ["-p", "no:annogate"])):
            t = time.perf_counter()
            subprocess.run(cmd + extra, cwd=work, capture_output=True, check=True, env=child_env())
            times[label].append(time.perf_counter() - t)
    a, b = (statistics.median(v) * 1000 for v in times.values())
    # what the plugin module itself costs once pytest is imported (robust to machine noise)
    cost = _child(
        "import pytest, sys\nbefore=set(sys.modules)\n"
        + _T0
        + "import annogate.plugin\n"
        + _T1
        + "new=sorted(set(sys.modules)-before)\nextra['new']=len(new)\n"
        + "extra['heavy']=[m for m in new if m.split('.')[0] in ('numpy','jsonschema','orjson','scipy','shapely')]",
        work,
    )
    ex = cost.get("extra", {})
    print(f"\n### pytest start-up without --annogate ({repeats} alternating runs, median)\n")
    print("| session | median ms |\n|---|---:|")
    print(f"| annogate installed (plugin loaded) | {a:.0f} |\n| `-p no:annogate` | {b:.0f} |")
    print(
        f"\ndifference: {a - b:+.0f} ms (wall, noisy); importing annogate.plugin after pytest: "
        f"{cost.get('seconds', float('nan')) * 1000:.1f} ms, {ex.get('new')} new modules, heavy ones: {ex.get('heavy')}"
    )
    sys.stdout.flush()


def bench_xdist(images: int, n_batches: int, seed: int) -> None:
    """``n_batches`` batches in one folder: no xdist vs ``-n 1`` vs ``-n 2`` (and ``--dist loadfile``)."""
    src = batch_dir("real", images, seed)
    d = DATA / f"xdist_{n_batches}x{images}"
    if not d.exists():
        d.mkdir(parents=True)
        shutil.copy(src / "golden.json", d / "golden.json")
        shutil.copy(src / "annogate.toml", d / "annogate.toml")
        for k in range(n_batches):
            shutil.copy(src / "batch.json", d / f"batch_{k:02d}.json")
    size = sum(p.stat().st_size for p in d.glob("batch_*.json")) / 2**20
    print(f"\n### {n_batches} batches of {images:,} real-shaped images ({size:.0f} MiB in all), pytest-xdist\n")
    res: dict[str, dict[str, Any]] = {}
    for label, extra in (
        ("no xdist", []),
        ("-n 1", ["-n", "1"]),
        ("-n 2", ["-n", "2"]),
        ("-n 2 --dist loadfile", ["-n", "2", "--dist", "loadfile"]),
    ):
        res[label] = run_pytest(pytest_args(d) + extra, cwd=d)
    base = res["-n 1"].get("seconds")
    print("| session | wall s | speed-up vs -n 1 | peak MiB (largest process) | tail |\n|---|---:|---:|---:|---|")
    for label, r in res.items():
        if "error" in r:
            print(f"| {label} | {r['error']} | | | |")
            continue
        print(
            f"| {label} | {r['seconds']:.1f} | {base / r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['extra']['tail']} |"
        )
    sys.stdout.flush()


def bench_many(images: int, n_batches: int, seed: int) -> None:
    """One batch vs ``n_batches`` batches in one session: peak RSS should not grow."""
    src = batch_dir("synthetic", images, seed)
    one, many = DATA / f"many_1x{images}", DATA / f"many_{n_batches}x{images}"
    for d, n in ((one, 1), (many, n_batches)):
        if not d.exists():
            d.mkdir(parents=True)
            shutil.copy(src / "golden.json", d / "golden.json")
            shutil.copy(src / "annogate.toml", d / "annogate.toml")
            for k in range(n):
                shutil.copy(src / "batch.json", d / f"batch_{k:02d}.json")
    mb = (src / "batch.json").stat().st_size / 2**20
    r1 = run_pytest(pytest_args(one), cwd=one)
    rn = run_pytest(pytest_args(many), cwd=many)
    print(f"\n### memory across batches: {n_batches} x {mb:.0f} MiB batches in one session vs one\n")
    print("| session | wall s | peak MiB | x one batch |\n|---|---:|---:|---:|")
    for label, r in (("1 batch", r1), (f"{n_batches} batches", rn)):
        if "error" in r:
            print(f"| {label} | {r['error']} | | |")
            continue
        print(f"| {label} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {r['peak_mb'] / r1.get('peak_mb', 1):.2f} |")
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20000)
    ap.add_argument("--kinds", default="synthetic,real", help="batch shapes to table (synthetic, real)")
    ap.add_argument("--scales", default="", help="comma-separated image counts for the linearity table")
    ap.add_argument("--only-scales", action="store_true", help="only the linearity table")
    ap.add_argument("--extras", action="store_true", help="also start-up, xdist and many-batch memory")
    ap.add_argument("--xdist-images", type=int, default=4000, help="images per batch in the xdist run (8 batches)")
    ap.add_argument("--many-images", type=int, default=4000, help="images per batch in the 20-batch memory run")
    ap.add_argument("--quick", action="store_true", help="2,000 images, no scales, 3 start-up repeats")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip", default="", help="comma-separated contender names to leave out")
    ap.add_argument("--generate", nargs=3, metavar=("KIND", "IMAGES", "SEED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.generate:
        _generate(args.generate[0], int(args.generate[1]), int(args.generate[2]))
        return
    if args.quick:
        args.images, args.scales, args.xdist_images, args.many_images = 2000, "", 500, 500
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    DATA.mkdir(exist_ok=True)
    free = shutil.disk_usage(DATA).free / 2**30
    print(
        f"annogate benchmark: `{' '.join(['python', 'benchmarks/run.py', *sys.argv[1:]])}`; "
        f"cpus={os.cpu_count()}, python {sys.version.split()[0]}, {free:.0f} GiB free"
    )
    warm_up()
    if not args.only_scales:
        for kind in args.kinds.split(","):
            bench_batch(kind.strip(), args.images, args.seed, skip)
    if args.scales:
        bench_scales([int(s) for s in args.scales.split(",")], args.seed)
    if args.extras:
        bench_startup(3 if args.quick else 10)
        bench_xdist(args.xdist_images, 8, args.seed)
        bench_many(args.many_images, 20, args.seed)


if __name__ == "__main__":
    main()
