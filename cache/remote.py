"""A shared cache in an OCI registry: action results as artifacts, outputs as plain blobs.

An action result is an OCI manifest tagged `gb-<key>` in the cache repository: its config
blob is the result record (with the key and its named inputs), its layers are the output
blobs. Blobs are content addressed, so an output that is also an image layer is the same
blob the image push uploads. Everything fetched is checked: blobs against their sha256, the
record against the key it is filed under (its inputs must hash to that key). An entry that
fails a check is ignored, reported, and the node runs; it is never used.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphbuild.cache.actions import ActionCache
from graphbuild.cache.blobs import BlobStore
from graphbuild.cache.oci_media import MANIFEST, canonical_json, sha256_digest
from graphbuild.cache.registry import Registry, RegistryError
from graphbuild.keys import Component, digest, key_of

RECORD_TYPE = "application/vnd.graphbuild.action.v1+json"
BLOB_TYPE = "application/octet-stream"
TAG_PREFIX = "gb-"


class RemoteCacheError(Exception):
    """The remote cache is unusable (unreachable, refusing) or an entry failed a check."""


@dataclass(frozen=True)
class RemoteLocation:
    host: str
    repository: str

    @staticmethod
    def parse(url: str) -> RemoteLocation:
        if not url.startswith("oci://"):
            raise ValueError(f"remote cache {url!r} must look like oci://HOST[:PORT]/REPOSITORY")
        host, _, repository = url.removeprefix("oci://").partition("/")
        if not host or not repository:
            raise ValueError(f"remote cache {url!r} must look like oci://HOST[:PORT]/REPOSITORY")
        return RemoteLocation(host, repository.strip("/"))

    def __str__(self) -> str:
        return f"oci://{self.host}/{self.repository}"


class RemoteCache:
    def __init__(self, location: RemoteLocation, *, blobs: BlobStore, actions: ActionCache, writable: bool):
        self.location = location
        self.registry = Registry(location.host, timeout=300)
        self.blobs = blobs
        self.actions = actions
        self.writable = writable

    def check(self) -> None:
        try:
            self.registry.ping()
        except RegistryError as err:
            raise RemoteCacheError(str(err)) from None

    # -- reading ------------------------------------------------------------------------------

    def lookup(self, key: str) -> dict[str, Any] | None:
        """The record for `key`, its outputs downloaded and verified into the local store (and
        the record stored locally); None when the registry has no usable entry."""
        repo = self.location.repository
        try:
            if self.registry.head_manifest(repo, TAG_PREFIX + key) is None:
                return None
            data, _, _ = self.registry.get_manifest(repo, TAG_PREFIX + key)
            manifest = json.loads(data)
            config = manifest["config"]
            document = json.loads(self._fetch_bytes(config["digest"]))
        except RegistryError as err:
            raise RemoteCacheError(f"reading {key[:12]}: {err}") from None
        except (ValueError, KeyError, TypeError) as err:
            raise RemoteCacheError(f"entry {TAG_PREFIX}{key} is malformed: {err}") from None
        record, inputs = document.get("record"), document.get("inputs")
        if document.get("key") != key or not isinstance(record, dict) or not isinstance(inputs, dict):
            raise RemoteCacheError(f"entry {TAG_PREFIX}{key} is filed under the wrong key")
        if key_of({name: Component.from_json(value) for name, value in inputs.items()}) != key:
            raise RemoteCacheError(f"entry {TAG_PREFIX}{key}: its inputs do not hash to its key (poisoned?)")
        if record.get("status") == "ok" and record.get("output_digest") != _outputs_digest(record):
            raise RemoteCacheError(f"entry {TAG_PREFIX}{key}: its outputs do not match its output digest (poisoned?)")
        wanted = [(out[0], out[1]) for out in record.get("outputs", {}).values()]
        if record.get("log"):
            wanted.append((record["log"], None))
        for sha, size in wanted:
            if not self.blobs.has(sha, size):
                self._download(sha, size)
        self.actions.put(key, record)
        self.actions.put_manifest(key, inputs)
        return record

    def _fetch_bytes(self, digest: str) -> bytes:
        data = b"".join(self.registry.blob_chunks(self.location.repository, digest))
        if sha256_digest(data) != digest:
            raise RemoteCacheError(f"blob {digest[:19]} arrived corrupt")
        return data

    def _download(self, sha: str, size: int | None) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.blobs.tmp, prefix="remote-")
        digest = hashlib.sha256()
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.registry.blob_chunks(self.location.repository, f"sha256:{sha}"):
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != sha or (size is not None and os.path.getsize(tmp) != size):
                raise RemoteCacheError(f"blob sha256:{sha[:16]} arrived corrupt")
            got, _ = self.blobs.put_file(Path(tmp), move=True)
            if got != sha:
                raise RemoteCacheError(f"blob sha256:{sha[:16]} arrived corrupt")
        except RegistryError as err:
            raise RemoteCacheError(f"downloading sha256:{sha[:16]}: {err}") from None
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- writing ------------------------------------------------------------------------------

    def store(self, key: str, record: dict[str, Any], inputs: dict[str, list]) -> None:
        """Upload a result: its blobs the registry lacks, then the record, then the tag."""
        if not self.writable:
            return
        repo = self.location.repository
        layers = []
        try:
            shas = [out[0] for out in record.get("outputs", {}).values()]
            if record.get("log"):
                shas.append(record["log"])
            for sha in dict.fromkeys(shas):
                path = self.blobs.path(sha)
                digest = f"sha256:{sha}"
                if not self.registry.has_blob(repo, digest):
                    self.registry.upload_blob(repo, digest, path)
                layers.append({"mediaType": BLOB_TYPE, "digest": digest, "size": path.stat().st_size})
            config = canonical_json({"key": key, "record": record, "inputs": inputs})
            config_digest = sha256_digest(config)
            if not self.registry.has_blob(repo, config_digest):
                with tempfile.NamedTemporaryFile(dir=self.blobs.tmp, prefix="remote-") as handle:
                    handle.write(config)
                    handle.flush()
                    self.registry.upload_blob(repo, config_digest, Path(handle.name))
            manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": RECORD_TYPE,
                        "config": {"mediaType": RECORD_TYPE, "digest": config_digest, "size": len(config)},
                        "layers": layers}
            self.registry.put_manifest(repo, TAG_PREFIX + key, canonical_json(manifest), MANIFEST)
        except (RegistryError, OSError) as err:
            raise RemoteCacheError(f"storing {key[:12]}: {err}") from None


def _outputs_digest(record: dict[str, Any]) -> str | None:
    """What the scheduler records as a result's output digest: its outputs' sha256s and metadata."""
    try:
        return digest({"outputs": {name: out[0] for name, out in record["outputs"].items()},
                       "metadata": record["metadata"]})
    except (KeyError, TypeError, AttributeError, IndexError):
        return None
