"""Regenerate the example batches (deterministic): ``python examples/generate.py [OUT_DIR]``.

Street-scene labels for 40 images (1280x720). ``golden/golden.json`` holds the
truth for 12 honeypot images. ``clean/batch.json`` agrees with it (1-pixel
jitter). ``defective/batch.json`` carries planted defects: a dangling category, a
box past the right edge, a bow-tie polygon, a zero-width box, annotator bob's
boxes shifted right by 12% of their width, cyclists labelled pedestrian, a
missed car and a phantom object.

Why one scene and several writers: the same defective batch is written in every
format annogate reads (``yolo/``, ``voc/``, ``labelme/``, ``cvat/``,
``labelstudio/``), so that ``annogate examples/`` shows each gate failing each
format for the same planted reasons, and a reader that loses or distorts an
object shows up as a verdict that differs from the COCO one. The scene (images,
objects, annotators, defects) is built once in memory (:func:`build_scene`);
each writer only translates it. What a format cannot express is listed in
:data:`CANNOT_EXPRESS` and written into ``README.md``.

Everything written is a pure function of the fixed seeds: no timestamps, no
dict-order or platform dependence (the PNG images are deflated by a tiny
fixed-Huffman encoder here, not by the zlib library, whose output may differ
between builds), so ``tests/test_examples.py`` can regenerate into a temporary
folder and compare bytes.
"""

from __future__ import annotations

import json
import random
import struct
import sys
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

HERE = Path(__file__).resolve().parent
CLASSES = ["pedestrian", "cyclist", "car", "truck", "traffic_light"]
W, H = 1280, 720
N_IMAGES = 40
GOLDEN = list(range(0, 40, 10)) + list(range(1, 40, 5))  # 12 honeypots
ANNOTATORS = ("alice", "bob", "carol")
# The dangling category: COCO id 99 (no such category); in formats that name classes
# it is a label outside the taxonomy; in YOLO the class index just past ``names``.
DANGLING_COCO_ID = 99
DANGLING_LABEL = "van"
SHIFT = 0.12  # bob's systematic right shift, as a fraction of the box width

# Per-format folders written from the scene (the COCO files keep their historical places).
FORMATS = ("yolo", "voc", "labelme", "cvat", "labelstudio")
FOLDER_FORMATS = ("yolo", "voc", "labelme")  # annotator = the sub-folder (annotator_from = "parent_dir")

# What each format cannot say, per planted defect or feature (the README table).
CANNOT_EXPRESS: dict[str, dict[str, str]] = {
    "coco": {},
    "yolo": {
        "dangling": f"no class names on objects: class index {len(CLASSES)} (one past `names`)",
        "annotator": "no annotator field: one sub-folder per annotator (`annotator_from`)",
    },
    "voc": {
        "dangling": f"label {DANGLING_LABEL!r}, outside the taxonomy",
        "bowtie": "no polygons in VOC: every object is a box, the bow-tie is its bounding box (not a defect)",
        "annotator": "no annotator field: one sub-folder per annotator (`annotator_from`)",
    },
    "labelme": {
        "dangling": f"label {DANGLING_LABEL!r}, outside the taxonomy",
        "annotator": "no annotator field: one sub-folder per annotator (`annotator_from`)",
    },
    "cvat": {
        "dangling": f"label {DANGLING_LABEL!r}, not declared in <meta> and outside the taxonomy",
        "annotator": "no per-shape annotator in CVAT 1.1: one task per annotator (`<assignee>`), an image belongs "
        "to one task, so an object drawn by someone else on that image is credited to the task's assignee",
    },
    "labelstudio": {
        "dangling": f"label {DANGLING_LABEL!r}, outside the taxonomy (the export has no label config)",
        "annotator": "`completed_by` is a user id: annotators are '1' (alice), '2' (bob), '3' (carol)",
    },
}


# -- the scene -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Obj:
    """One drawn object of a batch, in pixels (the format-neutral scene)."""

    image: int  # index into the image list
    cls: str  # class name; DANGLING_LABEL for the dangling category
    box: tuple[float, float, float, float]  # x, y, w, h
    annotator: str
    polygon: tuple[float, ...] | None = None  # one ring, flat x, y, ...
    area: float | None = None  # COCO area when not the polygon's / box's
    defect: str = ""  # dangling, past_edge, bowtie, zero_width, phantom (whole-object defects)


@dataclass
class Scene:
    images: list[str]
    annotator: dict[int, str]  # who labels each image
    truth: dict[int, list[Obj]]  # golden objects of the honeypot images
    clean: list[Obj]
    defective: list[Obj]
    # what the defective batch was made from, for the tests' expectations
    flipped: list[tuple[int, int]] = field(default_factory=list)  # (image, index in scene) cyclist -> pedestrian
    missed: list[tuple[int, int]] = field(default_factory=list)  # (image, index in scene) not drawn
    shifted: int = 0  # objects of bob's moved right


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


def _poly(box: Sequence[float]) -> tuple[float, ...]:
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
    return tuple(round(v, 2) for p in pts for v in p)


def _poly_area(ring: Sequence[float]) -> float:
    xs, ys = ring[0::2], ring[1::2]
    return abs(sum(xs[i] * ys[(i + 1) % len(xs)] - xs[(i + 1) % len(xs)] * ys[i] for i in range(len(xs)))) / 2


def build_scene() -> Scene:
    """The example scene and its three batches (truth, clean, defective), from fixed seeds."""
    rng = random.Random(20261129)
    images = [f"street_{i:04d}.png" for i in range(N_IMAGES)]
    scene = {i: _objects(rng, rng.randint(3, 6)) for i in range(N_IMAGES)}
    annotator = {i: ANNOTATORS[i % 3] for i in range(N_IMAGES)}
    truth = {i: [Obj(image=i, cls=o["cls"], box=tuple(o["box"]), annotator="expert") for o in scene[i]] for i in GOLDEN}
    # the missed object: the first car on the fourth honeypot
    missed_k = next(k for k, o in enumerate(scene[GOLDEN[3]]) if o["cls"] == "car")
    out = Scene(images=images, annotator=annotator, truth=truth, clean=[], defective=[])

    def batch(defective: bool) -> list[Obj]:
        objs: list[Obj] = []
        rr = random.Random(7 if defective else 3)
        flipped = 0
        for i in range(N_IMAGES):
            for k, o in enumerate(scene[i]):
                x, y, w, h = o["box"]
                x += rr.uniform(-1, 1)
                y += rr.uniform(-1, 1)
                cls = o["cls"]
                if defective and annotator[i] == "bob":
                    x += SHIFT * w  # systematic right shift: IoU still ~0.79, drift is not
                    out.shifted += 1
                if defective and cls == "cyclist" and i in GOLDEN and flipped < 2:
                    cls, flipped = "pedestrian", flipped + 1
                    out.flipped.append((i, k))
                if defective and i == GOLDEN[3] and k == missed_k:
                    out.missed.append((i, k))
                    continue  # a missed object
                x = min(max(x, 0), W - w)
                y = min(max(y, 0), H - h)
                box = (round(x, 1), round(y, 1), round(w, 1), round(h, 1))
                objs.append(
                    Obj(image=i, cls=cls, box=box, annotator=annotator[i], polygon=_poly(box) if k % 2 == 0 else None)
                )
        if defective:
            objs.append(
                Obj(image=GOLDEN[5], cls="truck", box=(600.0, 300.0, 120.0, 90.0), annotator="carol", defect="phantom")
            )
            objs.append(
                Obj(image=4, cls=DANGLING_LABEL, box=(100.0, 100.0, 80.0, 60.0), annotator="bob", defect="dangling")
            )
            objs.append(  # 40 px past the right edge
                Obj(image=7, cls="truck", box=(1200.0, 400.0, 120.0, 100.0), annotator="carol", defect="past_edge")
            )
            objs.append(
                Obj(
                    image=8,
                    cls="car",
                    box=(300.0, 300.0, 100.0, 100.0),
                    annotator="alice",
                    polygon=(300.0, 300.0, 400.0, 400.0, 400.0, 300.0, 300.0, 400.0),  # bow-tie
                    area=5000.0,
                    defect="bowtie",
                )
            )
            objs.append(
                Obj(image=11, cls="traffic_light", box=(500.0, 50.0, 0.0, 30.0), annotator="bob", defect="zero_width")
            )
        return objs

    out.clean = batch(False)
    out.shifted = 0
    out.flipped, out.missed = [], []
    out.defective = batch(True)
    return out


def annotator_images(objs: Iterable[Obj]) -> dict[str, list[int]]:
    """Per annotator, the images they drew on (sorted): the files of a folder-per-annotator layout."""
    got: dict[str, set[int]] = {}
    for o in objs:
        got.setdefault(o.annotator, set()).add(o.image)
    return {a: sorted(got[a]) for a in sorted(got)}


def _by(objs: Iterable[Obj], annotator: str, image: int) -> list[Obj]:
    return [o for o in objs if o.annotator == annotator and o.image == image]


# -- COCO (the historical files: golden, clean, defective) ----------------------------------------


def _coco_ann(aid: int, o: Obj, image_id: int, *, with_annotator: bool = True) -> dict[str, Any]:
    a: dict[str, Any] = {
        "id": aid,
        "image_id": image_id,
        "category_id": DANGLING_COCO_ID if o.cls == DANGLING_LABEL else CLASSES.index(o.cls) + 1,
        "bbox": list(o.box),
        "iscrowd": 0,
    }
    if with_annotator:
        a["annotator_id"] = o.annotator
    if o.polygon is not None:
        a["segmentation"] = [list(o.polygon)]
        a["area"] = round(_poly_area(o.polygon), 2) if o.area is None else o.area
    else:
        a["area"] = round(o.box[2] * o.box[3], 2) if o.area is None else o.area
    return a


def write_coco(sc: Scene, out: Path) -> None:
    images = [{"id": i + 1, "file_name": n, "width": W, "height": H} for i, n in enumerate(sc.images)]
    cats = [{"id": k + 1, "name": c, "supercategory": "street"} for k, c in enumerate(CLASSES)]
    # golden: the truth on the honeypots (ids differ from the batches on purpose)
    g_images = [dict(images[i], id=1000 + i) for i in GOLDEN]
    g_anns = []
    for i in GOLDEN:
        for o in sc.truth[i]:
            g_anns.append(_coco_ann(5000 + len(g_anns), o, 1000 + i, with_annotator=False))
    _write_json(out / "golden" / "golden.json", {"images": g_images, "annotations": g_anns, "categories": cats})
    for name, objs in (("clean", sc.clean), ("defective", sc.defective)):
        anns = [_coco_ann(k + 1, o, o.image + 1) for k, o in enumerate(objs)]
        doc = {
            "info": {"description": "annogate example batch", "year": 2026},
            "images": images,
            "annotations": anns,
            "categories": cats,
        }
        _write_json(out / name / "batch.json", doc)


# -- YOLO (Ultralytics layout) -------------------------------------------------------------------


def _f(v: float) -> str:
    """A normalised coordinate: 6 decimals (1280 px -> 0.001 px), fixed so output is byte-stable."""
    return f"{v:.6f}"


def write_yolo(sc: Scene, out: Path) -> None:
    root = out / "yolo"
    names = "\n".join(f"  {k}: {c}" for k, c in enumerate(CLASSES))
    _write_text(
        root / "data.yaml",
        "# annogate example: the defective street batch in the Ultralytics layout,\n"
        "# one sub-folder per annotator under images/ and labels/.\n"
        f"path: .\ntrain: images\nnames:\n{names}\n",
    )
    png = tiny_png(W, H)
    for who, imgs in annotator_images(sc.defective).items():
        for i in imgs:
            _write_bytes(root / "images" / who / sc.images[i], png)
            rows = []
            for o in _by(sc.defective, who, i):
                # YOLO has no class names on rows: the dangling category is the index past `names`
                c = len(CLASSES) if o.cls == DANGLING_LABEL else CLASSES.index(o.cls)
                if o.polygon is not None:  # a segmentation row (mixed with box rows, as Ultralytics allows)
                    xy = " ".join(_f(v / (W if j % 2 == 0 else H)) for j, v in enumerate(o.polygon))
                    rows.append(f"{c} {xy}")
                else:
                    x, y, w, h = o.box
                    rows.append(f"{c} {_f((x + w / 2) / W)} {_f((y + h / 2) / H)} {_f(w / W)} {_f(h / H)}")
            _write_text(root / "labels" / who / (Path(sc.images[i]).stem + ".txt"), "\n".join(rows) + "\n")


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _deflate_zeros(n: int) -> bytes:
    """A zlib stream of ``n`` zero bytes, fixed-Huffman coded here (byte-stable across zlib builds).

    One literal 0, then back-references (length 258, distance 1), then literals for the rest.
    """
    bits: list[int] = []

    def put(value: int, nbits: int, *, huffman: bool) -> None:
        # Huffman codes go most-significant bit first, other fields least-significant first
        order = range(nbits - 1, -1, -1) if huffman else range(nbits)
        bits.extend((value >> k) & 1 for k in order)

    put(1, 1, huffman=False)  # BFINAL
    put(1, 2, huffman=False)  # BTYPE = 01, fixed Huffman
    lit0 = 0x30  # literal 0: 8-bit code 00110000
    put(lit0, 8, huffman=True)
    left = n - 1
    while left >= 258:
        put(0xC5, 8, huffman=True)  # length code 285 = 258, no extra bits
        put(0, 5, huffman=True)  # distance code 0 = 1
        left -= 258
    for _ in range(left):
        put(lit0, 8, huffman=True)
    put(0, 7, huffman=True)  # end of block (256)
    while len(bits) % 8:
        bits.append(0)
    body = bytes(sum(b << k for k, b in enumerate(bits[j : j + 8])) for j in range(0, len(bits), 8))
    return b"\x78\x01" + body + struct.pack(">I", zlib.adler32(bytes(n)) & 0xFFFFFFFF)


def tiny_png(width: int, height: int) -> bytes:
    """A valid black 1-bit greyscale PNG of the given size (~800 bytes for 1280x720)."""
    raw_len = height * (1 + (width + 7) // 8)  # each row: filter byte 0, then packed pixels
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", _deflate_zeros(raw_len))
        + _png_chunk(b"IEND", b"")
    )


# -- Pascal VOC ------------------------------------------------------------------------------------


def _n(v: float) -> str:
    """A pixel coordinate as written (repr of the rounded float: 1 or 2 decimals in this scene)."""
    return repr(round(v, 2))


def write_voc(sc: Scene, out: Path) -> None:
    root = out / "voc" / "Annotations"
    for who, imgs in annotator_images(sc.defective).items():
        for i in imgs:
            lines = [
                "<annotation>",
                "\t<folder>street</folder>",
                f"\t<filename>{sc.images[i]}</filename>",
                f"\t<size>\n\t\t<width>{W}</width>\n\t\t<height>{H}</height>\n\t\t<depth>1</depth>\n\t</size>",
                "\t<segmented>0</segmented>",
            ]
            for o in _by(sc.defective, who, i):
                x, y, w, h = o.box  # VOC has boxes only: a polygon object is written as its box
                lines += [
                    "\t<object>",
                    f"\t\t<name>{o.cls}</name>",
                    "\t\t<pose>Unspecified</pose>",
                    "\t\t<truncated>0</truncated>",
                    "\t\t<difficult>0</difficult>",
                    f"\t\t<bndbox>\n\t\t\t<xmin>{_n(x)}</xmin>\n\t\t\t<ymin>{_n(y)}</ymin>"
                    f"\n\t\t\t<xmax>{_n(x + w)}</xmax>\n\t\t\t<ymax>{_n(y + h)}</ymax>\n\t\t</bndbox>",
                    "\t</object>",
                ]
            lines.append("</annotation>")
            _write_text(root / who / (Path(sc.images[i]).stem + ".xml"), "\n".join(lines) + "\n")


# -- LabelMe ---------------------------------------------------------------------------------------


def write_labelme(sc: Scene, out: Path) -> None:
    root = out / "labelme"
    for who, imgs in annotator_images(sc.defective).items():
        for i in imgs:
            shapes = []
            for o in _by(sc.defective, who, i):
                if o.polygon is not None:
                    pts = [[o.polygon[j], o.polygon[j + 1]] for j in range(0, len(o.polygon), 2)]
                    kind = "polygon"
                else:
                    x, y, w, h = o.box
                    pts = [[x, y], [round(x + w, 2), round(y + h, 2)]]
                    kind = "rectangle"
                shapes.append(
                    {
                        "label": o.cls,
                        "points": pts,
                        "group_id": None,
                        "description": "",
                        "shape_type": kind,
                        "flags": {},
                    }
                )
            doc = {
                "version": "5.4.1",
                "flags": {},
                "shapes": shapes,
                "imagePath": sc.images[i],
                "imageData": None,
                "imageHeight": H,
                "imageWidth": W,
            }
            _write_json(root / who / (Path(sc.images[i]).stem + ".json"), doc, indent=2, compact_below=3)


# -- CVAT for images 1.1 ---------------------------------------------------------------------------


def write_cvat(sc: Scene, out: Path) -> None:
    """A project export: one task per annotator (its ``<assignee>``), each image in its labeller's task."""
    task_id = {a: k + 1 for k, a in enumerate(ANNOTATORS)}
    lines = ['<?xml version="1.0" encoding="utf-8"?>', "<annotations>", "  <version>1.1</version>", "  <meta>"]
    lines += ["    <project>", "      <id>1</id>", "      <name>street</name>", "      <labels>"]
    for c in CLASSES:
        lines += [f"        <label>\n          <name>{c}</name>\n          <type>any</type>", "        </label>"]
    lines += ["      </labels>", "      <tasks>"]
    for a in ANNOTATORS:
        n = sum(1 for i in range(N_IMAGES) if sc.annotator[i] == a)
        lines += [
            "        <task>",
            f"          <id>{task_id[a]}</id>",
            f"          <name>street-{a}</name>",
            f"          <size>{n}</size>",
            "          <mode>annotation</mode>",
            f"          <assignee>\n            <username>{a}</username>\n          </assignee>",
            "        </task>",
        ]
    lines += ["      </tasks>", "    </project>", "  </meta>"]
    for i, name in enumerate(sc.images):
        who = sc.annotator[i]
        lines.append(
            f'  <image id="{i}" name="{name}" subset="default" task_id="{task_id[who]}" width="{W}" height="{H}">'
        )
        # every object on the image, whoever drew it: CVAT credits the image's task assignee
        for o in (o for o in sc.defective if o.image == i):
            common = f'label={quoteattr(o.cls)} source="manual" occluded="0" z_order="0"'
            if o.polygon is not None:
                pts = ";".join(f"{_n(o.polygon[j])},{_n(o.polygon[j + 1])}" for j in range(0, len(o.polygon), 2))
                lines.append(f'    <polygon {common} points="{pts}">\n    </polygon>')
            else:
                x, y, w, h = o.box
                lines.append(
                    f'    <box {common} xtl="{_n(x)}" ytl="{_n(y)}" xbr="{_n(x + w)}" ybr="{_n(y + h)}">\n    </box>'
                )
        lines.append("  </image>")
    lines.append("</annotations>")
    _write_text(out / "cvat" / "annotations.xml", "\n".join(lines) + "\n")


# -- Label Studio ----------------------------------------------------------------------------------

LS_USER = {a: k + 1 for k, a in enumerate(ANNOTATORS)}


def _pct(v: float, size: int) -> float:
    """Pixels as Label Studio's percentage, 6 decimals (1e-5 px here): short lines, exact enough."""
    return round(v / size * 100, 6)


def write_labelstudio(sc: Scene, out: Path) -> None:
    """The JSON export: one task per image, one annotation per annotator who drew on it."""
    tasks = []
    rid = 0
    for i, name in enumerate(sc.images):
        anns = []
        for who in sorted({o.annotator for o in sc.defective if o.image == i}):
            results = []
            for o in _by(sc.defective, who, i):
                rid += 1
                base = {
                    "id": f"r{rid}",
                    "from_name": "label",
                    "to_name": "image",
                    "original_width": W,
                    "original_height": H,
                    "image_rotation": 0,
                }
                if o.polygon is not None:
                    pts = [[_pct(o.polygon[j], W), _pct(o.polygon[j + 1], H)] for j in range(0, len(o.polygon), 2)]
                    results.append(
                        {**base, "type": "polygonlabels", "value": {"points": pts, "polygonlabels": [o.cls]}}
                    )
                else:
                    x, y, w, h = o.box
                    value = {
                        "x": _pct(x, W),
                        "y": _pct(y, H),
                        "width": _pct(w, W),
                        "height": _pct(h, H),
                        "rotation": 0,
                        "rectanglelabels": [o.cls],
                    }
                    results.append({**base, "type": "rectanglelabels", "value": value})
            anns.append(
                {
                    "id": 100 * (i + 1) + LS_USER[who],
                    "completed_by": {"id": LS_USER[who], "email": f"{who}@example.com"},
                    "was_cancelled": False,
                    "result": results,
                }
            )
        tasks.append(
            {
                "id": i + 1,
                "data": {"image": f"/data/local-files/?d=street/{name}"},
                "annotations": anns,
                "predictions": [],
            }
        )
    _write_json(out / "labelstudio" / "export.json", tasks, indent=1, compact_below=5)


# -- rules and README ------------------------------------------------------------------------------

_RULES_BODY = """
[taxonomy]
classes = [{classes}]

[cost]
currency = "EUR"
price_per_label = 0.08

[golden]
file = "../golden/golden.json"  # truth for the honeypot images, matched by file name
# boxes must sit within 1% of the truth's size on average (95% bound)
max_drift = 0.01

[confusion]
# the pair this team watches: at most 2% of golden cyclists labelled pedestrian (95% bound)
pairs = {{ "cyclist->pedestrian" = 0.02 }}
"""


_ROOT_RULES = """# Rules for the example label repository (what a real one keeps in pyproject.toml
# [tool.annogate] or here). Start from the built-in detection pack, then tighten.
pack = "detection"

[taxonomy]
classes = [{classes}]

[cost]
currency = "EUR"
price_per_label = 0.08

[golden]
file = "golden/golden.json"  # truth for the honeypot images, matched by file name
# boxes must sit within 1% of the truth's size on average (95% bound)
max_drift = 0.01

[confusion]
# the pair this team watches: at most 2% of golden cyclists labelled pedestrian (95% bound)
pairs = {{ "cyclist->pedestrian" = 0.02 }}
"""


def write_rules(out: Path) -> None:
    """examples/annogate.toml, and each format folder's: the same rules, golden path relative to it."""
    classes = ", ".join(f'"{c}"' for c in CLASSES)
    _write_text(out / "annogate.toml", _ROOT_RULES.format(classes=classes))
    for fmt in FORMATS:
        head = f"# Rules for the {fmt} example batch: those of ../annogate.toml, paths relative to this folder.\n"
        head += 'pack = "detection"\n'
        if fmt in FOLDER_FORMATS:
            head += (
                "# A folder batch (detected as one): one sub-folder per annotator, so the layout names who drew\n"
                "# each object, and an image in two annotators' folders is one image labelled twice.\n"
                'annotator_from = "parent_dir"\n'
            )
        _write_text(out / fmt / "annogate.toml", head + _RULES_BODY.format(classes=classes))


_DEFECTS = (
    ("dangling", "a dangling category (COCO id 99)"),
    ("past_edge", "a box 40 px past the right edge"),
    ("bowtie", "a bow-tie (self-intersecting) polygon"),
    ("zero_width", "a zero-width box"),
    ("shift", "bob's boxes shifted right by 12% of their width"),
    ("flip", "two cyclists labelled pedestrian"),
    ("missed", "a missed car"),
    ("phantom", "a phantom truck"),
    ("annotator", "who drew each object"),
)


def write_readme(out: Path) -> None:
    cols = ["coco", *FORMATS]
    head = "| planted defect | " + " | ".join(cols) + " |"
    rows = [head, "|" + "---|" * (len(cols) + 1)]
    notes: list[str] = []
    for key, what in _DEFECTS:
        cells = []
        for fmt in cols:
            why = CANNOT_EXPRESS[fmt].get(key)
            if why is None:
                cells.append("yes")
            else:
                notes.append(f"{len(notes) + 1}. {fmt}, {what}: {why}.")
                cells.append(f"see {len(notes)}")
        rows.append(f"| {what} | " + " | ".join(cells) + " |")
    text = f"""# annogate examples

Generated by `python examples/generate.py` (deterministic; do not edit the generated files by hand).

* `golden/golden.json`: the truth for the 12 honeypot images (COCO).
* `clean/batch.json`: 40 street images, 3 annotators (alice, bob, carol), agrees with the truth: passes.
* `defective/batch.json`: the same images with planted defects: fails.
* `yolo/`, `voc/`, `labelme/`, `cvat/annotations.xml`, `labelstudio/export.json`: the defective batch in each
  other format, same images (same file names, so the golden gate joins them), same objects, same defects.
  Each folder has an `annogate.toml` with the rules of `annogate.toml` (golden file path relative to it).

Layouts: `yolo/` is the Ultralytics layout (`data.yaml`, `images/<annotator>/*.png` - tiny black PNGs of
the right size, for their headers - and `labels/<annotator>/*.txt`); `voc/Annotations/<annotator>/*.xml`;
`labelme/<annotator>/*.json`; `cvat/annotations.xml` is a CVAT for images 1.1 project export with one task per
annotator; `labelstudio/export.json` is a Label Studio JSON export, one annotation per annotator per task.

## What each format can express

{chr(10).join(rows)}

{chr(10).join(notes)}

## What each gate should say (every format)

{chr(10).join(_verdict_rows(cols))}

`annogate examples/` gates each of the YOLO, VOC and LabelMe folders as one batch (`examples/yolo::schema`,
...); their findings name the file inside the folder. The folders' own `annogate.toml` say
`annotator_from = "parent_dir"`: each sub-folder is one annotator's work.
"""
    _write_text(out / "README.md", text)


_GATE_PLAN = (
    ("schema", "fails: the dangling category"),
    ("geometry", "fails: the box past the edge, the zero-width box, the bow-tie (where polygons exist)"),
    ("golden", "fails: bob's drift (left/right edges), the missed car, the flipped cyclists, the phantom"),
    ("confusion", "fails: cyclist->pedestrian above its 0.02 limit"),
    (
        "agreement",
        "fails: objects one annotator drew alone on an image another annotator labelled have no consensus; "
        "skips where the format cannot say two people drew on one image (CVAT)",
    ),
)


def _verdict_rows(cols: Sequence[str]) -> list[str]:
    rows = ["| gate | " + " | ".join(cols) + " | why |", "|" + "---|" * (len(cols) + 2)]
    for gate, why in _GATE_PLAN:
        cells = []
        for fmt in cols:
            if gate == "agreement" and fmt == "cvat":
                cells.append("skipped")
            elif gate == "agreement" and fmt in FOLDER_FORMATS:
                cells.append("failed")
            else:
                cells.append("failed")
        rows.append(f"| {gate} | " + " | ".join(cells) + f" | {why} |")
    return rows


# -- output ----------------------------------------------------------------------------------------


def _write_json(path: Path, data: Any, *, indent: int = 1, compact_below: int | None = None) -> None:
    """JSON as ``json.dumps(indent=...)`` writes it, except that containers nested deeper than
    ``compact_below`` stay on one line (one shape or result per line: small files, useful lines)."""
    if compact_below is None:
        text = json.dumps(data, indent=indent)
    else:
        text = _dump(data, 0, compact_below, indent)
    _write_text(path, text + "\n")


def _dump(v: Any, depth: int, compact_below: int, indent: int) -> str:
    if depth >= compact_below or not isinstance(v, (dict, list)) or not v:
        return json.dumps(v, separators=(", ", ": "))
    pad = " " * (indent * (depth + 1))
    end = " " * (indent * depth)
    if isinstance(v, dict):
        items = [f"{pad}{json.dumps(k)}: {_dump(x, depth + 1, compact_below, indent)}" for k, x in v.items()]
        return "{\n" + ",\n".join(items) + "\n" + end + "}"
    items = [pad + _dump(x, depth + 1, compact_below, indent) for x in v]
    return "[\n" + ",\n".join(items) + "\n" + end + "]"


def _write_text(path: Path, text: str) -> None:
    _write_bytes(path, text.encode("utf-8"))


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def main(out: Path = HERE) -> None:
    """Write every example under ``out`` (default: this folder)."""
    sc = build_scene()
    write_coco(sc, out)
    write_yolo(sc, out)
    write_voc(sc, out)
    write_labelme(sc, out)
    write_cvat(sc, out)
    write_labelstudio(sc, out)
    write_rules(out)
    write_readme(out)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE)
