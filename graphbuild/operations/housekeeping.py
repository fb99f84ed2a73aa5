"""The cache's housekeeping: `clean`, `cache gc --max-size SIZE` and `cache keygen`."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphbuild.errors import EXIT_OK, UsageError
from graphbuild.execution.materialize import OUT_DIR

if TYPE_CHECKING:
    from graphbuild.operations.session import Session

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


@dataclass(frozen=True)
class CleanReport:
    cache_dir: Path
    out_dir: str = OUT_DIR
    exit_code: int = EXIT_OK


@dataclass(frozen=True)
class GcReport:
    limit: int
    result: dict[str, Any]  # evicted_results, deleted_blobs, freed_bytes, kept_bytes, kept_results
    exit_code: int = EXIT_OK


@dataclass(frozen=True)
class KeygenReport:
    key_id: str
    public_key: str
    private_key_file: Path | None  # None: the private key is in `private_key_pem`
    private_key_pem: str | None
    exit_code: int = EXIT_OK


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise UsageError(f"invalid size {text!r}", hint="write a number with an optional unit: 800M, 10G, 1.5T")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def clean(session: Session) -> CleanReport:
    from graphbuild.cache.runs import CacheBusy, cache_lock_path, hold_cache
    from graphbuild.cache.state import sweep as sweep_state

    cache = session.cache
    root = cache.root
    session.close()
    try:
        held = hold_cache(cache.tmp, exclusive=True)
    except CacheBusy:
        raise UsageError(f"another graphbuild process is building with the cache {root}: cleaning it now "
                         "would delete what that build is writing",
                         hint="wait for it to finish (or stop it), then run graphbuild clean again") from None
    try:
        # Only what graphbuild keeps there: the directory may be shared with other files.
        for sub in (cache.blobs, cache.actions, cache.history, cache.state, cache.tmp):
            shutil.rmtree(sub, ignore_errors=True)
        sweep_state(cache.state, lambda sha: False)  # what older versions kept beside the blob store
        cache_lock_path(cache.tmp).unlink(missing_ok=True)  # last, still held: see hold_cache
    finally:
        os.close(held)
    out = session.workspace.root / OUT_DIR
    if out.is_symlink():  # the link goes, never what it points at
        out.unlink()
    shutil.rmtree(out, ignore_errors=True)
    session.__dict__.pop("actions", None)
    session.__dict__.pop("files", None)
    return CleanReport(root)


def gc(session: Session, max_size: str) -> GcReport:
    from graphbuild.cache.gc import collect

    limit = parse_size(max_size)
    return GcReport(limit, collect(session.actions, session.blobs, session.cache.tmp, limit, session.cache.state))


def keygen(output: str | None) -> KeygenReport:
    from graphbuild.cache.signing import SigningKey

    key = SigningKey.generate()
    public = key.public.line()
    if not output:
        return KeygenReport(key.public.key_id, public, None, key.pem().decode())
    path = Path(output).expanduser()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; the key in it is kept",
                         hint="choose another path, or delete the old key first") from None
    except OSError as err:
        raise UsageError(f"cannot create {path}: {err.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(key.pem())
    os.chmod(path, 0o600)  # whatever the umask was
    return KeygenReport(key.public.key_id, public, path, None)
