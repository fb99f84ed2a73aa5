"""A content-addressed blob store: files named by their sha256, verified when read."""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

_CHUNK = 1 << 20


class CorruptBlob(Exception):
    """A stored blob's bytes no longer match its name; it has been removed."""

    def __init__(self, digest: str):
        super().__init__(f"blob sha256:{digest} is corrupt")
        self.digest = digest


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


class BlobStore:
    """Blobs live at `<root>/sha256/<hex>`: the `blobs/` directory of an OCI image layout, so an
    image in the cache is just an `index.json` and an `oci-layout` file beside this store."""

    def __init__(self, root: Path, tmp: Path):
        self.root = root
        self._dir = str(root / "sha256")
        self.tmp = tmp
        # Blobs verified (or written) by this process, with the (size, mtime, ctime, inode)
        # seen then: a blob read by many dependents is hashed once.
        self._verified: dict[str, tuple[int, int, int, int]] = {}
        self._lock = threading.Lock()

    def path(self, digest: str) -> Path:
        return self.root / "sha256" / digest

    def size(self, digest: str) -> int | None:
        """The stored blob's size, or None when there is none (a plain stat: hot in no-op builds)."""
        try:
            return os.stat(os.path.join(self._dir, digest)).st_size
        except OSError:
            return None

    def has(self, digest: str, size: int | None = None) -> bool:
        try:
            st = self.path(digest).stat()
        except OSError:
            return False
        return size is None or st.st_size == size

    def put_file(self, src: Path, *, move: bool = False) -> tuple[str, int]:
        """Store a file's bytes; `move=True` may consume `src` (same filesystem: no copy)."""
        fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
        os.close(fd)
        try:
            if move:
                os.replace(src, tmp)
            else:
                shutil.copyfile(src, tmp)
            digest = sha256_file(Path(tmp))
            size = os.path.getsize(tmp)
            self._install(Path(tmp), digest)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return digest, size

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        if not self._known_good(digest, len(data)):
            fd, tmp = tempfile.mkstemp(dir=self.tmp, prefix="blob-")
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                self._install(Path(tmp), digest)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        return digest, len(data)

    def _install(self, tmp: Path, digest: str) -> None:
        """Put `tmp`, whose sha256 is `digest`, in place. A stored blob of that name is replaced
        unless this process knows it is good: the stored one may be corrupt with the right size,
        and a rename costs nothing next to the hashing already done."""
        if self._known_good(digest, tmp.stat().st_size):
            return
        dest = self.path(digest)
        dest.parent.mkdir(exist_ok=True)
        os.chmod(tmp, 0o444)
        os.replace(tmp, dest)  # atomic: readers see all of it or nothing
        with contextlib.suppress(FileNotFoundError):
            stamp = _stamp(dest.stat())
            with self._lock:
                self._verified[digest] = stamp

    def _known_good(self, digest: str, size: int) -> bool:
        try:
            stamp = _stamp(self.path(digest).stat())
        except OSError:
            return False
        with self._lock:
            return stamp[0] == size and self._verified.get(digest) == stamp

    def verified_path(self, digest: str) -> Path:
        """The blob's path after checking its bytes; a corrupt blob is deleted and raised."""
        path = self.path(digest)
        try:
            st = path.stat()
        except FileNotFoundError:
            raise CorruptBlob(digest) from None
        with self._lock:
            seen = self._verified.get(digest)
        if seen == _stamp(st):
            return path
        try:
            actual = sha256_file(path)
        except FileNotFoundError:  # another reader found it corrupt and deleted it meanwhile
            raise CorruptBlob(digest) from None
        if actual != digest:
            self.delete(digest)
            raise CorruptBlob(digest)
        with self._lock:
            self._verified[digest] = _stamp(st)
        return path

    def read_bytes(self, digest: str) -> bytes:
        return self.verified_path(digest).read_bytes()

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()
        with self._lock:
            self._verified.pop(digest, None)

    def iter_blobs(self) -> Iterator[tuple[str, int]]:
        directory = self.root / "sha256"
        for blob in sorted(directory.iterdir()) if directory.is_dir() else ():
            with contextlib.suppress(FileNotFoundError):
                yield blob.name, blob.stat().st_size
