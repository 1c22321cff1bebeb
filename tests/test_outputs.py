"""Output targets: refused at configure time (exit 4, before any gate runs) when they
would damage an input or a special file; written with the user's umask."""

from __future__ import annotations

import os
import shutil
import socket
import stat
from pathlib import Path

import pytest

from annogate.report.outputs import OutputError, check_output

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture
def repo(pytester: pytest.Pytester) -> Path:
    root = pytester.path
    shutil.copy(EXAMPLES / "annogate.toml", root / "annogate.toml")
    for sub in ("golden", "clean", "defective"):
        shutil.copytree(EXAMPLES / sub, root / sub)
    return root


def refused(pytester: pytest.Pytester, *args: str, says: str) -> None:
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", *args)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.stdout.str()
    run.stderr.fnmatch_lines([f"*{says}*"])
    run.stdout.no_fnmatch_line("*passed*")  # no gate ran
    run.stdout.no_fnmatch_line("*failed*")


def test_missing_folder(pytester: pytest.Pytester, repo: Path) -> None:
    refused(pytester, "--annogate-report", "nowhere/r.json", says="does not exist")
    refused(pytester, "--junitxml", "nowhere/j.xml", says="does not exist")


def test_directory(pytester: pytest.Pytester, repo: Path) -> None:
    refused(pytester, "--annogate-report", "clean", says="is a directory")


def test_read_only_folder(pytester: pytest.Pytester, repo: Path) -> None:
    ro = repo / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: a read-only mode does not stop writes")
        refused(pytester, "--annogate-rework", "ro/r.csv", says="not writable")
    finally:
        ro.chmod(0o755)


def test_bad_option_values(pytester: pytest.Pytester, repo: Path) -> None:
    refused(pytester, "--annogate-rework", "out.txt", says="unknown suffix '.txt'")
    refused(pytester, "--annogate-max-findings", "-1", says="must be 0 or more")


def test_fifo_and_socket_are_never_replaced(pytester: pytest.Pytester, repo: Path) -> None:
    fifo = repo / "fifo"
    os.mkfifo(fifo)
    refused(pytester, "--annogate-report", "fifo", says="is a FIFO")
    refused(pytester, "--junitxml", "fifo", says="is a FIFO")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    sock = socket.socket(socket.AF_UNIX)
    try:
        sock.bind("sock")  # relative: AF_UNIX paths are short
        refused(pytester, "--annogate-report", "sock", says="is a socket")
        assert stat.S_ISSOCK(os.stat(repo / "sock").st_mode)
    finally:
        sock.close()


def test_device_is_refused() -> None:
    """Checked without a session: the old code replaced /dev/null when run as root."""
    with pytest.raises(OutputError, match="is a device"):
        check_output("/dev/null", option="--annogate-report")
    with pytest.raises(OutputError, match="is a device"):
        from annogate.report.audit import atomic_write_text

        atomic_write_text("/dev/null", "x")
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.parametrize(
    ("args", "target", "what"),
    [
        (["clean/batch.json"], "clean/batch.json", "a file given on the command line"),
        (["."], "defective/batch.json", "a label batch below"),
        ([], "defective/batch.json", "a label batch below"),
        (["clean"], "golden/golden.json", "a golden file"),
        (["clean"], "annogate.toml", "a rules file"),
    ],
)
def test_an_input_is_never_an_output(
    pytester: pytest.Pytester, repo: Path, args: list[str], target: str, what: str
) -> None:
    before = (repo / target).read_bytes()
    for opt in ("--annogate-report", "--junitxml"):
        refused(pytester, *args, opt, target, says=what)
    assert (repo / target).read_bytes() == before


def test_explicit_rules_file_and_hard_link(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "r.toml").write_text((repo / "annogate.toml").read_text())
    refused(pytester, "clean", "--annogate-rules", "r.toml", "--annogate-report", "r.toml", says="--annogate-rules")
    os.link(repo / "clean" / "batch.json", repo / "alias.json.bak")
    refused(pytester, "clean/batch.json", "--annogate-report", "alias.json.bak", says="a file given")
    link = repo / "link.json"
    link.symlink_to(repo / "clean" / "batch.json")
    refused(pytester, "clean/batch.json", "--annogate-rework", "link.json", says="a file given")


def test_two_outputs_on_one_file(pytester: pytest.Pytester, repo: Path) -> None:
    refused(pytester, "--annogate-report", "o.json", "--annogate-rework", "o.json", says="also the")


def test_outputs_get_the_users_umask(pytester: pytest.Pytester, repo: Path) -> None:
    old = os.umask(0o022)
    try:
        run = pytester.runpytest(
            "--annogate", "-p", "no:cacheprovider", "clean", "--annogate-report", "r.json", "--annogate-rework", "w.csv"
        )
    finally:
        os.umask(old)
    assert run.ret == 0
    for name in ("r.json", "w.csv"):
        assert stat.S_IMODE(os.stat(repo / name).st_mode) == 0o644, name


def test_symlinked_output_is_written_through(pytester: pytest.Pytester, repo: Path) -> None:
    (repo / "out").mkdir()
    real = repo / "out" / "report.json"
    real.write_text("{}")
    (repo / "r.json").symlink_to(real)
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "clean", "--annogate-report", "r.json")
    assert run.ret == 0
    assert (repo / "r.json").is_symlink()
    assert '"report_format"' in real.read_text()


def test_dangling_symlink_into_a_batch_folder_is_refused(pytester: pytest.Pytester, repo: Path) -> None:
    """The old code followed the link and created ``clean/new.json`` among the labels."""
    (repo / "out").mkdir()
    (repo / "out" / "r.json").symlink_to(repo / "clean" / "new.json")
    refused(pytester, "clean", "--annogate-report", "out/r.json", says="never creates a file through a link")
    assert not (repo / "clean" / "new.json").exists()


def test_dangling_symlink_anywhere_is_refused(tmp_path: Path) -> None:
    (tmp_path / "r.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(OutputError, match=r"symlink to .*elsewhere\.json.* does not exist"):
        check_output(tmp_path / "r.json", option="--annogate-report")


def test_folder_link_into_a_gated_folder_is_refused(pytester: pytest.Pytester, repo: Path) -> None:
    """A symlinked folder on the way (``out -> clean``) carries a new output among the labels: refused."""
    (repo / "out").symlink_to(repo / "clean", target_is_directory=True)
    before = sorted(p.name for p in (repo / "clean").iterdir())
    refused(pytester, "clean", "--annogate-report", "out/r.json", says="which is being gated")
    refused(pytester, "clean/batch.json", "--annogate-rework", "out/w.csv", says="which is being gated")
    assert sorted(p.name for p in (repo / "clean").iterdir()) == before


def test_link_to_an_existing_non_batch_file_in_a_gated_folder_is_refused(tmp_path: Path) -> None:
    gated = tmp_path / "labels"
    gated.mkdir()
    (gated / "notes.txt").write_text("mine")
    (tmp_path / "r.json").symlink_to(gated / "notes.txt")
    with pytest.raises(OutputError, match=r"inside .*labels.*being gated"):
        check_output(tmp_path / "r.json", option="--annogate-report", gated=[gated])
    # a gated folder reached through a link is the same folder
    (tmp_path / "alias").symlink_to(gated, target_is_directory=True)
    with pytest.raises(OutputError, match="being gated"):
        check_output(tmp_path / "r.json", option="--annogate-report", gated=[tmp_path / "alias"])


def test_an_output_named_inside_the_gated_folder_is_allowed(pytester: pytest.Pytester, repo: Path) -> None:
    """``pytest --annogate . --annogate-report r.json`` gates the current folder and writes beside it."""
    assert check_output(repo / "r.json", option="--annogate-report", gated=[repo]) == repo / "r.json"
    run = pytester.runpytest("--annogate", "-p", "no:cacheprovider", "clean", "--annogate-report", "clean.json")
    assert run.ret == 0, run.stdout.str()
