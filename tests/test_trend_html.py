"""``annogate trend DIR --html OUT.html``: the page draws every series kind, names the flagged
series, carries no script, and escapes hostile names (parsed, not grepped)."""

from __future__ import annotations

import io
from html.parser import HTMLParser
from pathlib import Path

from annogate.commands import main_trend
from annogate.history import append_history, entries_from_report, load_history, trend

from .test_history import _report

HOSTILE = '<script>alert("x")</script>$\\frac{1}{0}$&amp;'


class _Page(HTMLParser):
    """Where each SVG sits (the section's data-kind), the flagged names, every tag seen."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.kind: str | None = None
        self.svgs: dict[str, int] = {}
        self.tags: list[str] = []
        self.flagged: dict[str, list[str]] = {}
        self.cells: list[str] = []
        self._in_flag = False
        self._in_td = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        a = dict(attrs)
        if tag == "section":
            self.kind = a.get("data-kind")
        elif tag == "svg" and self.kind is not None:
            self.svgs[self.kind] = self.svgs.get(self.kind, 0) + 1
        elif tag == "strong" and a.get("class") == "regressed":
            self._in_flag = True
        elif tag == "td":
            self._in_td = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "strong":
            self._in_flag = False
        elif tag == "td":
            self._in_td = False

    def handle_data(self, data: str) -> None:
        if self._in_flag and self.kind is not None:
            self.flagged.setdefault(self.kind, []).append(data)
        if self._in_td:
            self.cells.append(data)


def _history(tmp_path: Path) -> Path:
    hist = tmp_path / "hist"
    for when, k in (("2026-11-01T00:00:00Z", 2), ("2026-11-08T00:00:00Z", 3), ("2026-11-15T00:00:00Z", 20)):
        rep = _report(when, {"alice": (2, 100), "bob": (k, 100), HOSTILE: (1, 50)})
        append_history(hist, entries_from_report(rep))
    return hist


def test_trend_html_draws_each_kind_and_names_the_flagged(tmp_path: Path) -> None:
    hist = _history(tmp_path)
    out_html = tmp_path / "trend.html"
    code = main_trend([str(hist), "--html", str(out_html)], out=io.StringIO())
    assert code == 1  # bob regressed: the exit code is the same with or without --html
    text = out_html.read_text(encoding="utf-8")
    page = _Page()
    page.feed(text)
    series = trend(load_history(hist))
    kinds = {s.kind for s in series}
    assert kinds == {"source", "cohort", "annotator"}
    assert page.svgs == {k: 1 for k in kinds}  # one chart per series kind
    want = {k: sorted(s.key for s in series if s.kind == k and s.regressed) for k in kinds}
    assert want["annotator"] == ["bob"] and want["cohort"] == ["vendorB"]  # the fixture does regress
    assert {k: sorted(v) for k, v in page.flagged.items()} == {k: v for k, v in want.items() if v}
    # no script anywhere: the hostile name is text in a cell, escaped in the markup
    assert "script" not in page.tags
    assert HOSTILE in page.cells
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


def test_trend_html_unwritable_is_a_clean_error(tmp_path: Path) -> None:
    hist = _history(tmp_path)
    # a folder cannot be replaced by a file: a message and exit 4, no traceback
    assert main_trend([str(hist), "--html", str(tmp_path)], out=io.StringIO()) == 4
