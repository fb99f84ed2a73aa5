"""OCI media types and the canonical JSON the image spec's digests are taken over."""

from __future__ import annotations

import hashlib
import json
from typing import Any

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
ACCEPT_MANIFESTS = ", ".join([MANIFEST, INDEX, DOCKER_MANIFEST, DOCKER_LIST])


def canonical_json(document: Any) -> bytes:
    """Stable bytes for a JSON document: sorted keys, no spaces (same document, same digest)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":")).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()
