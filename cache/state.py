"""Rule-owned state in the cache: `state/<name>/`, kept across runs, known to `clean` and `gc`.

A rule keeps there what is neither an input nor an output of a node: where pushed blobs
already are, OCI layouts that link the blob store. An *entry* (a subdirectory) that refers to
blobs of the store records their sha256s in `BLOBS_FILE` before anything else is written to
it; `cache gc` deletes every entry one of whose blobs is gone, so nothing in the state points
at a deleted blob. `graphbuild clean` deletes the whole state.
"""

from __future__ import annotations

import contextlib
import re
import shutil
from collections.abc import Callable, Iterable
from pathlib import Path

from graphbuild.cache.atomic import write_bytes

BLOBS_FILE = ".graphbuild-blobs"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHA256 = re.compile(r"[0-9a-f]{64}")


class StateError(ValueError):
    """A state directory or entry name that is not one plain path component."""


def check_name(name: str, what: str = "state directory") -> str:
    if not isinstance(name, str) or not _NAME.fullmatch(name) or name in (".", ".."):
        raise StateError(f"{what} name {name!r} must be one plain path component (letters, digits, . _ -)")
    return name


def state_dir(root: Path, name: str) -> Path:
    directory = root / check_name(name)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def state_entry(root: Path, name: str, entry: str, blobs: Iterable[str]) -> Path:
    """`root/name/entry/`, its blobs recorded first (a crash after this leaves an entry that gc
    can still judge)."""
    shas = sorted({sha.removeprefix("sha256:") for sha in blobs})
    if bad := [sha for sha in shas if not _SHA256.fullmatch(sha)]:
        raise StateError(f"{bad[0]!r} is not a sha256 digest")
    directory = state_dir(root, name) / check_name(entry, "state entry")
    directory.mkdir(exist_ok=True)
    write_bytes(directory / BLOBS_FILE, "".join(f"{sha}\n" for sha in shas).encode())
    return directory


def entry_blobs(entry: Path) -> list[str] | None:
    """The blobs an entry recorded; None for an entry that recorded none (it refers to no blob)."""
    try:
        text = (entry / BLOBS_FILE).read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError):
        return ["unreadable"]  # not a sha256: the entry counts as dangling
    return text.split()


#: What rules kept beside the blob store before `state/` existed (OCI layouts whose blobs gc
#: could delete, the push locations): unknown to everything now, deleted by gc and clean.
LEGACY = ("images", "push-locations.json")


def sweep(root: Path, has_blob: Callable[[str], bool]) -> list[Path]:
    """Delete each entry of each state directory that refers to a blob the store no longer has
    (and what older versions kept beside the store, in the cache root that holds `root`)."""
    removed = []
    layouts, locations = (root.parent / name for name in LEGACY)
    if layouts.is_dir() and not layouts.is_symlink():
        # only what graphbuild wrote there (the cache directory may hold other files)
        for old in layouts.iterdir():
            if _SHA256.fullmatch(old.name) and (old / "oci-layout").is_file():
                shutil.rmtree(old, ignore_errors=True)
        with contextlib.suppress(OSError):
            layouts.rmdir()
            removed.append(layouts)
    if locations.is_file():
        locations.unlink(missing_ok=True)
        removed.append(locations)
    for directory in sorted(root.iterdir()) if root.is_dir() else ():
        for entry in sorted(directory.iterdir()) if directory.is_dir() else ():
            blobs = entry_blobs(entry) if entry.is_dir() else None
            if blobs is not None and not all(_SHA256.fullmatch(sha) and has_blob(sha) for sha in blobs):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed
