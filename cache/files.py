"""Digests of workspace files, remembered by (size, mtime, inode) so unchanged files are not re-read."""

from __future__ import annotations

import fcntl
import json
import os
import threading
import time
from pathlib import Path

from graphbuild.cache.atomic import write_bytes
from graphbuild.cache.blobs import sha256_file

# A file modified this close to when we stat it may change again within the same mtime tick
# without its stat changing ("racy git"); such digests are used but not remembered.
_RACY_SECONDS = 2.0


class FileDigests:
    def __init__(self, path: Path):
        self.path = path
        self._entries: dict[str, list] | None = None
        self._dirty = False
        self._lock = threading.Lock()

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            try:
                self._entries = json.loads(self.path.read_text())
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def digest(self, path: Path) -> str:
        st = os.stat(path)
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        name = str(path)
        with self._lock:
            entry = self._load().get(name)
        if entry and entry[:3] == stamp:
            return entry[3]
        value = sha256_file(path)
        if time.time() - st.st_mtime > _RACY_SECONDS:
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
            try:
                merged = json.loads(self.path.read_text())
            except (OSError, ValueError):
                merged = {}
            merged.update(self._entries or {})
            write_bytes(self.path, json.dumps(merged).encode())
        self._dirty = False
