"""The hostile corpus: every case of issue 8 and the unreadable/hostile-XML class of
issue 13, plus a few per format. Each case writes its files at run time (nothing big
is kept in the repository) and states the outcome the issues demand.

Layout every COCO case shares (``root`` is the label repository, ``out`` a separate
folder for outputs, so that any file created or changed under ``root`` is a bad
write): ``root/annogate.toml``, ``root/batches/b.json``, ``root/golden/golden.json``.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from . import Case, Expect, Run

FAIL = frozenset({1})
PASS = frozenset({0})
USAGE = frozenset({4})

# -- builders -----------------------------------------------------------------


def img(i: int = 1, name: str = "a.jpg", w: int = 640, h: int = 480) -> dict[str, Any]:
    return {"id": i, "file_name": name, "width": w, "height": h}


def cat(i: int = 1, name: str = "car", **kw: Any) -> dict[str, Any]:
    return {"id": i, "name": name, "supercategory": "", **kw}


def box(i: int, x: float, y: float, w: float, h: float, *, im: Any = 1, c: Any = 1, **kw: Any) -> dict[str, Any]:
    return {"id": i, "image_id": im, "category_id": c, "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0, **kw}


def poly(i: int, pts: list[float], *, im: Any = 1, c: Any = 1, **kw: Any) -> dict[str, Any]:
    xs, ys = pts[0::2], pts[1::2]
    x0, y0 = min(xs), min(ys)
    w, h = max(xs) - x0, max(ys) - y0
    a = 0.5 * abs(sum(xs[k] * ys[k - 1] - xs[k - 1] * ys[k] for k in range(len(xs))))
    return {
        "id": i,
        "image_id": im,
        "category_id": c,
        "segmentation": [pts],
        "bbox": [x0, y0, w, h],
        "area": a,
        "iscrowd": 0,
        **kw,
    }


def coco(anns: list[dict[str, Any]], images: list[Any] | None = None, cats: list[Any] | None = None) -> dict[str, Any]:
    return {"images": images or [img()], "categories": cats or [cat()], "annotations": anns}


def write_json(p: Path, data: Any, *, indent: int | None = 1) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(data, indent=indent))
    return p


def write(p: Path, data: str | bytes) -> Path:
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        p.write_bytes(data)
    else:
        p.write_text(data)
    return p


def repo(
    root: Path,
    out: Path,
    batch: Any = None,
    *,
    rules: str = "",
    golden: Any = None,
    raw: str | bytes | None = None,
    name: str = "batches/b.json",
) -> Run:
    """A COCO label repository with one batch; the session runs on ``batches/``."""
    if golden is not None:
        write_json(root / "golden" / "golden.json", golden)
        rules = rules + '\n[golden]\nfile = "golden/golden.json"\n'
    write(root / "annogate.toml", rules)
    if raw is not None:
        write(root / name, raw)
    elif batch is not None:
        write_json(root / name, batch)
    return Run(args=[str(root / "batches")], cwd=root, report=out / "r.json")


def png(w: int, h: int) -> bytes:
    """A valid tiny grayscale PNG of w x h (the readers only look at the header)."""

    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)

    raw = b"".join(b"\0" + b"\0" * w for _ in range(h))
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


CASES: list[Case] = []


Build = Callable[[Path, Path], Run]


def case(name: str, expect: Expect, source: str = "issue 8", **kw: Any) -> Callable[[Build], Build]:
    def deco(fn: Build) -> Build:
        CASES.append(Case(name=name, build=fn, expect=expect, source=source, **kw))
        return fn

    return deco


def by_name() -> dict[str, Case]:
    return {c.name: c for c in CASES}


SEG = 'pack = "segmentation"\n'
KP = 'pack = "keypoints"\n'
SQUARE = [10.0, 10.0, 60.0, 10.0, 60.0, 60.0, 10.0, 60.0]
BIG = 1e308

# -- never crash, never hang: C code gets only validated input ------------------


def _seg_1e308(root: Path, out: Path) -> Run:
    # one vertex far out, the rest in the image: pycocotools rasterises the edge to it (INT_MIN after the cast)
    huge = [10.0, 10.0, BIG, 10.0, BIG, 60.0, 10.0, 60.0]
    anns = [
        poly(1, SQUARE, annotator_id="alice"),
        poly(2, SQUARE, annotator_id="bob"),
        {**poly(3, SQUARE, annotator_id="alice"), "segmentation": [huge], "bbox": [10, 10, BIG, 50]},
        {**poly(4, SQUARE, annotator_id="bob"), "segmentation": [huge], "bbox": [10, 10, BIG, 50]},
    ]
    golden = coco([poly(1, SQUARE), {**poly(2, SQUARE), "segmentation": [huge], "bbox": [10, 10, BIG, 50]}])
    return repo(root, out, coco(anns), rules=SEG, golden=golden)


case("seg_1e308_golden_two_annotators", Expect(exit=FAIL, fails=(("geometry", None),), batches=1), xdist=True)(
    _seg_1e308
)


def _rle(counts: Any, where: str) -> Any:
    def build(root: Path, out: Path) -> Run:
        mask = {"size": [100, 100], "counts": counts}
        good = poly(1, SQUARE, annotator_id="alice")
        bad = {"id": 2, "image_id": 1, "category_id": 1, "segmentation": mask, "bbox": [10, 10, 50, 50]}
        bad.update(area=2500, iscrowd=0, annotator_id="bob")
        im = [img(1, "a.jpg", 100, 100)]
        if where == "batch":
            return repo(root, out, coco([good, bad], im), rules=SEG, golden=coco([poly(1, SQUARE)], im))
        return repo(
            root, out, coco([good, {**poly(2, SQUARE), "annotator_id": "bob"}], im), rules=SEG, golden=coco([bad], im)
        )

    return build


for _counts, _tag in (([0, 20000], "overrun"), ("0" + "o" * 50, "string_o50"), ([2**62] * 4 + [10000], "wrap_2e62")):
    case(
        f"rle_{_tag}_in_batch",
        Expect(
            exit=FAIL,
            fails=(("geometry", None),),
            batches=1,
            note="undecodable mask: geometry finding, matches nothing",
        ),
    )(_rle(_counts, "batch"))
    case(
        f"rle_{_tag}_in_golden",
        Expect(exit=FAIL, batches=1, note="invalid golden mask matches nothing: batch objects unmatched, golden fails"),
    )(_rle(_counts, "golden"))


def _kp_ann(i: int, n_kp: int, **kw: Any) -> dict[str, Any]:
    kps: list[float] = []
    for k in range(n_kp):
        kps += [20 + 5 * k, 30, 2]
    return {**box(i, 10, 10, 60, 60), "keypoints": kps, "num_keypoints": n_kp, **kw}


@case("num_keypoints_2e40", Expect(exit=FAIL, batches=1, note="int32 overflow must be a finding, not a raise"))
def _(root: Path, out: Path) -> Run:
    c = cat(1, "person", keypoints=["a", "b", "c"], skeleton=[[1, 2]])
    ann = {**_kp_ann(1, 3), "num_keypoints": 1099511627776}
    return repo(root, out, coco([ann], cats=[c]), rules=KP, golden=coco([_kp_ann(1, 3)], cats=[c]))


@case(
    "keypoints_5_without_oks_sigmas",
    Expect(exit=FAIL, fails=(("golden", None),), batches=1, reasons=(("golden", "oks_sigmas"),)),
)
def _(root: Path, out: Path) -> Run:
    c = cat(1, "hand", keypoints=["k1", "k2", "k3", "k4", "k5"], skeleton=[])
    return repo(root, out, coco([_kp_ann(1, 5)], cats=[c]), rules=KP, golden=coco([_kp_ann(1, 5)], cats=[c]))


# -- bounded: quadratic pairing, findings, long strings ------------------------


@case("identical_boxes_20k", Expect(exit=FAIL, fails=(("geometry", "duplicate_object"),), batches=1))
def _(root: Path, out: Path) -> Run:
    anns = [box(i, 100, 100, 50, 50) for i in range(1, 20001)]
    return repo(root, out, coco(anns, [img(1, "a.jpg", 1000, 1000)]))


@case("stacked_boxes_64k", Expect(exit=FAIL, fails=(("geometry", "duplicate_object"),), batches=1), slow=True)
def _(root: Path, out: Path) -> Run:
    # left-aligned, each 0.01 px taller than the last: every neighbour overlaps almost fully
    anns = [box(i, 0, 0, 100, 100 + i * 0.01) for i in range(1, 64001)]
    return repo(root, out, raw=json.dumps(coco(anns, [img(1, "a.jpg", 2000, 2000)])))


@case(
    "two_annotators_8k_boxes",
    Expect(exit=PASS, batches=1, note="identical grids from two annotators agree: passes, bounded memory"),
    slow=True,
)
def _(root: Path, out: Path) -> Run:
    anns = []
    k = 0
    for who, dx in (("alice", 0), ("bob", 1)):
        for j in range(8000):
            k += 1
            anns.append(box(k, (j % 90) * 100 + dx, (j // 90) * 100, 50, 50, annotator_id=who))
    im = [img(1, "a.jpg", 10000, 10000)]
    return repo(root, out, raw=json.dumps(coco(anns, im)), rules="[agreement]\nmin_alpha = 0.5\n")


@case(
    "defects_300k",
    Expect(exit=FAIL, counts=(("geometry", "box_nonpositive", 300000),), batches=1, note="findings capped, count full"),
    slow=True,
    timeout=120,
)
def _(root: Path, out: Path) -> Run:
    anns = [box(i, 10, 10, 0, 5) for i in range(1, 300001)]
    return repo(root, out, raw=json.dumps(coco(anns, [img(1, "a.jpg", 1000, 1000)])))


@case(
    "class_name_256k_on_2000_bad_boxes",
    Expect(exit=FAIL, fails=(("geometry", "box_nonpositive"),), batches=1, note="long names truncated in messages"),
)
def _(root: Path, out: Path) -> Run:
    anns = [box(i, 10, 10, 0, 5) for i in range(1, 2001)]
    return repo(root, out, raw=json.dumps(coco(anns, cats=[cat(1, "x" * 262144)])))


@case("polygon_1M_vertices_early", Expect(exit=frozenset({0, 1}), batches=1), slow=True)
def _(root: Path, out: Path) -> Run:
    n = 1_000_000
    pts: list[float] = []
    for k in range(n):
        t = 2 * math.pi * k / n
        pts += [round(500 + 400 * math.cos(t), 3), round(500 + 400 * math.sin(t), 3)]
    big = {"id": 1, "image_id": 1, "category_id": 1, "segmentation": [pts], "bbox": [100, 100, 800, 800]}
    big.update(area=math.pi * 400 * 400, iscrowd=0)
    anns = [big] + [box(i, 10 + i, 10, 5, 5) for i in range(2, 200)]
    return repo(root, out, raw=json.dumps(coco(anns, [img(1, "a.jpg", 1000, 1000)])))


# -- never walked around: decoded keys, exact ids ------------------------------

DANGLING = coco([box(1, 10, 10, 20, 20), box(2, 40, 40, 20, 20, c=99)])


@case("annotations_after_600_spaces", Expect(exit=FAIL, fails=(("schema", "dangling_category_id"),), batches=1))
def _(root: Path, out: Path) -> Run:
    text = json.dumps(DANGLING, indent=1).replace('"annotations": [', '"annotations":' + " " * 600 + "[")
    assert " " * 600 in text
    return repo(root, out, raw=text)


@case("annotations_key_escaped", Expect(exit=FAIL, fails=(("schema", "dangling_category_id"),), batches=1))
def _(root: Path, out: Path) -> Run:
    text = json.dumps(DANGLING, indent=1).replace('"annotations"', '"annot\\u0061tions"')
    return repo(root, out, raw=text)


@case("duplicate_top_level_key", Expect(exit=FAIL, fails=(("schema", None),), batches=1))
def _(root: Path, out: Path) -> Run:
    text = json.dumps(coco([box(1, 10, 10, 20, 20)]), indent=1)
    text = text[:-2] + ',\n "categories": [{"id": 1, "name": "bus", "supercategory": ""}]\n}'
    return repo(root, out, raw=text)


def _ids(anns: list[dict[str, Any]], images: list[dict[str, Any]] | None = None) -> Any:
    return lambda root, out: repo(root, out, coco(anns, images))


case("image_id_negative", Expect(exit=FAIL, fails=(("schema", "dangling_image_id"),), batches=1))(
    _ids([box(1, 10, 10, 20, 20), box(2, 40, 40, 20, 20, im=-5)])
)
case("category_id_negative", Expect(exit=FAIL, fails=(("schema", "dangling_category_id"),), batches=1))(
    _ids([box(1, 10, 10, 20, 20), box(2, 40, 40, 20, 20, c=-3)])
)
for _v in (2**70, 2**63, -1):
    case(f"duplicate_annotation_id_{_v}", Expect(exit=FAIL, fails=(("schema", None),), batches=1))(
        _ids([{**box(1, 10, 10, 20, 20), "id": _v}, {**box(2, 40, 40, 20, 20), "id": _v}])
    )
case("image_id_2e70_vs_2e71", Expect(exit=FAIL, fails=(("schema", None),), batches=1))(
    _ids([box(1, 10, 10, 20, 20, im=2**71)], [img(2**70)])
)
case("image_id_float_1_0", Expect(exit=FAIL, fails=(("schema", None),), batches=1))(
    _ids([box(1, 10, 10, 20, 20, im=1.0)])
)
case("annotation_id_1_0", Expect(exit=FAIL, fails=(("schema", None),), batches=1))(
    _ids([{**box(1, 10, 10, 20, 20), "id": 1.0}])
)

# -- rules: finite numbers, shallow, packs confined -----------------------------

for _tag, _text in (
    ("nan_threshold", "[golden]\nmin_precision = nan\n"),
    ("inf_price", '[cost]\ncurrency = "EUR"\nprice_per_label = inf\n'),
    ("neg_inf_tolerance", "[geometry]\nbox_segmentation_tolerance = -inf\n"),
    ("nan_in_threshold_table", "[geometry.thresholds]\ndefault = { max_count = nan }\n"),
    ("nested_5000", "x = " + "[" * 5000 + "]" * 5000 + "\n"),
):
    case(f"rules_{_tag}", Expect(exit=USAGE, output_has=("annogate",)))(
        lambda root, out, _t=_text: repo(root, out, coco([box(1, 10, 10, 0, 20)]), rules=_t)
    )


def _pack(target: str) -> Any:
    def build(root: Path, out: Path) -> Run:
        lax = "[geometry.thresholds]\ndefault = { max_count = 1000000 }\n"
        evil = root.parent / "evil.toml"  # outside the repository
        write(evil, lax)
        write(root.parent / "x.toml", lax)
        return repo(root, out, coco([box(1, 10, 10, 0, 20)]), rules=f'pack = "{target.format(evil=evil)}"\n')

    return build


case("rules_pack_absolute_path", Expect(exit=USAGE))(_pack("{evil}"))
case("rules_pack_dotdot", Expect(exit=USAGE))(_pack("../x"))
case("rules_pack_dotdot_no_suffix", Expect(exit=USAGE))(_pack("../x.toml"))

# -- never touch the user's files: outputs -------------------------------------

DEFECT = coco([box(1, 10, 10, 20, 20), box(2, 40, 40, 0, 20)])


def _out_over(flag: str, target: str, *, console: bool = False) -> Any:
    def build(root: Path, out: Path) -> Run:
        r = repo(root, out, DEFECT, golden=coco([box(1, 10, 10, 20, 20)]))
        write(root / "r.toml", "")
        r.args += ["--annogate-rules", str(root / "annogate.toml")] if target == "rules" else []
        path = {
            "batch": root / "batches" / "b.json",
            "golden": root / "golden" / "golden.json",
            "rules": root / "annogate.toml",
        }[target]
        r.args += [flag, str(path)]
        r.add_report, r.report, r.console = False, None, console
        return r

    return build


for _flag, _target in (
    ("--annogate-report", "batch"),
    ("--annogate-rework", "golden"),
    ("--junitxml", "rules"),
    ("--annogate-report", "golden"),
    ("--annogate-rework", "batch"),
):
    for _console in (False, True):
        case(
            f"output{_flag.replace('--annogate', '').replace('--', '-')}_over_{_target}{'_console' if _console else ''}",
            Expect(exit=USAGE, note="an output that is an input is refused before any gate runs"),
        )(_out_over(_flag, _target, console=_console))


@case(
    "console_existing_report_before_batch",
    Expect(exit=FAIL, batches=1, note="console script passes arguments through: the report goes to audit.json"),
)
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, DEFECT)
    write(root / "audit.json", "{}")
    write(root / "rework.csv", "")
    r.args = ["--annogate-report", "audit.json", "--annogate-rework", "rework.csv", "batches/b.json"]
    r.add_report, r.report, r.console = False, root / "audit.json", True
    r.allowed_changes = {"audit.json", "rework.csv"}
    return r


@case("console_rules_option_after_folder", Expect(exit=FAIL, fails=(("schema", None),), batches=1))
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, coco([box(1, 10, 10, 20, 20, c=7)]))
    write(root / "r.toml", '[taxonomy]\nclasses = ["car"]\n')
    r.args = ["batches/", "--annogate-rules", "r.toml"]
    r.console = True
    return r


def _out_special(kind: str, flag: str = "--annogate-report") -> Any:
    def build(root: Path, out: Path) -> Run:
        r = repo(root, out, DEFECT)
        r.add_report, r.report = False, None
        if kind == "devnull":
            r.args += [flag, "/dev/null"]
            r.specials.append(Path("/dev/null"))
        elif kind == "fifo":
            fifo = out / "fifo"
            os.mkfifo(fifo)
            r.args += [flag, str(fifo)]
            r.specials.append(fifo)
        elif kind == "directory":
            (out / "adir").mkdir()
            r.args += [flag, str(out / "adir")]
        elif kind == "readonly":
            ro = out / "ro"
            ro.mkdir()
            ro.chmod(0o555)
            r.args += [flag, str(ro / "r.json")]
        elif kind == "missing_folder":
            r.args += [flag, str(out / "nope" / "r.json")]
        elif kind == "bad_suffix":
            r.args += [flag, str(out / "rework.xlsx")]
        return r

    return build


for _kind in ("devnull", "fifo", "directory", "missing_folder"):
    case(f"report_to_{_kind}", Expect(exit=USAGE), timeout=30)(_out_special(_kind))
# root ignores a folder's mode bits: the write would succeed, so refusing is not required there
case(
    "report_to_readonly",
    Expect(exit=USAGE if os.geteuid() != 0 else frozenset({1, 4}), note="usage error (for root the write works)"),
)(_out_special("readonly"))
case("rework_to_fifo", Expect(exit=USAGE), timeout=30)(_out_special("fifo", "--annogate-rework"))
case("rework_bad_suffix", Expect(exit=USAGE))(_out_special("bad_suffix", "--annogate-rework"))
case("junitxml_to_devnull", Expect(exit=USAGE, note="devices are refused for every output, pytest's too"))(
    _out_special("devnull", "--junitxml")
)


@case("console_from_inside_batch_folder", Expect(exit=FAIL, batches=1, note="no .pytest_cache left in the folder"))
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, DEFECT)
    r.args, r.cwd, r.console = ["b.json"], root / "batches", True
    return r


@case("console_lf_from_inside_batch_folder", Expect(exit=FAIL, batches=1, note="--lf cache kept outside the folder"))
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, DEFECT)
    r.args, r.cwd, r.console = ["b.json", "--lf"], root / "batches", True
    r.env = {"XDG_CACHE_HOME": str(out / "cache")}
    return r


# -- symlinks -------------------------------------------------------------------


@case(
    "symlinked_batch_takes_link_rules",
    Expect(exit=PASS, batches=1, note="issue 8: the rules of the symlink's location (lax), not its target's"),
)
def _(root: Path, out: Path) -> Run:
    write(root / "strict" / "annogate.toml", "[geometry.thresholds]\ndefault = { max_count = 0 }\n")
    write_json(root / "strict" / "b.json", DEFECT)
    write(root / "lax" / "annogate.toml", "[geometry.thresholds]\ndefault = { max_count = 1000 }\n")
    (root / "lax" / "link.json").symlink_to(root / "strict" / "b.json")
    return Run(args=[str(root / "lax" / "link.json")], cwd=root, report=out / "r.json")


@case("directory_symlink_loop", Expect(exit=FAIL, batches=1, note="a loop is collected once"))
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, DEFECT)
    (root / "batches" / "loop").symlink_to(root / "batches")
    (root / "batches" / "sub").mkdir()
    (root / "batches" / "sub" / "up").symlink_to(root / "batches")
    return r


@case(
    "ansi_escapes_in_names",
    Expect(exit=FAIL, fails=(("geometry", None),), batches=1, output_not=(r"\x1b\[", r"\x1b\]", "\x07")),
)
def _(root: Path, out: Path) -> Run:
    evil = "car\x1b[2J\x1b[31mPASSED\x1b]8;;http://x\x07\r"
    data = coco(
        [box(1, 10, 10, 0, 20, annotator_id="\x1b[32mbob"), box(2, 40, 40, 20, 20, c=2)],
        [img(1, "\x1b[1ma.jpg")],
        [cat(1, evil), cat(2, "bus\x1b[K")],
    )
    r = repo(root, out, data)
    r.env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(out / "summary.md")}
    return r


# -- issue 13: files that no reader can read fail, never pass unread ---------------

for _tag, _raw in (
    ("empty", b""),
    ("whitespace", b" \n\t\r\n  "),
    ("utf16", json.dumps(DEFECT).encode("utf-16")),
    ("binary", bytes(range(256)) * 8),
    ("bom_utf8_garbage", b'\xef\xbb\xbf{"images": [' + b"\xff" * 64),
    ("truncated", json.dumps(DEFECT).encode()[:-40]),
    ("json_array_of_numbers", b"[1, 2, 3]"),
    ("deep_nesting_100k", b"[" * 100000 + b"]" * 100000),
    (
        "deep_info_object",
        (
            b'{"info": '
            + b'{"a": ' * 50000
            + b"1"
            + b"}" * 50000
            + b', "images": [], "annotations": [], "categories": []}'
        ),
    ),
):
    case(f"unreadable_{_tag}_alone", Expect(exit=FAIL, batches=None), source="issue 13")(
        lambda root, out, _r=_raw: repo(root, out, raw=_r)
    )


@case("unreadable_beside_good_batches", Expect(exit=FAIL, batches=None), source="issue 13", xdist=True)
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, coco([box(1, 10, 10, 20, 20)]), name="batches/good.json")
    write(root / "batches" / "empty.json", b"")
    write(root / "batches" / "utf16.json", json.dumps(coco([box(1, 10, 10, 20, 20)])).encode("utf-16"))
    write(root / "batches" / "ws.json", "   \n")
    return r


# -- hostile XML (CVAT file and VOC folder) ------------------------------------

LOL = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + "".join(f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n' for i in range(1, 10))
    + "]>\n"
)


def _cvat_doc(body: str, *, prolog: str = '<?xml version="1.0" encoding="utf-8"?>\n', attr: str = "") -> str:
    return (
        f"{prolog}<annotations>\n<version>1.1</version>\n<meta><task><labels><label><name>car</name>"
        f"<type>rectangle</type></label></labels></task></meta>\n"
        f'<image id="0" name="a.jpg" width="100" height="80"{attr}>\n{body}\n</image>\n</annotations>\n'
    )


def _voc_doc(body: str, *, prolog: str = '<?xml version="1.0"?>\n', attr: str = "") -> str:
    return (
        f"{prolog}<annotation{attr}><filename>a.jpg</filename><size><width>100</width><height>80</height>"
        f"<depth>3</depth></size>{body}</annotation>\n"
    )


GOOD_BOX_CVAT = '<box label="car" occluded="0" source="manual" xtl="10" ytl="20" xbr="50" ybr="40" z_order="0"></box>'
GOOD_OBJ_VOC = (
    "<object><name>car</name><bndbox><xmin>10</xmin><ymin>20</ymin><xmax>50</xmax><ymax>40</ymax></bndbox></object>"
)


def _xml_variants(doc: Any, good: str) -> dict[str, Any]:
    return {
        "billion_laughs": lambda: doc(good.replace("car", "&lol9;", 1), prolog=LOL),
        "external_entity": lambda: doc(
            good.replace("car", "&xxe;", 1),
            prolog='<?xml version="1.0"?>\n<!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n',
        ),
        "external_dtd": lambda: doc(
            good, prolog='<?xml version="1.0"?>\n<!DOCTYPE a SYSTEM "http://127.0.0.1:9/x.dtd">\n'
        ),
        "deep_nesting_100k": lambda: doc("<g>" * 100000 + "</g>" * 100000 + good),
        "attribute_100MB": lambda: doc(good, attr=' note="' + "A" * (100 << 20) + '"'),
        "not_wellformed": lambda: doc(good)[:-30],
    }


for _fmt, _doc, _good in (("cvat", _cvat_doc, GOOD_BOX_CVAT), ("voc", _voc_doc, GOOD_OBJ_VOC)):
    for _tag, _make in _xml_variants(_doc, _good).items():

        def _build(root: Path, out: Path, _m: Any = _make, _f: str = _fmt) -> Run:
            write(root / "annogate.toml", "")
            if _f == "cvat":
                write(root / "batches" / "annotations.xml", _m())
                return Run(args=[str(root / "batches")], cwd=root, report=out / "r.json")
            write(root / "voc" / "Annotations" / "good.xml", _voc_doc(GOOD_OBJ_VOC))
            write(root / "voc" / "Annotations" / "bad.xml", _m())
            return Run(args=[str(root / "voc")], cwd=root, report=out / "r.json")

        case(
            f"xml_{_fmt}_{_tag}",
            Expect(exit=FAIL, output_not=("root:x:0:0",), note="a clean failing item; nothing expanded or fetched"),
            source="issue 13",
            slow=_tag == "attribute_100MB",
            timeout=120 if _tag == "attribute_100MB" else 60,
        )(_build)

# -- own, per format --------------------------------------------------------------


def _yolo(rows: str, *, yaml: str = "path: .\ntrain: images/train\nnames:\n  0: car\n") -> Any:
    def build(root: Path, out: Path) -> Run:
        write(root / "annogate.toml", "")
        d = root / "ds"
        write(d / "data.yaml", yaml)
        write(d / "images" / "train" / "a.png", png(64, 48))
        write(d / "images" / "train" / "b.png", png(64, 48))
        write(d / "labels" / "train" / "a.txt", "0 0.5 0.5 0.2 0.2\n")
        write(d / "labels" / "train" / "b.txt", rows)
        return Run(args=[str(d)], cwd=root, report=out / "r.json")

    return build


case("yolo_nonfinite_and_huge_rows", Expect(exit=FAIL), source="own")(
    _yolo("0 nan 0.5 0.1 0.1\n0 inf 0.5 0.1 0.1\n0 1e308 1e308 1e308 1e308\n0 0.5 0.5 -1 0.1\n")
)
case("yolo_class_id_2e70", Expect(exit=FAIL), source="own")(_yolo(f"{2**70} 0.5 0.5 0.1 0.1\n-1 0.5 0.5 0.1 0.1\n"))
case("yolo_row_10k_columns", Expect(exit=FAIL), source="own")(_yolo("0 " + " ".join(["0.5"] * 10000) + "\n"))
case(
    "yolo_yaml_alias_bomb",
    Expect(exit=frozenset({1, 4})),
    source="own",
)(
    _yolo(
        "0 0.5 0.5 0.1 0.1\n",
        yaml="a: &a [x,x,x,x,x,x,x,x,x]\n"
        + "".join(
            f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)},*{chr(97 + i)}]\n"
            for i in range(8)
        )
        + "names: *i\npath: .\ntrain: images/train\n",
    )
)
case("yolo_image_header_claims_2e31", Expect(exit=frozenset({0, 1})), source="own")(
    lambda root, out: (
        _yolo("0 0.5 0.5 0.1 0.1\n")(root, out),
        write(
            root / "ds" / "images" / "train" / "b.png",
            png(64, 48)[:16] + struct.pack(">II", 2**31 - 1, 2**31 - 1) + png(64, 48)[24:],
        ),
    )[0]
)


def _labelme(shapes: Any, **extra: Any) -> Any:
    def build(root: Path, out: Path) -> Run:
        write(root / "annogate.toml", "")
        doc = {"version": "5.4.1", "flags": {}, "shapes": shapes, "imagePath": "a.jpg", "imageData": None}
        doc.update(imageHeight=100, imageWidth=100, **extra)
        write_json(root / "lm" / "a.json", doc)
        ok = dict(doc, shapes=[{"label": "car", "points": [[1, 1], [20, 20]], "shape_type": "rectangle", "flags": {}}])
        write_json(root / "lm" / "b.json", dict(ok, imagePath="b.jpg"))
        return Run(args=[str(root / "lm")], cwd=root, report=out / "r.json")

    return build


def _shape(label: str, pts: Any, kind: str = "polygon", **kw: Any) -> dict[str, Any]:
    return {"label": label, "points": pts, "shape_type": kind, "group_id": None, "flags": {}, **kw}


case("labelme_1e308_and_degenerate", Expect(exit=FAIL), source="own")(
    _labelme(
        [
            _shape("car", [[BIG, BIG], [-BIG, BIG], [0, -BIG]]),
            _shape("car", [[5, 5]], "circle"),
            _shape("car", [[5, 5], [5, 5]], "rectangle"),
            _shape("car", [[1, 2, 3]], "point"),
        ]
    )
)
case("labelme_points_not_numbers", Expect(exit=FAIL), source="own")(
    _labelme([_shape("car", [["a", None], [{}, []], [1, 2]]), _shape("car", "xyz", "rectangle")])
)
case("labelme_group_id_huge_and_ignore", Expect(exit=frozenset({0, 1})), source="own")(
    _labelme(
        [
            _shape("car", [[1, 1], [9, 1], [9, 9]], group_id=2**70),
            _shape("car", [[11, 1], [19, 1], [19, 9]], group_id=2**70),
            _shape("__ignore__", [[0, 0], [100, 0], [100, 100], [0, 100]]),
        ]
    )
)


def _ls(results: Any, **task: Any) -> Any:
    def build(root: Path, out: Path) -> Run:
        write(root / "annogate.toml", "")
        ok: dict[str, Any] = {"id": "ok", "type": "rectanglelabels", "from_name": "label", "to_name": "image"}
        ok.update(
            original_width=200,
            original_height=100,
            value={"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["car"]},
        )
        tasks = [
            {
                "id": 1,
                "data": {"image": "a.jpg"},
                "annotations": [{"id": 1, "completed_by": 7, "result": results}],
                **task,
            },
            {"id": 2, "data": {"image": "b.jpg"}, "annotations": [{"id": 2, "completed_by": 7, "result": [ok]}]},
        ]
        write_json(root / "batches" / "export.json", tasks)
        return Run(args=[str(root / "batches")], cwd=root, report=out / "r.json")

    return build


def _ls_rect(value: dict[str, Any], w: Any = 200, h: Any = 100, t: str = "rectanglelabels") -> dict[str, Any]:
    return {
        "id": "r",
        "type": t,
        "from_name": "label",
        "to_name": "image",
        "original_width": w,
        "original_height": h,
        "value": value,
    }


case("labelstudio_zero_size_and_1e308", Expect(exit=FAIL), source="own")(
    _ls(
        [
            _ls_rect({"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["car"]}, w=0, h=0),
            _ls_rect({"x": BIG, "y": -BIG, "width": BIG, "height": 20, "rotation": BIG, "rectanglelabels": ["car"]}),
            _ls_rect(
                {"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["car"], "rotation": float("nan")}
            ),
        ]
    )
)
case("labelstudio_brush_rle_huge_run", Expect(exit=FAIL), source="own")(
    _ls(
        [
            _ls_rect(
                {"format": "rle", "rle": [255] * 64 + [0, 0, 0, 0], "brushlabels": ["car"]},
                w=100000,
                h=100000,
                t="brushlabels",
            )
        ]
    )
)
case("labelstudio_completed_by_objects", Expect(exit=frozenset({0, 1})), source="own")(
    _ls(
        [_ls_rect({"x": 10, "y": 10, "width": 20, "height": 20, "rectanglelabels": ["car"]})],
        annotations=[
            {"id": 9, "completed_by": {"id": [1, {"x": None}], "email": "\x1b[31m"}, "result": []},
        ],
    )
)


def _cvat_case(body: str, attr: str = "") -> Any:
    def build(root: Path, out: Path) -> Run:
        write(root / "annogate.toml", "")
        write(root / "batches" / "annotations.xml", _cvat_doc(body, attr=attr))
        return Run(args=[str(root / "batches")], cwd=root, report=out / "r.json")

    return build


case("cvat_nan_box_and_1e308_polygon", Expect(exit=FAIL), source="own")(
    _cvat_case(
        '<box label="car" occluded="0" xtl="nan" ytl="20" xbr="50" ybr="40" z_order="0"></box>'
        '<polygon label="car" occluded="0" points="1e308,1e308;-1e308,1e308;0,-1e308" z_order="0"></polygon>'
        '<box label="car" occluded="0" xtl="10" ytl="20" xbr="50" ybr="40" rotation="inf" z_order="0"></box>'
    )
)
case("cvat_mask_rle_overrun", Expect(exit=FAIL), source="own")(
    _cvat_case(
        '<mask label="car" occluded="0" source="manual" rle="0, 99999999999, 5" left="0" top="0" width="10" height="10" z_order="0"></mask>'
    )
)
case("cvat_image_size_huge_and_negative", Expect(exit=FAIL), source="own")(
    lambda root, out: (
        write(root / "annogate.toml", ""),
        write(
            root / "batches" / "annotations.xml",
            _cvat_doc(GOOD_BOX_CVAT).replace('width="100" height="80"', f'width="{2**70}" height="-80"'),
        ),
        Run(args=[str(root / "batches")], cwd=root, report=out / "r.json"),
    )[2]
)
case("cvat_unknown_label_and_control_chars", Expect(exit=FAIL, output_not=(r"\x1b\[",)), source="own")(
    _cvat_case(
        GOOD_BOX_CVAT.replace('label="car"', 'label="bus&#27;[31m"') + GOOD_BOX_CVAT.replace('xbr="50"', 'xbr="5"')
    )
)

# -- own: outputs reached through links, inputs that never end ------------------


def _report_link(kind: str) -> Build:
    def build(root: Path, out: Path) -> Run:
        r = repo(root, out, DEFECT)
        target = root / "batches" / "b.json"
        link = out / "r.json"
        if kind == "symlink":
            link.symlink_to(target)
        elif kind == "dangling_symlink_into_batches":
            link.symlink_to(root / "batches" / "new.json")
        elif kind == "hardlink":
            os.link(target, link)
        r.add_report, r.report = False, None
        r.args += ["--annogate-report", str(link)]
        return r

    return build


for _k in ("symlink", "dangling_symlink_into_batches"):
    case(
        f"report_{_k}_to_batch", Expect(exit=USAGE, note="the resolved target is an input (or lies among them)"), "own"
    )(_report_link(_k))
# a hard link is refused, or broken by the atomic replace: either way the batch is untouched (the bad-write check)
case("report_hardlink_to_batch", Expect(exit=frozenset({1, 4})), "own")(_report_link("hardlink"))


@case("rules_option_is_fifo", Expect(exit=USAGE), "own", timeout=30)
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, DEFECT)
    os.mkfifo(out / "rules.toml")
    r.args += ["--annogate-rules", str(out / "rules.toml")]
    return r


@case(
    "batch_is_fifo", Expect(exit=frozenset({1, 4}), note="never opened for reading: a failing item"), "own", timeout=30
)
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, coco([box(1, 10, 10, 20, 20)]), name="batches/good.json")
    os.mkfifo(root / "batches" / "b.json")
    r.args = [str(root / "batches" / "b.json"), str(root / "batches" / "good.json")]
    return r


@case("golden_is_fifo", Expect(exit=frozenset({1, 4})), "own", timeout=30)
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, DEFECT, rules='[golden]\nfile = "golden/golden.json"\n')
    (root / "golden").mkdir()
    os.mkfifo(root / "golden" / "golden.json")
    return r


@case("batch_symlink_to_dev_zero", Expect(exit=frozenset({1, 4})), "own", timeout=30)
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, coco([box(1, 10, 10, 20, 20)]), name="batches/good.json")
    (root / "batches" / "b.json").symlink_to("/dev/zero")
    r.args = [str(root / "batches" / "b.json"), str(root / "batches")]
    return r


@case("batch_sparse_8GB", Expect(exit=FAIL, note="file_too_large, never read whole"), "own", timeout=60)
def _(root: Path, out: Path) -> Run:
    r = repo(root, out)
    p = root / "batches" / "b.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    with open(p, "wb") as f:
        f.write(b'{"images": [')
        f.truncate(8 << 30)
    return r


case("coco_image_size_hostile", Expect(exit=FAIL, fails=(("schema", None),), batches=1), "own")(
    _ids(
        [box(1, 10, 10, 20, 20), box(2, 10, 10, 20, 20, im=2), box(3, 10, 10, 20, 20, im=3)],
        [img(1, "a.jpg", 2**70, 480), img(2, "b.jpg", 640, -1), {**img(3, "c.jpg"), "width": BIG}],
    )
)


@case("segmentation_nested_100k", Expect(exit=FAIL), "own")
def _(root: Path, out: Path) -> Run:
    text = json.dumps(coco([box(1, 10, 10, 20, 20), {**box(2, 30, 30, 5, 5), "segmentation": "@@"}]), indent=1)
    text = text.replace('"@@"', "[" * 100000 + "]" * 100000)
    return repo(root, out, raw=text, rules=SEG)


@case("keypoints_1e308_with_golden", Expect(exit=FAIL, batches=1), "own", xdist=True)
def _(root: Path, out: Path) -> Run:
    c = cat(1, "person", keypoints=["a", "b", "c"], skeleton=[[1, 2]])
    bad = {**_kp_ann(1, 3, annotator_id="alice"), "keypoints": [BIG, BIG, 2, -BIG, BIG, 2, 0, 0, 0]}
    anns = [bad, _kp_ann(2, 3, annotator_id="bob")]
    rules = KP + "[golden]\noks_sigmas = [0.1, 0.1, 0.1]\n"
    write_json(root / "golden" / "golden.json", coco([_kp_ann(1, 3)], cats=[c]))
    return repo(
        root, out, coco(anns, cats=[c]), rules=rules.replace("[golden]\n", '[golden]\nfile = "golden/golden.json"\n')
    )


@case(
    "github_annotation_injection",
    Expect(
        exit=FAIL,
        output_not=(r"(?m)^::(error|warning|notice) file=README", r"(?m)^::add-mask::", r"(?m)^::stop-commands"),
    ),
    "own",
)
def _(root: Path, out: Path) -> Run:
    evil = "car\n::error file=README.md,line=1::forged\n::add-mask::x\n::stop-commands::tok"
    data = coco([box(1, 10, 10, 0, 20, annotator_id="bob\n::warning file=README.md::forged")], cats=[cat(1, evil)])
    r = repo(root, out, data)
    r.env = {"GITHUB_ACTIONS": "true", "GITHUB_STEP_SUMMARY": str(out / "summary.md")}
    return r


case("labelstudio_three_annotators_1e308", Expect(exit=FAIL), "own")(
    _ls(
        [_ls_rect({"x": BIG, "y": BIG, "width": BIG, "height": BIG, "rectanglelabels": ["car"]})],
        annotations=[
            {
                "id": k,
                "completed_by": k,
                "result": [
                    _ls_rect({"x": BIG * (k - 2), "y": 1, "width": BIG, "height": 1e-308, "rectanglelabels": ["car"]})
                ],
            }
            for k in (1, 2, 3)
        ],
    )
)


# -- own: rules a pull request could use to walk around its own gate ------------

for _tag, _text, _exit in (
    ("exclude_everything", 'exclude = ["**", "**/*.json", "*"]\n', frozenset({1, 4, 5})),
    ("format_forced_wrong", 'format = "yolo"\n', frozenset({1, 4})),
    ("golden_iou_negative", '[golden]\nfile = "b.json"\niou = -1\n', USAGE),
    ("golden_iou_above_one", '[golden]\nfile = "b.json"\niou = 2\n', USAGE),
    ("max_cycles_1e9", "[cost]\nmax_cycles = 1000000000\n", frozenset({1, 4})),
    ("max_cycles_2e62", f"[cost]\nmax_cycles = {2**62}\n", frozenset({1, 4})),
    ("price_1e308", '[cost]\ncurrency = "EUR"\nprice_per_label = 1e308\nqa_fraction = 1e308\n', frozenset({1, 4})),
    # a finite huge limit is the rules owner's choice (CI takes rules from the base branch): only no crash, strict JSON
    ("thresholds_1e308", "[geometry.thresholds]\ndefault = { max_count = 1e308 }\n", frozenset({0, 1, 4})),
):
    case(f"rules_{_tag}", Expect(exit=_exit, note="never exit 0 on a defective batch; report strict JSON"), "own")(
        lambda root, out, _t=_text: repo(root, out, DEFECT, rules=_t)
    )


@case("console_report_equals_form_over_batch", Expect(exit=USAGE), "own")
def _(root: Path, out: Path) -> Run:
    r = repo(root, out, DEFECT)
    r.args, r.console, r.add_report, r.report = (
        ["batches/b.json", "--annogate-report=batches/b.json"],
        True,
        False,
        None,
    )
    return r


# -- own: readers must not reach outside the repository ------------------------

case(
    "yolo_yaml_paths_outside_dataset",
    Expect(exit=frozenset({1, 4}), output_not=("root:x:0:0", r"/etc/passwd")),
    "own",
)(_yolo("0 0.5 0.5 0.1 0.1\n", yaml="path: /\ntrain: etc\nval: ../../../../etc\nnames:\n  0: car\n"))
case(
    "labelstudio_image_url_unroutable",
    Expect(exit=frozenset({0, 1}), note="sizes never fetched over the network: no hang"),
    "own",
    timeout=40,
)(
    lambda root, out: (
        _ls([])(root, out),
        write_json(
            root / "batches" / "export.json",
            [
                {
                    "id": 1,
                    "data": {"image": "http://10.255.255.1/a.jpg"},
                    "annotations": [
                        {
                            "id": 1,
                            "completed_by": 1,
                            "result": [
                                {
                                    "id": "r",
                                    "type": "rectanglelabels",
                                    "from_name": "l",
                                    "to_name": "image",
                                    "value": {"x": 1, "y": 1, "width": 5, "height": 5, "rectanglelabels": ["car"]},
                                }
                            ],
                        }
                    ],
                }
            ],
        ),
    )[0]
)


@case(
    "report_over_pyproject_rules",
    Expect(exit=USAGE, note="rules in [tool.annogate] of pyproject.toml are an input"),
    "own",
)
def _(root: Path, out: Path) -> Run:
    write_json(root / "golden" / "golden.json", coco([box(1, 10, 10, 20, 20)]))
    write(
        root / "pyproject.toml", '[project]\nname = "labels"\n\n[tool.annogate.golden]\nfile = "golden/golden.json"\n'
    )
    write_json(root / "batches" / "b.json", DEFECT)
    return Run(args=["batches", "--annogate-report", "pyproject.toml"], cwd=root, report=None, add_report=False)


@case("rework_over_golden_via_pyproject", Expect(exit=USAGE), "own")
def _(root: Path, out: Path) -> Run:
    r = report_over_pyproject(root, out)
    r.args = ["batches", "--annogate-rework", "golden/golden.json"]
    return r


report_over_pyproject = by_name()["report_over_pyproject_rules"].build


# -- the default (fast) selection: one or more cases per class; the rest are marked slow ---

FAST = frozenset(
    {
        "seg_1e308_golden_two_annotators",
        "rle_overrun_in_batch",
        "rle_string_o50_in_golden",
        "rle_wrap_2e62_in_batch",
        "num_keypoints_2e40",
        "keypoints_5_without_oks_sigmas",
        "annotations_after_600_spaces",
        "annotations_key_escaped",
        "duplicate_top_level_key",
        "image_id_negative",
        "duplicate_annotation_id_1180591620717411303424",
        "image_id_2e70_vs_2e71",
        "image_id_float_1_0",
        "rules_nan_threshold",
        "rules_nested_5000",
        "rules_pack_absolute_path",
        "rules_pack_dotdot",
        "output-report_over_batch_console",
        "output-rework_over_golden",
        "output-junitxml_over_rules",
        "console_existing_report_before_batch",
        "report_to_devnull",
        "report_to_fifo",
        "report_to_directory",
        "console_from_inside_batch_folder",
        "symlinked_batch_takes_link_rules",
        "directory_symlink_loop",
        "ansi_escapes_in_names",
        "unreadable_empty_alone",
        "unreadable_beside_good_batches",
        "xml_cvat_billion_laughs",
        "xml_voc_external_entity",
        "yolo_nonfinite_and_huge_rows",
        "labelme_1e308_and_degenerate",
        "labelstudio_zero_size_and_1e308",
        "cvat_nan_box_and_1e308_polygon",
        "report_symlink_to_batch",
        "report_dangling_symlink_into_batches_to_batch",
        "batch_is_fifo",
        "batch_symlink_to_dev_zero",
        "github_annotation_injection",
        "keypoints_1e308_with_golden",
    }
)
assert FAST <= set(by_name()), sorted(FAST - set(by_name()))
CASES[:] = [replace(c, slow=c.slow or c.name not in FAST) for c in CASES]
assert len(by_name()) == len(CASES), "case names must be unique"
