"""The atomic writer (permissions as a plain write, nothing partial) and progress lines for logs."""

import io
import os
import stat

import pytest

from chatir_env.atomic import atomic_write, atomic_write_json, atomic_write_text
from chatir_env.progress import LineProgress, progress


@pytest.fixture
def umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_atomic_files_get_the_mode_of_a_plain_write(tmp_path, umask):
    (tmp_path / "plain.txt").write_text("x")
    atomic_write_text(tmp_path / "a.txt", "hello")
    assert mode(tmp_path / "plain.txt") == 0o644 and mode(tmp_path / "a.txt") == 0o644

    def recreate_private(tmp):  # as a writer that unlinks and recreates its file with 0600 would
        os.unlink(tmp)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT, 0o600)
        os.write(fd, b"data")
        os.close(fd)

    atomic_write(tmp_path / "b.bin", recreate_private)
    assert (tmp_path / "b.bin").read_bytes() == b"data" and mode(tmp_path / "b.bin") == 0o644
    os.umask(0o077)
    atomic_write_json(tmp_path / "c.json", {"a": 1})
    assert mode(tmp_path / "c.json") == 0o600  # a stricter umask is respected too
    assert (tmp_path / "c.json").read_text() == '{\n  "a": 1\n}'


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path):
    target = tmp_path / "result.json"
    target.write_text("old")

    def half_then_fail(tmp):
        with open(tmp, "w") as f:
            f.write("partial")
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_progress_writes_whole_lines_when_not_a_terminal():
    out = io.StringIO()
    bar = progress(total=1000, file=out, desc="train", interval=3600)  # no line is due during the loop
    for step in range(1000):
        bar.update(1)
        if step % 25 == 0:
            bar.set_postfix(loss=f"{1 / (step + 1):.3f}")  # no line of its own
    bar.close()
    text = out.getvalue()
    assert isinstance(bar, LineProgress) and "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 2, text  # the opening line and the final one
    assert lines[0].startswith("train:   0%") and " 0/1000 " in lines[0]
    assert lines[1].startswith("train: 100%") and " 1000/1000 " in lines[1] and "loss=0.001" in lines[1]


def test_progress_lines_come_at_the_interval():
    out = io.StringIO()
    for _ in progress(range(4), file=out, desc="x", interval=0):  # every update is due
        pass
    percents = [line.split("|")[0] for line in out.getvalue().splitlines()]
    assert percents == ["x:   0%", "x:  25%", "x:  50%", "x:  75%", "x: 100%"]


def test_progress_is_a_plain_bar_on_a_terminal():
    out = io.StringIO()
    bar = progress(total=3, file=out, terminal=True, desc="t")
    bar.update(3)
    bar.close()
    assert not isinstance(bar, LineProgress) and "\r" in out.getvalue()
    out.isatty = lambda: True  # detected from the stream when not forced
    assert not isinstance(progress(total=1, file=out, disable=True), LineProgress)


def test_the_temp_file_is_hidden_beside_the_target_with_its_suffix(tmp_path):
    seen = []
    atomic_write(tmp_path / "last.zip", lambda tmp: seen.append(tmp) or open(tmp, "wb").write(b"PK"))
    tmp = seen[0]
    # SB3's save appends ".zip" to a path without a suffix and matplotlib picks the format from it
    assert os.path.dirname(tmp) == str(tmp_path) and os.path.basename(tmp).startswith(".last.") and tmp.endswith(".tmp.zip")
    assert (tmp_path / "last.zip").read_bytes() == b"PK" and not os.path.exists(tmp)
