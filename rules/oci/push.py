"""Pushing an image to a registry: blobs the registry lacks (HEAD first), the manifest, the
SBOM referring to it, and the tag last.

The tag is written last, so a failure anywhere leaves no tag pointing at an incomplete image.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

from filelock import FileLock

from graphbuild.api import ActionFailed, ExecContext, executor, media, write_atomic
from graphbuild.rules.oci import artifacts, reference
from graphbuild.rules.oci.image import blob_digest, created_time


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

    @staticmethod
    def _path(ctx: ExecContext) -> Path:
        return ctx.state_dir(_STATE) / "locations.json"

    def get(self, ctx: ExecContext, host: str) -> dict[str, str]:
        try:
            found = json.loads(self._path(ctx).read_text()).get(host, {})
        except (OSError, ValueError, AttributeError):
            return {}
        return found if isinstance(found, dict) else {}

    def add(self, ctx: ExecContext, host: str, repository: str, digests: list[str]) -> None:
        """Read, update and replace the file under a lock other processes take too (two
        pushes at once both land); readers need no lock (the file is replaced atomically)."""
        path = self._path(ctx)
        with self._lock, FileLock(path.with_name("locations.lock")):
            try:
                data = json.loads(path.read_text())
            except (OSError, ValueError):
                data = {}
            if not isinstance(data, dict) or not isinstance(data.get(host, {}), dict):
                data = {}
            data.setdefault(host, {}).update(dict.fromkeys(digests, repository))
            write_atomic(path, json.dumps(data).encode())


_LOCATIONS = _BlobLocations()
#: the rule-owned state directory (`ExecContext.state_dir`) of the blob locations
_STATE = "oci-push"


@executor("oci.push", version=4, cacheable=False)
def push_image(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `destination`, `manifest`, `config`, `layers` (the blobs the manifest lists), `sbom`,
    `title`, `architecture`.

    Order: the blobs the registry lacks; the image manifest (by digest); the SBOM as an artifact
    referring to it (the referrers API, or the `sha256-<hex>` tag where there is none); then the
    tag, last, on an index holding the image and the release's annotations. A tag that already
    points at this very image is left as it is: a commit changing nothing in the image pushes
    nothing and keeps the revision that first gave it."""
    from graphbuild.api import Registry, RegistryError

    try:
        where_to = reference.destination(ctx.inputs["destination"], ctx.workspace_root)
    except reference.InvalidReference as err:
        raise ActionFailed(f"cannot push: {err}", details=err.hint, bad_input=True,
                           location=getattr(ctx.node.inputs.get("destination"), "location", None)) from None
    ref = where_to.reference
    ctx.log(f"pushing to {ref.name}:{ref.tag or 'latest'}: {where_to.why}")
    registry = Registry(ref.host)
    manifest = Path(ctx.inputs["manifest"]).read_bytes()
    digest = media.sha256_digest(manifest)
    tag = ref.tag or "latest"
    where = f"{ref.host}/{ref.repository}:{tag}"
    sbom = Path(ctx.inputs["sbom"]) if ctx.inputs.get("sbom") else None
    blobs = [Path(p) for p in [*ctx.inputs["layers"], ctx.inputs["config"]]]
    counts = _Counts()
    try:
        registry.ping(ref.repository, push=True)
        _push_blobs(ctx, registry, ref, blobs, counts)
        stored = registry.put_manifest(ref.repository, digest, manifest, media.MANIFEST)
        counts.manifest_bytes += len(manifest)
        if stored and stored != digest:
            raise ActionFailed(f"the registry stored the manifest as {stored}, expected {digest}")
        referrers = _push_sbom(ctx, registry, ref, sbom, manifest, counts) if sbom else None
        tag_digest, annotations, moved = _tag(registry, ref, tag, manifest, ctx, counts)
    except RegistryError as err:
        raise ActionFailed(f"push to {ref} failed: {err}", details="the tag was not moved") from None
    ctx.log(f"pushed {where}@{digest}: {counts.count} blobs, {counts.uploaded} bytes uploaded, {counts.mounted} "
            f"bytes mounted from other repositories, {counts.skipped} bytes already there; tag "
            f"{'moved to' if moved else 'already on'} {tag_digest}")
    ctx.summarize(f"pushed {where}@{digest[:19]}: {_mb(counts.uploaded)} uploaded, "
                  f"{_mb(counts.skipped + counts.mounted)} already in the registry"
                  + ("" if moved else " (tag unchanged)"))
    return {
        "reference": where,
        "digest": digest,
        "tag_digest": tag_digest,
        "tag_moved": moved,
        "annotations": annotations,
        "sbom": referrers,
        "uploaded_bytes": counts.uploaded,
        "skipped_bytes": counts.skipped,
        "mounted_bytes": counts.mounted,
        "uploaded_blobs": counts.count,
        "manifest_bytes": counts.manifest_bytes,
        "sbom_bytes": counts.sbom_bytes,
    }


class _Counts:
    """Bytes of the image's blobs by what became of them; the SBOM's and the manifests' apart."""

    def __init__(self) -> None:
        self.uploaded = self.skipped = self.mounted = self.count = self.manifest_bytes = self.sbom_bytes = 0


def _push_blobs(ctx: ExecContext, registry: Any, ref: reference.Reference, blobs: list[Path], counts: _Counts) -> None:
    """The blobs the registry lacks in the repository: HEAD first, then a mount from another
    repository of the same registry that has it, else an upload."""
    assert ref.host is not None
    known = _LOCATIONS.get(ctx, ref.host)
    done: list[str] = []
    for path in blobs:
        digest = blob_digest(path)
        if digest in done:
            continue
        done.append(digest)
        size = path.stat().st_size
        with _LOCATIONS.blob_lock(ref.host, digest):
            source = _LOCATIONS.recent(ref.host, digest) or known.get(digest)
            if registry.has_blob(ref.repository, digest):
                counts.skipped += size
            elif source and source != ref.repository and registry.mount_blob(ref.repository, digest, source):
                counts.mounted += size
            else:
                registry.upload_blob(ref.repository, digest, path)
                counts.uploaded += size
                counts.count += 1
            _LOCATIONS.remember(ref.host, digest, ref.repository)
    _LOCATIONS.add(ctx, ref.host, ref.repository, done)


def _push_sbom(ctx: ExecContext, registry: Any, ref: reference.Reference, sbom: Path, subject: bytes,
               counts: _Counts) -> dict[str, Any]:
    """The SBOM as an artifact whose subject is the image; listed by the registry's referrers
    API, or else in the referrers index under the fallback tag (OCI distribution 1.1)."""
    empty = ctx.scratch / "empty.json"
    empty.write_bytes(media.EMPTY_BYTES)
    staged = ctx.scratch / media.sha256_digest(media.EMPTY_BYTES).removeprefix("sha256:")
    empty.rename(staged)
    blobs = _Counts()
    _push_blobs(ctx, registry, ref, [staged, sbom], blobs)
    counts.sbom_bytes += blobs.uploaded
    artifact = artifacts.sbom_manifest(sbom, subject)
    artifact_digest = media.sha256_digest(artifact)
    subject_digest = media.sha256_digest(subject)
    indexed = registry.put_manifest_with_subject(ref.repository, artifact_digest, artifact, media.MANIFEST)
    counts.manifest_bytes += len(artifact)
    if indexed or registry.referrers(ref.repository, subject_digest) is not None:
        return {"digest": artifact_digest, "referrers": "api"}
    tag = artifacts.fallback_tag(subject_digest)
    found = registry.find_manifest(ref.repository, tag)
    index = artifacts.with_referrer(found[0] if found else None, artifact)
    if index is not None:
        registry.put_manifest(ref.repository, tag, index, media.INDEX)
        counts.manifest_bytes += len(index)
    return {"digest": artifact_digest, "referrers": f"tag {tag}"}


def _tag(registry: Any, ref: reference.Reference, tag: str, manifest: bytes, ctx: ExecContext,
         counts: _Counts) -> tuple[str, dict[str, str], bool]:
    """Point the tag at a release index of the image, unless it points at one of this image
    already. Returns (the tag's digest, its annotations, whether it moved)."""
    digest = media.sha256_digest(manifest)
    found = registry.find_manifest(ref.repository, tag)
    if found is not None:
        released = artifacts.released_image(*found)
        if released is not None and released[0] == digest:
            return media.sha256_digest(found[0]), released[1], False
    annotations = release_annotations(ctx.workspace_root, title=ctx.inputs.get("title") or ref.repository,
                                      target=str(ctx.node.label))
    index = artifacts.release_index(manifest, architecture=ctx.inputs.get("architecture") or "amd64",
                                    annotations=annotations)
    pushed = registry.put_manifest(ref.repository, tag, index, media.INDEX)
    counts.manifest_bytes += len(index)
    expected = media.sha256_digest(index)
    if pushed and pushed != expected:
        raise ActionFailed(f"the registry stored the index as {pushed}, expected {expected}")
    return expected, annotations, True


def release_annotations(root: Path, *, title: str, target: str) -> dict[str, str]:
    """What a release says beyond the image's content: the commit it was built from (the
    workspace's git HEAD), when (SOURCE_DATE_EPOCH, else that commit's time), and where its
    sources are (the `origin` remote, without credentials)."""
    annotations = {media.TITLE: title, artifacts.TARGET_ANNOTATION: target}
    revision = _git(root, "rev-parse", "HEAD")
    if revision:
        annotations[media.REVISION] = revision
    try:
        created = created_time(os.environ.get("SOURCE_DATE_EPOCH"))
    except ValueError:
        created = None
    if created is None and revision:
        seconds = _git(root, "log", "-1", "--format=%ct", "HEAD")
        created = created_time(seconds) if seconds and seconds.isdigit() else None
    if created:
        annotations[media.CREATED] = created
    origin = _git(root, "remote", "get-url", "origin")
    if origin:
        annotations[media.SOURCE] = artifacts.public_url(origin)
    return annotations


def _git(root: Path, *args: str) -> str:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=30,
                              env={**os.environ, "GIT_TERMINAL_PROMPT": "0"})
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
