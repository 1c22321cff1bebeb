"""Progress of long loads (issue 12): the reader reports bytes, the engine forwards them,
the pytest adapter draws one line on a terminal only, and only after ~2 s."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from annogate.engine import Engine
from annogate.formats import _jsonscan
from annogate.formats.coco import load_coco
from annogate.plugin import TerminalProgress

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _coco(path: Path, n_images: int = 300) -> Path:
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 640, "height": 480} for i in range(1, n_images + 1)]
    anns = []
    for i in range(1, n_images + 1):
        for k in range(4):
            x, y = 10.0 + k * 50, 20.0 + k * 30
            anns.append(
                {
                    "id": len(anns) + 1,
                    "image_id": i,
                    "category_id": 1 + k % 2,
                    "bbox": [x, y, 40.0, 25.0],
                    "area": 1000.0,
                    "iscrowd": 0,
                    "segmentation": [[x, y, x + 40, y, x + 40, y + 25, x, y + 25]],
                }
            )
    cats = [{"id": 1, "name": "car"}, {"id": 2, "name": "person"}]
    # the BOM shifts offsets by 3: the last report must still be the file's size
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"images": images, "annotations": anns, "categories": cats}).encode())
    return path


def test_coco_reader_reports_monotone_bytes_up_to_the_file_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _coco(tmp_path / "b.json")
    size = path.stat().st_size
    plain = load_coco(path)
    monkeypatch.setattr(_jsonscan, "_BLOCK", 4096)  # many blocks, seams inside elements and strings
    calls: list[tuple[int, int]] = []
    batch = load_coco(path, progress=lambda done, total: calls.append((done, total)))
    assert len(calls) == -(-size // 4096)
    done = [d for d, _ in calls]
    assert done == sorted(set(done)), "bytes done must strictly rise"
    assert all(total == size for _, total in calls)
    assert calls[-1] == (size, size)
    # reporting progress (and reading by small blocks) changes nothing read
    assert np.array_equal(batch.annotations.bbox, plain.annotations.bbox)
    assert np.array_equal(batch.annotations.poly_xy, plain.annotations.poly_xy)
    assert batch.sha256 == plain.sha256 != ""
    assert np.array_equal(batch.annotations.image_id, plain.annotations.image_id)


def test_scanner_block_size_is_checked(tmp_path: Path) -> None:
    path = _coco(tmp_path / "b.json", 2)
    with pytest.raises(ValueError, match="block_size"):
        list(_jsonscan.scan_json(path, big_keys=frozenset(), block_size=0))


class _Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def begin(self, path: Path) -> Callable[[int, int], None]:
        self.events.append(("begin", path))
        return lambda done, total: self.events.append(("update", (done, total)))

    def end(self, path: Path) -> None:
        self.events.append(("end", path))


def test_engine_forwards_progress_and_brackets_every_load(tmp_path: Path) -> None:
    path = _coco(tmp_path / "b.json")
    rec = _Recorder()
    engine = Engine(progress=rec)
    engine.load(path)
    kinds = [k for k, _ in rec.events]
    assert kinds[0] == "begin" and kinds[-1] == "end" and "update" in kinds
    assert rec.events[-2] == ("update", (path.stat().st_size, path.stat().st_size))
    engine.load(path)  # cached: not read again, nothing reported
    assert kinds == [k for k, _ in rec.events]


def test_readers_without_progress_are_bracketed_and_not_broken(tmp_path: Path) -> None:
    folder = shutil.copytree(EXAMPLES / "yolo", tmp_path / "yolo")
    rec = _Recorder()
    engine = Engine(progress=rec)
    engine.load(folder)
    assert [k for k, _ in rec.events] == ["begin", "end"]


def test_engine_ends_progress_when_the_load_fails(tmp_path: Path) -> None:
    bad = tmp_path / "b.json"
    bad.write_text('{"images": [', encoding="utf-8")
    rec = _Recorder()
    engine = Engine(progress=rec)
    with pytest.raises(Exception, match="unexpected end of file"):
        engine.load(bad)
    assert [k for k, _ in rec.events][-1] == "end"


class _FakeTw:
    fullwidth = 80

    def __init__(self, current: str = "") -> None:
        self._current_line = current
        self.out = ""

    def write_raw(self, text: str, *, flush: bool = False) -> None:
        self.out += text


def test_terminal_line_waits_two_seconds_then_throttles_and_clears() -> None:
    now = [100.0]
    tw = _FakeTw(current="batches/big.json ")
    prog = TerminalProgress(tw=tw, clock=lambda: now[0], root=Path("/r"))
    cb = prog.begin(Path("/r/batches/big.json"))
    mib = 1 << 20
    for t in (0.0, 0.5, 1.9):
        now[0] = 100.0 + t
        cb(10 * mib, 440 * mib)
    assert tw.out == "", "nothing in the first 2 s"
    now[0] = 102.1
    cb(200 * mib, 440 * mib)
    assert tw.out == "\rannogate: reading batches/big.json 45% (200 of 440 MiB)"
    now[0] = 102.15  # within 0.2 s of the last update: throttled
    cb(210 * mib, 440 * mib)
    assert tw.out.count("annogate: reading") == 1
    now[0] = 102.4
    cb(440 * mib, 440 * mib)
    assert tw.out.endswith("100% (440 of 440 MiB)")
    shown = len("annogate: reading batches/big.json 100% (440 of 440 MiB)")  # the widest line drawn
    prog.end(Path("/r/batches/big.json"))
    # blanked, and pytest's own text on that line put back
    assert tw.out.endswith("\r" + " " * shown + "\rbatches/big.json ")


def test_terminal_line_silent_for_a_fast_load() -> None:
    now = [0.0]
    tw = _FakeTw()
    prog = TerminalProgress(tw=tw, clock=lambda: now[0])
    cb = prog.begin(Path("a.json"))
    now[0] = 1.5
    cb(1, 1)
    prog.end(Path("a.json"))
    assert tw.out == ""


# pytester: the adapter installs the line only on a terminal, without -q, not on workers.
# The conftest can pretend the report stream is a terminal and drop the 2 s delay, so the
# positive case proves the wiring and the negative cases are not vacuous.
_CONFTEST = """
import pytest
from annogate.plugin import _ENGINE_KEY

FAKE_TTY = {fake_tty}

class _Tty:
    def __init__(self, f):
        self._f = f
    def __getattr__(self, name):
        return getattr(self._f, name)
    def isatty(self):
        return True

@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session):
    tr = session.config.pluginmanager.get_plugin("terminalreporter")
    if FAKE_TTY and tr is not None:
        tr._tw._file = _Tty(tr._tw._file)

def pytest_collection_finish(session):
    progress = session.config.stash[_ENGINE_KEY].progress
    if progress is not None:
        progress.delay = 0.0
"""


def _run(pytester: pytest.Pytester, *args: str, fake_tty: bool) -> str:
    pytester.makeconftest(_CONFTEST.format(fake_tty=fake_tty))
    shutil.copy(EXAMPLES / "clean" / "batch.json", pytester.path / "batch.json")
    result = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "batch.json", *args)
    return result.stdout.str()


def test_pytest_shows_the_line_on_a_terminal(pytester: pytest.Pytester) -> None:
    out = _run(pytester, fake_tty=True)
    assert "annogate: reading batch.json 100%" in out


def test_pytest_silent_when_not_a_terminal(pytester: pytest.Pytester) -> None:
    assert "annogate: reading" not in _run(pytester, fake_tty=False)


def test_pytest_silent_under_quiet(pytester: pytest.Pytester) -> None:
    assert "annogate: reading" not in _run(pytester, "-q", fake_tty=True)


def test_pytest_silent_on_xdist_workers(pytester: pytest.Pytester) -> None:
    pytest.importorskip("xdist")
    # workers report through the controller, which never loads a batch
    pytester.makeconftest(_CONFTEST.format(fake_tty=True))
    shutil.copy(EXAMPLES / "clean" / "batch.json", pytester.path / "batch.json")
    result = pytester.runpytest_subprocess("--annogate", "-p", "no:cacheprovider", "-n", "1", "batch.json")
    assert result.ret == 0
    assert "annogate: reading" not in result.stdout.str()
