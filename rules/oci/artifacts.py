"""The OCI documents a push writes besides the image itself (pure functions: bytes in, bytes out).

- the SBOM as an artifact manifest whose `subject` is the image (OCI 1.1);
- the referrers index of the tag fallback scheme (`sha256-<hex>` tag), for registries without
  the referrers API;
- the release index the push tags: one entry, the image manifest, with the annotations that
  belong to a release rather than to the image's content (revision, created, source).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from graphbuild.api import media

#: graphbuild's own annotation on the index it tags: the target it pushed.
TARGET_ANNOTATION = "org.graphbuild.target"


def descriptor(media_type: str, data: bytes, **extra: Any) -> dict[str, Any]:
    return {"mediaType": media_type, "digest": media.sha256_digest(data), "size": len(data), **extra}


def sbom_manifest(sbom: Path, subject: bytes) -> bytes:
    """An artifact manifest holding the SBOM, referring to the image manifest `subject`."""
    data = sbom.read_bytes()
    document = {
        "schemaVersion": 2,
        "mediaType": media.MANIFEST,
        "artifactType": media.CYCLONEDX_JSON,
        "config": descriptor(media.EMPTY, media.EMPTY_BYTES),
        "layers": [descriptor(media.CYCLONEDX_JSON, data)],
        "subject": descriptor(media.MANIFEST, subject),
    }
    return media.canonical_json(document)


def fallback_tag(digest: str) -> str:
    """The tag of a manifest's referrers index where the registry has no referrers API."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}-{hexdigest}"


def with_referrer(existing: bytes | None, artifact: bytes) -> bytes | None:
    """The referrers index `existing` (None: there is none yet) with `artifact` listed; None
    when it is listed already. Entries others put there (signatures...) are kept."""
    index: dict[str, Any] = {"schemaVersion": 2, "mediaType": media.INDEX, "manifests": []}
    if existing:
        try:
            found = json.loads(existing)
        except ValueError:
            found = None
        if isinstance(found, dict) and isinstance(found.get("manifests"), list):
            index = found
    entry = descriptor(media.MANIFEST, artifact, artifactType=json.loads(artifact).get("artifactType"))
    if any(isinstance(m, dict) and m.get("digest") == entry["digest"] for m in index["manifests"]):
        return None
    index["manifests"] = [*index["manifests"], entry]
    return media.canonical_json(index)


def release_index(manifest: bytes, *, architecture: str, annotations: dict[str, str]) -> bytes:
    """The index a tag points at: the image manifest for its platform, and the annotations."""
    entry = descriptor(media.MANIFEST, manifest, platform={"architecture": architecture, "os": "linux"})
    document: dict[str, Any] = {"schemaVersion": 2, "mediaType": media.INDEX, "manifests": [entry]}
    if annotations:
        document["annotations"] = dict(sorted(annotations.items()))
    return media.canonical_json(document)


def released_image(index: bytes, media_type: str) -> tuple[str, dict[str, str]] | None:
    """(image digest, annotations) when `index` is a release index graphbuild tagged; else None."""
    if media_type != media.INDEX:
        return None
    try:
        document = json.loads(index)
        manifests = document["manifests"]
        annotations = document.get("annotations") or {}
    except (ValueError, KeyError, TypeError):
        return None
    if not isinstance(annotations, dict) or TARGET_ANNOTATION not in annotations or not isinstance(manifests, list):
        return None
    if len(manifests) != 1 or not isinstance(manifests[0], dict):
        return None
    return str(manifests[0].get("digest")), {str(k): str(v) for k, v in annotations.items()}


def public_url(url: str) -> str:
    """A URL without the user name and password it may carry (never written into an image)."""
    if not url or "@" not in url:
        return url
    parts = urlsplit(url)
    if not parts.netloc or "@" not in parts.netloc:
        return url
    return urlunsplit(parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]))
