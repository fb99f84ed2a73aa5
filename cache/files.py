"""Digests of workspace files, remembered by their stat stamp so unchanged files are not re-read.

The stamp is (size, mtime, ctime, inode). The mtime alone proves nothing: extracting a tar
with fixed mtimes, `rsync -t` or a CI cache restore put an old mtime back on new content. The
ctime is set by the kernel on every change to a file and cannot be set back from user space,
so an edit always changes the stamp (git and Bazel guard the same shortcut with it).

Racy timestamps: file times come from a coarse clock, so a file changed twice within one tick
keeps its ctime. Git's rule re-hashes an entry whose times are not older than the index it
was written to; here the reference is, per entry, the moment the file was stat'ed (a run may
save its digests minutes after hashing, so the save time would prove too little): a digest is
remembered only when the file's ctime and mtime are older than that moment by more than
`_RACY_NS`, and a file changed later then always shows a newer ctime. A racy file is hashed
again next time.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

from graphbuild.cache.atomic import write_bytes
from graphbuild.cache.blobs import sha256_file

#: How much older than its stat a file's ctime must be for its digest to be remembered: a
#: margin over the clock tick of file times (and over FAT's 2 s mtimes, and a little clock skew
#: of network filesystems).
_RACY_NS = 2_000_000_000
#: Bump when the layout of an entry changes: entries of another format are dropped on load.
_FORMAT = 2


class FileDigests:
    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, list] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            self._entries = _read(self.path)
        return self._entries

    def digest(self, path: Path) -> str:
        stat_time = time.time_ns()
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
        name = str(path)
        with self._lock:
            entry = self._load().get(name)
        if entry and len(entry) == 5 and entry[:4] == stamp:
            return entry[4]
        value = sha256_file(path)
        if stat_time - max(st.st_ctime_ns, st.st_mtime_ns) > _RACY_NS:
            with self._lock:
                self._load()[name] = [*stamp, value]
                self._dirty = True
        return value

    def save(self) -> None:
        if not self._dirty:
            return
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            merged = _read(self.path)
            merged.update(self._entries or {})
            write_bytes(self.path, json.dumps({"format": _FORMAT, "files": merged}).encode())
        self._dirty = False


def _read(path: Path) -> dict[str, list]:
    """The remembered entries; none from a missing, unreadable or older-format file."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or data.get("format") != _FORMAT or not isinstance(data.get("files"), dict):
        return {}
    return data["files"]
