"""Deterministic tar archives: the same tree gives the same bytes on any machine.

Entries are sorted, owned by 0:0 with no names, dated at the epoch, with modes reduced to
0755/0644; hard links and host metadata never leak in.  (OCI layers and package layers.)
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Iterator
from pathlib import Path

_EPOCH = 0


def _info(name: str, kind: bytes, mode: int, size: int = 0, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.mode = mode
    info.size = size
    info.linkname = linkname
    info.mtime = _EPOCH
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def walk_sorted(root: Path) -> Iterator[tuple[str, Path]]:
    """(archive name, path) for everything under `root`, parents first, names sorted bytewise."""
    entries = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root)
        for name in dirnames + filenames:
            entries.append(((rel / name).as_posix(), Path(dirpath) / name))
    entries.sort(key=lambda e: e[0].encode())
    yield from entries


def write_tree(root: Path, dest: Path, *, prefix_dirs: tuple[str, ...] = ()) -> str:
    """Write `root`'s contents as a tar at `dest`; return its sha256 (taken while writing: a
    layer is hundreds of MB). `prefix_dirs` are directory entries to add first."""
    with open(dest, "wb") as raw:
        sink = _HashingFile(raw)
        with tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT) as tar:  # type: ignore[call-overload]
            for name in prefix_dirs:
                tar.addfile(_info(name.rstrip("/"), tarfile.DIRTYPE, 0o755))
            for name, path in walk_sorted(root):
                st = path.lstat()
                if stat.S_ISLNK(st.st_mode):
                    tar.addfile(_info(name, tarfile.SYMTYPE, 0o777, linkname=os.readlink(path)))
                elif stat.S_ISDIR(st.st_mode):
                    tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
                elif stat.S_ISREG(st.st_mode):
                    mode = 0o755 if st.st_mode & 0o111 else 0o644
                    with open(path, "rb") as handle:
                        tar.addfile(_info(name, tarfile.REGTYPE, mode, st.st_size), handle)
    return sink.hexdigest()


def write_entries(dest: Path, files: dict[str, tuple[bytes, int]], symlinks: dict[str, str] | None = None) -> str:
    """A tar of in-memory files {name: (bytes, mode)} and symlinks {name: target}, parents implied."""
    names: dict[str, tuple] = {}
    for name, (data, mode) in files.items():
        names[name] = ("f", data, mode)
    for name, target in (symlinks or {}).items():
        names[name] = ("l", target)
    for name in list(names):
        parts = name.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            names.setdefault("/".join(parts[:i]), ("d",))
    with tarfile.open(dest, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name in sorted(names, key=str.encode):
            entry = names[name]
            if entry[0] == "d":
                tar.addfile(_info(name, tarfile.DIRTYPE, 0o755))
            elif entry[0] == "l":
                tar.addfile(_info(name, tarfile.SYMTYPE, 0o777, linkname=entry[1]))
            else:
                tar.addfile(_info(name, tarfile.REGTYPE, entry[2], len(entry[1])), io.BytesIO(entry[1]))
    return _sha256(dest)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _HashingFile(io.RawIOBase):
    """A write-only file that hashes what goes through it (tarfile needs `tell`)."""

    def __init__(self, raw: io.BufferedWriter):
        self._raw = raw
        self._digest = hashlib.sha256()
        self._position = 0

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._digest.update(data)
        self._position += len(data)
        return self._raw.write(data)

    def tell(self) -> int:
        return self._position

    def hexdigest(self) -> str:
        return self._digest.hexdigest()
