"""Pascal VOC reader and the safe-XML helper: values, exact lines, hostile input, conformance."""

from __future__ import annotations

import json
import math
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from annogate.formats import LoadError, load_batch
from annogate.formats._xml import XMLLimits, XMLProblem, line_of, parse_xml
from annogate.formats.voc import FORMAT, load_voc, looks_like_voc

DATA = Path(__file__).parent / "data"
VALID = DATA / "valid" / "voc"
INVALID = DATA / "invalid" / "voc"


def _problems(batch: object) -> list[tuple[str | None, int | None, str]]:
    return [(p.file, p.line, p.rule) for p in batch.problems]  # type: ignore[attr-defined]


# -- values ---------------------------------------------------------------------------


def test_boxes_flags_parts_actions_and_lines() -> None:
    b = load_voc(VALID / "parts")
    assert b.format == "voc" and b.problems == []
    assert list(b.images.file_name) == ["empty_03.jpg", "street_01.jpg", "street_02.jpg"]
    assert list(b.images.width) == [100, 640, 320] and list(b.images.height) == [100, 480, 240]
    a = b.annotations
    assert len(a) == 3  # parts are not extra objects
    assert [b.category_name(i) for i in range(3)] == ["person", "car", "dog"]
    # width = xmax - xmin, no +1
    np.testing.assert_array_equal(a.bbox, [[100, 50, 120.5, 350], [300, 200, 339, 279], [10, 20, 20, 40]])
    assert list(a.line) == [12, 47, 4]  # the <object> start tags
    assert [b.source_file(i) for i in range(3)] == [
        "Annotations/street_01.xml",
        "Annotations/street_01.xml",
        "Annotations/street_02.xml",
    ]
    assert a.attributes is not None
    person, car, dog = a.attributes
    assert person == {
        "difficult": False,
        "truncated": False,
        "occluded": True,
        "pose": "Left",
        "walking": True,
        "phoning": False,
        "parts": (
            {"name": "head", "bbox": [140.0, 50.0, 40.0, 45.0], "line": 24},
            {"name": "hand", "bbox": [200.0, 200.0, 15.0, 20.0], "line": 33},
        ),
    }
    assert car == {"difficult": True, "truncated": True, "pose": "Unspecified", "color": "red"}
    assert dog is None
    assert not a.iscrowd.any()  # difficult is kept as a flag, not turned into a crowd region
    assert len(b.sha256) == 64


def test_single_file_and_detection() -> None:
    f = VALID / "parts" / "Annotations" / "street_02.xml"
    assert looks_like_voc(f, f.read_bytes()) and looks_like_voc(VALID / "parts", b"")
    b = load_batch(f)
    assert b.format == "voc" and len(b.annotations) == 1 and b.files == ("street_02.xml",)
    assert FORMAT.folder and FORMAT.suffixes == (".xml",)


@pytest.mark.parametrize(
    "head,claimed",
    [
        (b'<?xml version="1.0"?>\n<!-- c -->\n<annotation>', True),
        (b"\xef\xbb\xbf<annotation>", True),
        (b'<!DOCTYPE a [<!ENTITY x "y">]>\n<annotation>', True),  # claimed, then refused with its rule
        (b"<annotations><version>1.1</version>", False),  # CVAT
        (b"<annotation_set>", False),
        (b"{}", False),
        (b"<!--" + b"-" * 5000 + b">" * 5000, False),  # no regex blow-up
    ],
)
def test_sniff(head: bytes, claimed: bool, tmp_path: Path) -> None:
    assert looks_like_voc(tmp_path / "x.xml", head) is claimed


def test_every_problem_has_file_line_and_rule() -> None:
    b = load_voc(INVALID / "mixed")
    assert _problems(b) == [
        ("b_nosize.xml", 1, "image_size"),
        ("b_nosize.xml", 8, "schema"),  # <xmax>ten</xmax>
        ("b_nosize.xml", 12, "schema"),  # object without <name>
        ("b_nosize.xml", 13, "schema"),  # <difficult>maybe</difficult>
        ("b_nosize.xml", 16, "schema"),  # no <bndbox>
        ("c_zerosize.xml", 4, "image_size"),
        ("d_truncated.xml", 6, "syntax"),
        ("e_cvat.xml", 1, "schema"),
        ("f_nofilename.xml", 1, "schema"),
    ]
    a = b.annotations
    # every object that was there is a row, even when its box could not be read
    assert len(a) == 4
    assert np.isnan(a.bbox[1]).all() and b.category_name(2) is None
    assert math.isnan(b.images.width[b.images.index_by_name()["b.jpg"]])
    assert "f_nofilename.jpg" in b.images.index_by_name()


def test_absurd_image_size_is_a_problem_and_unknown() -> None:
    """``<width>2**70</width>`` and ``<height>nan</height>`` are numbers no image has: reported, size unknown."""
    b = load_voc(INVALID / "image_size__huge_and_nan.xml")
    assert [(p.line, p.rule) for p in b.problems] == [(4, "image_size"), (5, "image_size")]
    assert "<size><width>" in b.problems[0].message and "<size><height>" in b.problems[1].message
    assert math.isnan(b.images.width[0]) and math.isnan(b.images.height[0])
    assert len(b.annotations) == 1  # the object is still gated


@pytest.mark.parametrize(("text", "bad"), [("-80", True), ("inf", True), ("2147483649", True), ("2147483648", False)])
def test_image_side_bounds(text: str, bad: bool, tmp_path: Path) -> None:
    p = tmp_path / "x.xml"
    p.write_text(
        f"<annotation><filename>x.jpg</filename><size><width>{text}</width><height>9</height></size></annotation>"
    )
    b = load_voc(p)
    assert [q.rule for q in b.problems] == (["image_size"] if bad else [])
    assert math.isnan(b.images.width[0]) is bad


def test_nothing_readable_is_a_load_error(tmp_path: Path) -> None:
    with pytest.raises(LoadError, match=r"no \.xml files"):
        load_voc(tmp_path)
    (tmp_path / "x.xml").write_bytes(b"<annotation>")
    with pytest.raises(LoadError, match=r"none of the 1 XML files.*x.xml:1.*\[syntax\]"):
        load_voc(tmp_path)
    with pytest.raises(LoadError, match=r"x.xml:1:.*\[syntax\]"):
        load_voc(tmp_path / "x.xml")


# -- hostile XML ----------------------------------------------------------------------

GOOD = b"<annotation><filename>g.jpg</filename><size><width>9</width><height>9</height></size></annotation>"


def _bomb(path: Path) -> None:
    ents = ['<!ENTITY lol0 "lol">'] + [f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10}">' for i in range(1, 10)]
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE annotation [\n' + "\n".join(ents) + "\n]>\n<annotation>&lol9;</annotation>"
    )


def _xxe(path: Path) -> None:
    path.write_text(
        '<?xml version="1.0"?>\n<!DOCTYPE annotation [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        "<annotation><filename>&xxe;</filename></annotation>"
    )


def _xxe_parameter(path: Path) -> None:
    path.write_text('<?xml version="1.0"?>\n<!DOCTYPE annotation SYSTEM "http://127.0.0.1:9/evil.dtd">\n<annotation/>')


def _write_big(path: Path, prefix: bytes, fill: bytes, suffix: bytes, size: int = 100 << 20) -> None:
    with open(path, "wb") as fh:
        fh.write(prefix)
        block = fill * (1 << 20)
        for _ in range(size // len(block)):
            fh.write(block)
        fh.write(suffix)


def _big_attribute(path: Path) -> None:
    _write_big(path, b'<annotation>\n<filename x="', b"A", b'">a.jpg</filename></annotation>')


def _big_text(path: Path) -> None:
    _write_big(path, b"<annotation>\n<filename>", b"A", b"</filename></annotation>")


def _deep(path: Path) -> None:
    path.write_bytes(b"<annotation>" + b"<a>" * 100_000 + b"</a>" * 100_000 + b"</annotation>")


def _latin1(path: Path) -> None:
    path.write_bytes("<annotation>\n<object><name>caf\xe9</name></object></annotation>".encode("latin-1"))


def _truncated(path: Path) -> None:
    path.write_bytes(GOOD[:40])


def _undefined_entity(path: Path) -> None:
    path.write_bytes(b"<annotation><filename>&nope;</filename></annotation>")


HOSTILE: dict[str, tuple[Callable[[Path], None], str, int | None]] = {
    "billion_laughs": (_bomb, "xml_unsafe", 2),
    "external_entity": (_xxe, "xml_unsafe", 2),
    "external_dtd": (_xxe_parameter, "xml_unsafe", 2),
    "attribute_100MB": (_big_attribute, "limit", 2),
    "text_100MB": (_big_text, "limit", 2),
    "nesting_100k": (_deep, "limit", 1),
    "not_utf8": (_latin1, "encoding", 2),
    "truncated": (_truncated, "syntax", 1),
    "undefined_entity": (_undefined_entity, "syntax", 1),
}


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_xml_is_a_clean_failure(name: str, tmp_path: Path) -> None:
    make, rule, line = HOSTILE[name]
    bad = tmp_path / "bad.xml"
    make(bad)
    tracemalloc.start()
    try:
        # alone: the batch cannot be read at all
        with pytest.raises(LoadError) as err:
            load_batch(bad)
        assert f"[{rule}]" in str(err.value) and err.value.line == line
        # beside a good file: a problem of the batch naming the file, line and rule
        (tmp_path / "good.xml").write_bytes(GOOD)
        b = load_voc(tmp_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert _problems(b) == [("bad.xml", line, rule)]
    assert list(b.images.file_name) == ["g.jpg"]
    assert "root:" not in json.dumps([p.message for p in b.problems])  # /etc/passwd never read
    assert peak < 160 << 20  # bounded: never the whole 100 MB token, let alone an expansion


def test_xml_helper_lines_and_limits() -> None:
    root = parse_xml(b'<?xml version="1.0"?>\n<a>\n  <b x="1">t</b>\n\n  <c/>\n</a>\n')
    assert [(e.tag, line_of(e)) for e in root.iter()] == [("a", 2), ("b", 3), ("c", 5)]
    assert line_of(None) == 0
    with pytest.raises(XMLProblem) as e:
        parse_xml(b"<a><b><c/></b></a>", limits=XMLLimits(max_depth=2))
    assert e.value.rule == "limit" and e.value.line == 1
    with pytest.raises(XMLProblem, match="more than 2 elements"):
        parse_xml(b"<a><b/><c/></a>", limits=XMLLimits(max_elements=2))
    with pytest.raises(XMLProblem, match="larger than"):
        parse_xml(b"<a>" + b" " * 100 + b"</a>", limits=XMLLimits(max_bytes=50))
    # declared encodings and BOMs are honoured; only undeclared non-UTF-8 is an encoding problem
    assert parse_xml('<?xml version="1.0" encoding="ISO-8859-1"?><a>é</a>'.encode("latin-1")).text == "é"
    assert parse_xml("<a>é</a>".encode("utf-16")).text == "é"
    assert parse_xml(b"\xef\xbb\xbf<a>\xc3\xa9</a>").text == "é"


# -- conformance ----------------------------------------------------------------------


def test_datumaro_voc_dataset1(thirdparty: Path) -> None:
    b = load_voc(thirdparty / "datumaro/tests/assets/voc_dataset/voc_dataset1")
    assert b.problems == []
    assert list(b.images.file_name) == ["2007_000001.jpg"]
    assert (b.images.width[0], b.images.height[0]) == (20, 10)
    a = b.annotations
    assert a.attributes is not None
    assert [b.category_name(i) for i in range(len(a))] == ["cat", "person"]
    np.testing.assert_array_equal(a.bbox, [[1, 2, 2, 2], [4, 5, 2, 2]])
    cat, person = a.attributes
    assert cat["truncated"] is True and cat["difficult"] is False and cat["pose"] == "Unspecified"
    assert "occluded" not in cat  # no <occluded> tag: not claimed either way
    assert person["parts"][0]["name"] == "head" and person["parts"][0]["bbox"] == [5.5, 6.0, 2.0, 2.0]
    actions = {k: v for k, v in person.items() if k != "parts"}
    assert len(actions) == 11 and actions["phoning"] is True and actions["jumping"] is False


def test_datumaro_voc_without_size_is_reported(thirdparty: Path) -> None:
    b = load_voc(thirdparty / "datumaro/tests/assets/voc_dataset/voc_dataset2")
    assert {p.rule for p in b.problems} == {"image_size"}
    assert all(p.file and p.line for p in b.problems)


def test_mit_labelme_xml_is_refused_by_name(thirdparty: Path) -> None:
    with pytest.raises(LoadError, match=r"MIT LabelMe XML.*\[unsupported_format\]"):
        load_voc(thirdparty / "datumaro/tests/assets/labelme_dataset")


def test_review_gts_voc_equals_coco(thirdparty: Path) -> None:
    gts = thirdparty / "review_object_detection_metrics/data/database/gts"
    coco = json.loads((gts / "coco_format_v1/instances_default.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    files = {im["id"]: im["file_name"] for im in coco["images"]}
    want: dict[tuple[str, str], list[list[float]]] = {}
    for ann in coco["annotations"]:
        want.setdefault((files[ann["image_id"]], names[ann["category_id"]]), []).append(ann["bbox"])
    for folder in ("pascalvoc_format", "imagenet_format"):
        b = load_voc(gts / folder)
        assert b.problems == [] and len(b.images) == 100
        got: dict[tuple[str, str], list[list[float]]] = {}
        for i in range(len(b.annotations)):
            got.setdefault((str(b.image_name(i)), str(b.category_name(i))), []).append(list(b.annotations.bbox[i]))
        assert got.keys() == want.keys()
        for key, boxes in want.items():
            g = np.array(sorted(got[key]))
            w = np.array(sorted(boxes))
            assert g.shape == w.shape and np.abs(g - w).max() <= 1.0, key
