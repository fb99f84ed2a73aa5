"""Pushing an image to a registry: blobs the registry lacks (HEAD first), the manifest last.

The tag is written last, by the manifest PUT, so a failure anywhere leaves no tag pointing at
an incomplete image.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.cache import oci_media as media
from graphbuild.rules.oci import reference
from graphbuild.rules.oci.image import blob_digest


class _BlobLocations:
    """Which repository of a registry already holds a blob (as Docker remembers it): a blob
    pushed for one environment is mounted, not uploaded again, for the next one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # this process's pushes: (host, digest) -> repository, and one lock per blob so two
        # pushes running at once upload a shared blob once; the second mounts it
        self._recent: dict[tuple[str, str], str] = {}
        self._blob_locks: dict[tuple[str, str], threading.Lock] = {}

    def blob_lock(self, host: str, digest: str) -> threading.Lock:
        with self._lock:
            return self._blob_locks.setdefault((host, digest), threading.Lock())

    def recent(self, host: str, digest: str) -> str | None:
        with self._lock:
            return self._recent.get((host, digest))

    def remember(self, host: str, digest: str, repository: str) -> None:
        with self._lock:
            self._recent[(host, digest)] = repository

    def _path(self, blob_root: Path | None) -> Path | None:
        return blob_root.parent / "push-locations.json" if blob_root else None

    def get(self, blob_root: Path | None, host: str) -> dict[str, str]:
        path = self._path(blob_root)
        with self._lock:
            try:
                return json.loads(path.read_text()).get(host, {}) if path else {}
            except (OSError, ValueError):
                return {}

    def add(self, blob_root: Path | None, host: str, repository: str, digests: list[str]) -> None:
        path = self._path(blob_root)
        if path is None:
            return
        with self._lock:
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            data.setdefault(host, {}).update(dict.fromkeys(digests, repository))
            tmp = path.with_name(f".push-locations.{os.getpid()}.{threading.get_ident()}")
            tmp.write_text(json.dumps(data))
            os.replace(tmp, path)


_LOCATIONS = _BlobLocations()


@executor("oci.push", version=2, cacheable=False)
def push_image(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `destination`, `manifest`, `config`, `layers`."""
    from graphbuild.cache.registry import Registry, RegistryError

    try:
        where_to = reference.destination(ctx.inputs["destination"], ctx.workspace_root)
    except reference.InvalidReference as err:
        raise ActionFailed(f"cannot push: {err}", details=err.hint, bad_input=True,
                           location=getattr(ctx.node.inputs.get("destination"), "location", None)) from None
    ref = where_to.reference
    ctx.log(f"pushing to {ref.name}:{ref.tag or 'latest'}: {where_to.why}")
    registry = Registry(ref.host)
    manifest = Path(ctx.inputs["manifest"])
    blobs = [Path(p) for p in [*ctx.inputs["layers"], ctx.inputs["config"]]]
    uploaded = skipped = mounted = count = 0
    known = _LOCATIONS.get(ctx.blob_root, ref.host)
    done: list[str] = []
    try:
        registry.ping(ref.repository, push=True)
        for path in blobs:
            digest = blob_digest(path)
            if digest in done:
                continue
            done.append(digest)
            size = path.stat().st_size
            with _LOCATIONS.blob_lock(ref.host, digest):
                source = _LOCATIONS.recent(ref.host, digest) or known.get(digest)
                if registry.has_blob(ref.repository, digest):
                    skipped += size
                elif source and source != ref.repository and registry.mount_blob(ref.repository, digest, source):
                    mounted += size
                else:
                    registry.upload_blob(ref.repository, digest, path)
                    uploaded += size
                    count += 1
                _LOCATIONS.remember(ref.host, digest, ref.repository)
        data = manifest.read_bytes()
        pushed = registry.put_manifest(ref.repository, ref.tag or "latest", data, media.MANIFEST)
    except RegistryError as err:
        raise ActionFailed(f"push to {ref} failed: {err}", details="nothing was tagged") from None
    _LOCATIONS.add(ctx.blob_root, ref.host, ref.repository, done)
    digest = media.sha256_digest(data)
    if pushed and pushed != digest:
        raise ActionFailed(f"the registry stored the manifest as {pushed}, expected {digest}")
    where = f"{ref.host}/{ref.repository}:{ref.tag or 'latest'}"
    ctx.log(f"pushed {where}@{digest}: {count} blobs, {uploaded} bytes uploaded, {mounted} bytes mounted from "
            f"other repositories, {skipped} bytes already there")
    return {
        "reference": where,
        "digest": digest,
        "uploaded_bytes": uploaded,
        "skipped_bytes": skipped,
        "mounted_bytes": mounted,
        "uploaded_blobs": count,
        "summary": f"pushed {where}@{digest[:19]}: {_mb(uploaded)} uploaded, "
                   f"{_mb(skipped + mounted)} already in the registry",
    }


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
