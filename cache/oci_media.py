"""OCI media types and the canonical JSON the image spec's digests are taken over."""

from __future__ import annotations

import hashlib
import json
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
LAYER_TAR_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar"
DOCKER_LAYER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"
#: OCI 1.1: the config of an artifact that has none, and its bytes (`{}`).
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_BYTES = b"{}"
#: A CycloneDX SBOM in JSON (the artifact type of the SBOM an image carries).
CYCLONEDX_JSON = "application/vnd.cyclonedx+json"
#: Annotations (image-spec `annotations.md`).
CREATED = "org.opencontainers.image.created"
SOURCE = "org.opencontainers.image.source"
REVISION = "org.opencontainers.image.revision"
TITLE = "org.opencontainers.image.title"
REF_NAME = "org.opencontainers.image.ref.name"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT_MANIFESTS = ", ".join([MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST])
#: Layer media types whose blob is the tar itself (its digest is its diff_id).
UNCOMPRESSED_LAYERS = frozenset({LAYER_TAR, DOCKER_LAYER})


def canonical_json(document: Any) -> bytes:
    """Stable bytes for a JSON document: sorted keys, no spaces (same document, same digest)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
