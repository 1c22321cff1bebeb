"""The HTML report: structure, escaping of hostile text, thumbnails, and a real browser.

The page is a pure function of the audit report, so the tests feed it reports:
``tests/data/valid/html/report.json`` (the bundled examples' report, kept valid
against the shipped schema), a minimal and a malformed one (it must render what it
has and never crash), and hostile variants (``<script>`` in a class name must show
as text). The browser test loads the file in headless Chromium, reads the rendered
DOM and saves a screenshot.
"""

from __future__ import annotations

import base64
import copy
import io
import json
import os
import shutil
import stat
import subprocess
import sys
import zlib
from collections.abc import Mapping
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from annogate.report.html import fmt_money, fmt_value, render_html, write_html
from annogate.report.thumbnails import open_image
from tests.builders import Obj, make_batch

DATA = Path(__file__).resolve().parent / "data" / "valid" / "html"
HOSTILE = "<script>alert(1)</script>"


@pytest.fixture
def report() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / "report.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def rendered() -> str:
    """The page of the unmodified fixture report, rendered once for the tests that only read it."""
    return render_html(json.loads((DATA / "report.json").read_text(encoding="utf-8")))


class Page(HTMLParser):
    """A small DOM summary: tags, ids, attributes, and the text of each element with an id."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.ids: dict[str, str] = {}
        self.text: list[str] = []
        self._open: list[tuple[str, str | None, int]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        self.tags.append((tag, a))
        if tag not in ("meta", "img", "br", "link", "input", "path", "use", "rect", "line", "circle"):
            self._open.append((tag, a.get("id"), len(self.text)))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            t, ident, start = self._open.pop()
            if ident:
                self.ids[ident] = "".join(self.text[start:]).strip()
            if t == tag:
                break

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    def count(self, tag: str, **attrs: str) -> int:
        return sum(1 for t, a in self.tags if t == tag and all(a.get(k) == v for k, v in attrs.items()))


def parse(html: str) -> Page:
    p = Page()
    p.feed(html)
    p.close()
    return p


def _rows_in(html: str, table_id: str) -> int:
    """Body rows of the table with that id (counted on the markup the template writes: one <tr> per line)."""
    start = html.index(f'id="{table_id}"')
    body = html[html.index("<tbody>", start) : html.index("</tbody>", start)]
    return body.count("<tr")


def _findings(report: Mapping[str, Any], b: int, severity: str | None = None) -> list[dict[str, Any]]:
    return [
        f for g in report["batches"][b]["gates"] for f in g["findings"] if severity is None or f["severity"] == severity
    ]


# --------------------------------------------------------------------------- structure


def test_fixture_report_is_valid_against_the_shipped_schema(report: dict[str, Any]) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    from annogate.report.audit import schema_path

    jsonschema.validate(report, json.loads(schema_path().read_text(encoding="utf-8")))


def test_page_has_every_section_with_the_reports_figures(report: dict[str, Any], rendered: str) -> None:
    html = rendered
    page = parse(html)
    total = report["summary"]["cost"]["EUR"]["total"]
    assert page.ids["summary-total-1"] == fmt_money(total, "EUR")
    assert page.ids["run-verdict"] == report["summary"]["verdict"]
    assert page.ids["summary-batches"] == str(len(report["batches"]))
    for i, b in enumerate(report["batches"], start=1):
        bid = f"batch-{i}"
        for section in ("why", "cost", "defects", "findings", "waterfall", "gate-confusion"):
            assert f"{bid}-{section}" in page.ids, (bid, section)
        # the cost table's total cell is the batch's total, formatted
        assert fmt_money(b["cost"]["total"], "EUR") in page.ids[f"{bid}-cost-table"]
        assert "<svg" in html.split(f'id="{bid}-confusion"')[1][:200]
    bad = report["batches"][1]
    assert bad["verdict"] == "failed"
    failed_checks = [c for g in bad["gates"] for c in g["checks"] if not c["passed"]]
    assert _rows_in(html, "batch-2-failed-checks") == len(failed_checks) > 0
    assert _rows_in(html, "batch-2-findings-table") == len(_findings(report, 1, "error"))
    assert _rows_in(html, "batch-2-warnings-table") == len(_findings(report, 1, "warning"))
    # every gate of the failing batch is listed with its verdict
    assert _rows_in(html, "batch-2-gates") == len(bad["gates"])


def test_failed_check_shows_value_limit_and_miss(report: dict[str, Any], rendered: str) -> None:
    page = parse(rendered)
    text = page.ids["batch-2-failed-checks"]
    # every failed check of the defective batch, with its value, limit and miss, as the report has them
    batch = next(b for b in report["batches"] if b["path"].endswith("defective/batch.json"))
    failed = [c for g in batch["gates"] for c in g["checks"] if not c["passed"] and c["severity"] == "error"]
    assert failed
    for c in failed:
        assert c["scope"] in text
        assert fmt_value(c["value"]) in text and fmt_value(c["limit"]) in text


def test_findings_are_capped_and_say_so(report: dict[str, Any]) -> None:
    html = render_html(report, max_findings=5)
    n = len(_findings(report, 1))
    assert f"Showing the first 5 of {n} findings" in html
    errors = min(5, len(_findings(report, 1, "error")))
    assert _rows_in(html, "batch-2-findings-table") == errors


def test_page_is_self_contained_and_has_no_script(report: dict[str, Any], rendered: str) -> None:
    html = rendered
    page = parse(html)
    assert page.count("script") == 0
    assert "<script" not in html.lower()
    for tag, attrs in page.tags:
        for name in ("src", "href", "xlink:href"):
            url = attrs.get(name)
            if url:
                assert url.startswith(("data:", "#")), (tag, name, url)
        assert not any(k.startswith("on") for k in attrs), (tag, attrs)
    assert page.count("link") == 0
    assert "@import" not in html and "url(http" not in html


def test_svg_ids_are_unique_across_charts(report: dict[str, Any], rendered: str) -> None:
    page = parse(rendered)
    ids = [a["id"] for _, a in page.tags if "id" in a]
    assert len(ids) == len(set(ids)), sorted(i for i in ids if ids.count(i) > 1)[:5]


def test_known_tables_get_wilson_intervals(report: dict[str, Any], rendered: str) -> None:
    from annogate.stats import wilson_interval

    page = parse(rendered)
    lo, hi = wilson_interval(6, 8)  # cyclist in the defective batch: 6 of 8 golden recalled
    assert f"{100 * lo:.1f}–{100 * hi:.1f} %" in page.ids["batch-2-table-golden-per-class"]
    # mislabelled: 2 of 50 golden objects
    lo, hi = wilson_interval(2, 50)
    assert f"{100 * lo:.1f}–{100 * hi:.1f} %" in page.ids["batch-2-defects-type-table"]


# --------------------------------------------------------------------------- robustness


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"batches": []},
        {"batches": [{}]},
        {"batches": [{"path": "x.json", "gates": [], "cost": None}]},
        {"summary": "nonsense", "batches": "nonsense"},
        {
            "summary": {"cost": {"EUR": {"total": "NaN"}}},
            "batches": [
                {
                    "path": "a.json",
                    "gates": [
                        1,
                        None,
                        {"gate": "golden", "tables": {"golden_drift": [["edge"]], "x": "no"}, "checks": [{}]},
                        {"gate": "confusion", "tables": {"confusion_matrix": [["g"], ["a", 1, 2, 3]]}},
                        {"gate": "agreement", "tables": {"pairs": [["annotator_a", "annotator_b", "mean_iou"], [1]]}},
                    ],
                    "cost": {"total": None, "by_error_type": [1, {"key": None}], "scenarios": {"low": 3}},
                }
            ],
        },
    ],
)
def test_minimal_and_malformed_reports_render(doc: dict[str, Any]) -> None:
    html = render_html(doc)
    page = parse(html)
    assert page.count("html") == 1
    assert "annogate report" in html


def test_unknown_tables_render_generically(report: dict[str, Any]) -> None:
    golden = next(g for g in report["batches"][1]["gates"] if g["gate"] == "golden")
    golden["tables"]["future_table"] = [["who", "what"], ["bob", 1.5], ["carol"]]
    report["batches"][1]["cost"]["by_class"] = [{"key": "cyclist", "amount": 12.5, "defects": 2}]
    report["batches"][1]["cost"]["partial"] = ["agreement"]
    html = render_html(report)
    page = parse(html)
    assert "bob" in page.ids["batch-2-table-future-table"] and "1.5" in page.ids["batch-2-table-future-table"]
    assert "EUR 12.50" in page.ids["batch-2-table-by-class"]
    assert "Partial estimate" in html


def test_per_annotator_drift_rows_reach_the_chart(report: dict[str, Any]) -> None:
    golden = next(g for g in report["batches"][1]["gates"] if g["gate"] == "golden")
    golden["tables"]["golden_drift_by_annotator"] = [
        ["annotator", "edge", "mean", "ci95_low", "ci95_high", "n"],
        ["bob", "left", 0.12, 0.1, 0.14, 20],
        ["bob", "right", 0.12, 0.1, 0.14, 20],
        ["alice", "left", 0.0, -0.01, 0.01, 20],
    ]
    html = render_html(report)
    fig = html.split('id="batch-2-drift"')
    assert len(fig) >= 2
    svgs = "".join(part[: part.find("</figure>")] for part in fig[1:])
    assert ">bob<" in svgs and ">alice<" in svgs


# --------------------------------------------------------------------------- hostile text


def _hostile(report: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(report)
    b = r["batches"][1]
    b["path"] = f"batches/{HOSTILE}.json"
    for g in b["gates"]:
        for f in g["findings"]:
            f["message"] = f"{HOSTILE} \x1b[31m $\\frac{{1}}{{0}}$ {f['message']}"
            f["category"] = HOSTILE
            f["annotator"] = '"><img src=x onerror=alert(1)>'
        for t in g["tables"].values():
            for row in t[1:]:
                if row and isinstance(row[0], str):
                    row[0] = HOSTILE + "$x^$" + row[0] + "\x00\u202e"
        if g["gate"] == "confusion":
            g["tables"]["confusion_matrix"][0] = [
                g["tables"]["confusion_matrix"][0][0],
                *(HOSTILE + h for h in g["tables"]["confusion_matrix"][0][1:]),
            ]
    for item in b["cost"]["by_error_type"] + b["cost"]["by_annotator"]:
        item["key"] = HOSTILE + "$\\$" + "x" * 500
    return r


def test_hostile_strings_are_text_not_markup(report: dict[str, Any]) -> None:
    html = render_html(_hostile(report))
    lower = html.lower()
    assert "<script" not in lower
    assert "<img src=x" not in lower and "onerror=alert" not in lower.replace("onerror=alert(1)&gt;", "")
    page = parse(html)
    assert page.count("script") == 0
    assert not any(k.startswith("on") for _, a in page.tags for k in a)
    # the hostile text is shown, as text (escaped in the source, decoded by the parser)
    assert HOSTILE in page.ids["batch-2-findings-table"]
    assert "&lt;script&gt;" in html
    assert HOSTILE in page.ids["batch-2-table-confusion-matrix"]


def test_hostile_chart_labels_are_sanitised_and_truncated(report: dict[str, Any]) -> None:
    from annogate.report.charts import MAX_LABEL, safe_label

    label = safe_label(HOSTILE + "\x1b[31m\u202e$x$" + "y" * 500)
    assert "\x1b" not in label and "\u202e" not in label
    assert len(label) <= MAX_LABEL + 4  # escaped dollars may add a backslash each
    assert "\\$x\\$" in label
    html = render_html(_hostile(report))
    # inside the SVG charts the label is XML text: escaped, and never 500 x's long
    assert "x" * 100 not in html.split('id="batch-2-defects-type"')[1].split("</figure>")[0]


# --------------------------------------------------------------------------- thumbnails


def _png(width: int, height: int, colour: tuple[int, int, int] = (30, 30, 200)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buf, format="PNG")
    return buf.getvalue()


def _header_only_png(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with a tiny body: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")
    )


def _thumb_report() -> dict[str, Any]:
    def finding(aid: int, image: str, rule: str, gate: str, message: str) -> dict[str, Any]:
        return {
            "gate": gate,
            "rule": rule,
            "message": message,
            "file": "batch.json",
            "line": 10 + aid,
            "pointer": None,
            "annotation_id": aid,
            "image": image,
            "category": "car",
            "annotator": "bob",
            "severity": "error",
            "value": None,
        }

    return {
        "summary": {"verdict": "failed"},
        "batches": [
            {
                "path": "batch.json",
                "verdict": "failed",
                "gates": [
                    {
                        "gate": "golden",
                        "verdict": "failed",
                        "metrics": {"golden_file": "golden.json"},
                        "findings": [
                            finding(
                                1,
                                "a.png",
                                "mislabelled",
                                "golden",
                                "labelled 'car', golden says 'truck' (golden annotation 7, IoU 0.8)",
                            ),
                            finding(2, "../outside.png", "extra", "golden", "extra"),
                            finding(3, "bomb.png", "extra", "golden", "extra"),
                        ],
                    }
                ],
            }
        ],
    }


def _thumb_batches() -> dict[str, Any]:
    images = {"a.png": (400.0, 300.0), "../outside.png": (400.0, 300.0), "bomb.png": (30000.0, 30000.0)}
    batch = make_batch(
        [
            Obj(image="a.png", category="car", bbox=(100, 100, 80, 60), id=1),
            Obj(image="../outside.png", category="car", bbox=(10, 10, 50, 50), id=2),
            Obj(image="bomb.png", category="car", bbox=(10, 10, 50, 50), id=3),
        ],
        images=images,
    )
    golden = make_batch([Obj(image="a.png", category="truck", bbox=(110, 100, 80, 60), id=7)], images=images)
    return {"batch.json": batch, "golden.json": golden}


def _decode(uri: str) -> Any:
    from PIL import Image

    assert uri.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB")


def test_thumbnails_draw_on_the_image_when_reachable_and_confined(tmp_path: Path) -> None:
    root = tmp_path / "images"
    root.mkdir()
    (root / "a.png").write_bytes(_png(400, 300))
    (tmp_path / "outside.png").write_bytes(_png(400, 300))  # reachable only by walking out of the root
    (root / "bomb.png").write_bytes(_header_only_png(30000, 30000))
    batches = _thumb_batches()
    calls: list[str] = []

    def load(path: str) -> Any:
        calls.append(path)
        return batches[path]

    html = render_html(_thumb_report(), load_batch=load, images_root=root)
    assert calls == ["batch.json", "golden.json"]
    page = parse(html)
    thumbs = [a for t, a in page.tags if t == "div" and "data-on-image" in a]
    assert [t["data-on-image"] for t in thumbs] == ["yes", "no", "no"]
    imgs = [a["src"] for t, a in page.tags if t == "img"]
    assert len(imgs) == 3
    first = _decode(imgs[0])
    assert max(first.size) <= 256
    colours = {c for _, c in first.getcolors(1 << 20)}
    assert (30, 30, 200) in colours  # the image itself
    assert any(r > 150 and g < 90 and b < 90 for r, g, b in colours)  # the batch box (red)
    assert any(g > 100 and r < 80 and b < 120 for r, g, b in colours)  # the golden counterpart (green)
    blank = _decode(imgs[1])
    assert (30, 30, 200) not in {c for _, c in blank.getcolors(1 << 20)}  # ../outside.png was not read


def test_open_image_refuses_big_images_before_decoding(tmp_path: Path) -> None:
    (tmp_path / "bomb.png").write_bytes(_header_only_png(30000, 30000))
    (tmp_path / "small.png").write_bytes(_png(20, 20))
    assert open_image(tmp_path, "bomb.png") is None
    assert open_image(tmp_path, "small.png", max_pixels=100) is None
    img = open_image(tmp_path, "small.png")
    assert img is not None and img.size == (20, 20)
    img.close()
    assert open_image(tmp_path, "/etc/hostname") is None
    assert open_image(tmp_path, "../small.png") is None
    assert open_image(tmp_path, "missing.png") is None


def test_thumbnails_survive_a_batch_that_cannot_be_reloaded() -> None:
    def load(path: str) -> Any:
        raise FileNotFoundError(path)

    html = render_html(_thumb_report(), load_batch=load)
    assert "could not reload the batch for thumbnails" in html


# --------------------------------------------------------------------------- writing and imports


def test_write_html_is_atomic_with_the_users_umask(tmp_path: Path) -> None:
    report: dict[str, Any] = {"summary": {"verdict": "passed"}, "batches": []}
    from annogate.report.outputs import OutputError

    old = os.umask(0o027)
    try:
        write_html(tmp_path / "r.html", report)
    finally:
        os.umask(old)
    mode = stat.S_IMODE((tmp_path / "r.html").stat().st_mode)
    assert mode == 0o640
    assert (tmp_path / "r.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    with pytest.raises(OutputError):
        write_html(tmp_path, report)


def test_import_annogate_does_not_load_the_rendering_libraries() -> None:
    code = (
        "import sys, annogate, annogate.report, annogate.report.html;"
        "print([m for m in ('jinja2', 'matplotlib', 'PIL') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# --------------------------------------------------------------------------- browser


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is not installed: the HTML report must be checked in a real browser in CI")
        pytest.skip("chromium is not installed (apt-get install chromium)")
    return exe


def _chrome_args(exe: str, profile: Path) -> list[str]:
    return [
        exe,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
    ]


def test_report_in_headless_chromium(tmp_path: Path, report: dict[str, Any]) -> None:
    exe = _chromium()
    path = tmp_path / "report.html"
    write_html(path, report)
    args = _chrome_args(exe, tmp_path / "profile")
    dom = subprocess.run([*args, "--dump-dom", path.as_uri()], capture_output=True, text=True, timeout=120, check=True)
    page = parse(dom.stdout)
    # the rendered DOM, as the browser built it
    assert page.ids["summary-total-1"] == fmt_money(report["summary"]["cost"]["EUR"]["total"], "EUR")
    assert page.ids["run-verdict"] == "failed"
    for section in ("batch-2-why", "batch-2-cost", "batch-2-defects", "batch-2-findings", "batch-2-thumbnails"):
        if section == "batch-2-thumbnails":
            continue  # no load_batch here: covered by the thumbnail tests
        assert section in page.ids, section
    assert page.count("svg") >= 6
    assert "<svg" in dom.stdout.split('id="batch-2-confusion"')[1][:300]
    assert _rows_in(dom.stdout, "batch-2-findings-table") == len(_findings(report, 1, "error"))
    assert page.count("script") == 0
    for err in ("Uncaught", "ERROR:CONSOLE", ":CONSOLE("):
        assert err not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "report.png"
    subprocess.run(
        [*args, f"--screenshot={shot}", "--window-size=1280,2000", path.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    from PIL import Image

    with Image.open(shot) as im:
        assert im.size == (1280, 2000)
        # not a blank page: the header, cards and charts put many colours on it
        assert len(im.convert("RGB").resize((320, 500)).getcolors(1 << 20)) > 50
