"""File digests are remembered by (size, mtime, ctime, inode): an edit that keeps the size and
puts the old mtime back (tar with fixed mtimes, `rsync -t`, a CI cache restore) is still seen,
and a file changed within the racy window of its stat is never remembered."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from graphbuild.cache import files as file_digests
from graphbuild.cache.files import FileDigests


def _remembered(ws) -> dict[str, list]:
    found = {}
    for path in (ws.cache / "history").glob("files-*.json"):
        found.update(json.loads(path.read_text())["files"])
    return found


def _same_size_edit_keeping_mtime(path: Path, old: bytes, new: bytes) -> None:
    assert len(old) == len(new)
    before = path.stat()
    assert path.read_bytes() == old
    path.write_bytes(new)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (before.st_size, before.st_mtime_ns, before.st_ino)


@pytest.fixture
def no_racy_window(monkeypatch):
    """Files written by the test are seconds old at most: without this, every one of them is in
    the racy window, never remembered, and the stale-digest test could not fail."""
    monkeypatch.setattr(file_digests, "_RACY_NS", 0)


def test_a_same_size_edit_with_the_mtime_restored_reruns_the_tests_and_they_fail(ws, no_racy_window):
    ws.write("lib/BUILD.envs", """
        filegroup(name = "src", srcs = ["version.txt"])
        genrule(name = "upper", srcs = [":src"], outs = ["upper.txt"], cmd = "tr a-z A-Z < $SRCS > $OUT")
        command_test(name = "check", srcs = [":src"], cmd = "grep -qx 'value=1' $SRCS")
        command_test(name = "check_upper", srcs = [":upper"], cmd = "grep -qx 'VALUE=1' $SRCS")
    """)
    source = ws.write("lib/version.txt", "value=1\n")
    first = ws.gb("test", "//lib/...", "--json")
    assert first.exit_code == 0, first.stderr
    assert str(source) in _remembered(ws)  # the digest was remembered: a stale one could be served

    _same_size_edit_keeping_mtime(source, b"value=1\n", b"value=2\n")
    second = ws.gb("test", "//lib/...", "--json")
    statuses = second.statuses()
    assert second.exit_code == 1, second.stderr
    assert statuses["//lib:check#test"] == "failed"
    assert statuses["//lib:upper#gen"] == "ran"
    assert statuses["//lib:check_upper#test"] == "failed"
    assert (ws.root / "graphbuild-out/lib/upper.txt").read_text() == "VALUE=2\n"

    # and putting the old bytes back (mtime again restored) is the old result, from the cache
    _same_size_edit_keeping_mtime(source, b"value=2\n", b"value=1\n")
    third = ws.gb("test", "//lib/...", "--json")
    assert third.exit_code == 0, third.stderr
    assert set(third.statuses().values()) == {"cached"}


def test_an_unchanged_file_is_not_read_again(tmp_path, no_racy_window, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("hello\n")
    digests = FileDigests(tmp_path / "files.json")
    first = digests.digest(path)
    digests.save()
    reads = []
    monkeypatch.setattr(file_digests, "sha256_file", lambda p: reads.append(p) or "x")
    again = FileDigests(tmp_path / "files.json")
    assert again.digest(path) == first
    assert reads == []
    os.chmod(path, 0o600)  # metadata only: the ctime moves, so the file is read again (safe side)
    assert again.digest(path) == "x" and reads == [path]


class _Clock:
    def __init__(self) -> None:
        self.now = time.time_ns()

    def time_ns(self) -> int:
        return self.now


def test_a_file_changed_within_the_racy_window_of_its_stat_is_not_remembered(tmp_path, monkeypatch):
    clock = _Clock()
    monkeypatch.setattr(file_digests, "time", clock)
    path = tmp_path / "a.txt"
    path.write_text("one\n")
    clock.now = path.stat().st_ctime_ns + file_digests._RACY_NS  # not older than the window
    digests = FileDigests(tmp_path / "files.json")
    digests.digest(path)
    digests.save()
    assert not (tmp_path / "files.json").exists()  # nothing remembered, nothing written

    clock.now += 1  # one nanosecond later the ctime is old enough: remembered
    digests.digest(path)
    digests.save()
    assert list(json.loads((tmp_path / "files.json").read_text())["files"]) == [str(path)]


def test_a_future_mtime_keeps_a_file_racy(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("one\n")
    future = time.time_ns() + 3600 * 10**9
    os.utime(path, ns=(future, future))
    digests = FileDigests(tmp_path / "files.json")
    digests.digest(path)
    digests.save()
    assert not (tmp_path / "files.json").exists()


def test_digests_of_an_older_format_or_a_garbage_file_are_dropped(tmp_path, no_racy_window):
    path = tmp_path / "a.txt"
    path.write_text("one\n")
    st = path.stat()
    store = tmp_path / "files.json"
    # the format before ctime was keyed: (size, mtime, inode, digest), here with a wrong digest
    store.write_text(json.dumps({str(path): [st.st_size, st.st_mtime_ns, st.st_ino, "0" * 64]}))
    assert FileDigests(store).digest(path) != "0" * 64
    store.write_bytes(b"\0garbage")
    assert len(FileDigests(store).digest(path)) == 64
