"""Pushing an image to a registry: blobs the registry lacks (HEAD first), the manifest last.

The tag is written last, by the manifest PUT, so a failure anywhere leaves no tag pointing at
an incomplete image.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.oci import media, reference
from graphbuild.rules.oci.image import blob_digest


@executor("oci.push", version=1, cacheable=False)
def push_image(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `destination`, `manifest`, `config`, `layers`."""
    from graphbuild.rules.oci.registry import Registry, RegistryError

    try:
        ref = reference.with_registry(reference.parse(ctx.inputs["destination"]), ctx.workspace_root)
    except (ValueError, LookupError) as err:
        raise ActionFailed(f"cannot push: {err}", bad_input=True) from None
    assert ref.host is not None
    registry = Registry(ref.host)
    manifest = Path(ctx.inputs["manifest"])
    blobs = [Path(p) for p in [*ctx.inputs["layers"], ctx.inputs["config"]]]
    uploaded = skipped = count = 0
    try:
        registry.ping()
        done: set[str] = set()
        for path in blobs:
            digest = blob_digest(path)
            if digest in done:
                continue
            done.add(digest)
            size = path.stat().st_size
            if registry.has_blob(ref.repository, digest):
                skipped += size
            else:
                registry.upload_blob(ref.repository, digest, path)
                uploaded += size
                count += 1
        data = manifest.read_bytes()
        pushed = registry.put_manifest(ref.repository, ref.tag or "latest", data, media.MANIFEST)
    except RegistryError as err:
        raise ActionFailed(f"push to {ref} failed: {err}", details="nothing was tagged") from None
    digest = media.sha256_digest(data)
    if pushed and pushed != digest:
        raise ActionFailed(f"the registry stored the manifest as {pushed}, expected {digest}")
    where = f"{ref.host}/{ref.repository}:{ref.tag or 'latest'}"
    ctx.log(f"pushed {where}@{digest}: {count} blobs, {uploaded} bytes uploaded, {skipped} bytes already there")
    return {
        "reference": where,
        "digest": digest,
        "uploaded_bytes": uploaded,
        "skipped_bytes": skipped,
        "uploaded_blobs": count,
        "summary": f"pushed {where}@{digest[:19]}: {_mb(uploaded)} uploaded, {_mb(skipped)} already there",
    }


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
