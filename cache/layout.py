"""Where the cache lives and how it is laid out."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from graphbuild.errors import CacheError

ENV_VAR = "GRAPHBUILD_CACHE_DIR"


def default_cache_dir() -> Path:
    """`$GRAPHBUILD_CACHE_DIR`, else `$XDG_CACHE_HOME/graphbuild`, else `~/.cache/graphbuild`."""
    if os.environ.get(ENV_VAR):
        return Path(os.environ[ENV_VAR])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "graphbuild"


class CacheDir:
    """The cache root: `blobs/` (CAS), `actions/` (diskcache), `history/`, `state/` (rule-owned,
    `graphbuild.cache.state`), `tmp/` (same filesystem)."""

    def __init__(self, root: Path):
        self.root = Path(root).absolute()

    def ensure(self) -> CacheDir:
        try:
            for sub in ("blobs", "actions", "history", "tmp"):
                (self.root / sub).mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=self.root / "tmp", prefix="probe-"):
                pass
        except OSError as err:
            raise CacheError(
                f"cache directory {self.root} is not usable: {err.strerror or err}",
                hint=f"pass --cache-dir DIR or set {ENV_VAR} to a writable directory",
            ) from None
        return self

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def actions(self) -> Path:
        return self.root / "actions"

    @property
    def history(self) -> Path:
        return self.root / "history"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"
