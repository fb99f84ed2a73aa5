"""A shared cache in an OCI registry: action results as artifacts, outputs as plain blobs.

An action result is an OCI manifest tagged `gb-<key>` in the cache repository: its config
blob is the result record (with the key, its named inputs and the writer's signature), its
layers are the output blobs. Blobs are content addressed, so an output that is also an image
layer is the same blob the image push uploads.

Trust: anyone who can push to the repository can file a self-consistent entry, so consistency
proves nothing. An entry is used only when it is signed by a key graphbuild.toml trusts
(`graphbuild.cache.signing`); then its key, inputs and outputs are checked, every blob against
the sha256 the signed record names. An entry that fails is ignored, reported, and the node
runs; it is never used. A writer without a signing key writes nothing.

Repair: a registry keeps a blob it already holds when the same digest is uploaded again, so a
blob corrupted in the registry's storage cannot be fixed by uploading it again. When a blob
arrived corrupt, this process's later writes of it upload a *copy* instead: the same bytes
behind a short header with a random nonce (a new digest), listed in the manifest with the
content digest it holds; readers verify both.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import secrets
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from graphbuild.cache.actions import ActionCache
from graphbuild.cache.blobs import BlobStore
from graphbuild.cache.oci_media import MANIFEST, canonical_json, sha256_digest
from graphbuild.cache.registry import Registry, RegistryError
from graphbuild.cache.signing import SigningKey, TrustedKeys, Untrusted
from graphbuild.cache.stores import RemoteCacheError
from graphbuild.keys import Component, key_of
from graphbuild.records import ActionResult, OtherFormat, RecordError

RECORD_TYPE = "application/vnd.graphbuild.action.v1+json"
BLOB_TYPE = "application/octet-stream"
COPY_TYPE = "application/vnd.graphbuild.blob-copy.v1"
CONTENT_ANNOTATION = "dev.graphbuild.content.digest"
TAG_PREFIX = "gb-"
#: a copy's header: this, 32 hex digits of nonce, a newline (54 bytes), then the content
COPY_MAGIC = b"graphbuild blob copy "
COPY_HEADER_SIZE = len(COPY_MAGIC) + 32 + 1


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
    """Reads entries signed by `trusted` keys (none: reads nothing); writes, signed by `signer`,
    when `writable` and a signer is given."""

    def __init__(self, location: RemoteLocation, *, blobs: BlobStore, actions: ActionCache,
                 trusted: TrustedKeys, signer: SigningKey | None, writable: bool):
        self.location = location
        self.registry = Registry(location.host, timeout=300)
        self.blobs = blobs
        self.actions = actions
        self.trusted = trusted
        self.signer = signer
        self.writable = writable and signer is not None
        self._corrupt: set[str] = set()  # sha256s that arrived corrupt from this registry
        self._lock = threading.Lock()

    @property
    def readable(self) -> bool:
        return bool(self.trusted)

    def check(self) -> None:
        try:
            self.registry.ping(self.location.repository)
        except RegistryError as err:
            raise RemoteCacheError(str(err)) from None

    # -- reading ------------------------------------------------------------------------------

    def lookup(self, key: str) -> ActionResult | None:
        """The record for `key`, its outputs downloaded and verified into the local store (and
        the record stored locally); None when the registry has no entry (or no key is trusted).
        RemoteCacheError, naming the entry, when it has one that must not be used."""
        if not self.readable:
            return None
        repo, entry = self.location.repository, TAG_PREFIX + key
        try:
            if self.registry.head_manifest(repo, entry) is None:
                return None
            data, _, _ = self.registry.get_manifest(repo, entry)
            manifest = json.loads(data)
            document = json.loads(self._fetch_bytes(manifest["config"]["digest"], entry))
            layers = manifest.get("layers") or []
            if not isinstance(document, dict) or not isinstance(layers, list):
                raise TypeError("not a JSON object")
        except RegistryError as err:
            raise RemoteCacheError(f"reading entry {entry}: {err}") from None
        except (ValueError, KeyError, TypeError) as err:
            raise RemoteCacheError(f"entry {entry} is malformed: {err}") from None
        record, inputs = document.get("record"), document.get("inputs")
        try:
            self.trusted.check(document.get("signature"), document.get("key"), record, inputs)
        except Untrusted as err:
            raise RemoteCacheError(f"entry {entry} {err.reason}") from None
        except (TypeError, ValueError) as err:
            raise RemoteCacheError(f"entry {entry} is malformed: {err}") from None
        # Signed by a trusted writer: still checked, so that a writer's bug is not trusted either.
        if document.get("key") != key or not isinstance(record, dict) or not isinstance(inputs, dict):
            raise RemoteCacheError(f"entry {entry} is filed under the wrong key")
        try:
            hashed = key_of({name: Component.from_json(value) for name, value in inputs.items()})
        except (ValueError, KeyError, TypeError, IndexError, AttributeError):
            hashed = None
        if hashed != key:
            raise RemoteCacheError(f"entry {entry}: its inputs do not hash to its key (poisoned?)")
        try:
            result = ActionResult.from_json(record)
        except OtherFormat:
            return None  # written by another version of graphbuild: a miss
        except RecordError as err:
            raise RemoteCacheError(f"entry {entry} is malformed: {err}") from None
        if result.ok and not result.digest_matches():
            raise RemoteCacheError(f"entry {entry}: its outputs do not match its output digest (poisoned?)")
        copies = _copies(layers)
        for sha, size in result.blob_refs():
            if not self.blobs.has(sha, size):
                self._download(sha, size, copies.get(sha, []), entry)
        self.actions.put(key, result)
        self.actions.put_manifest(key, inputs)
        return result

    def _fetch_bytes(self, blob: str, entry: str) -> bytes:
        data = b"".join(self.registry.blob_chunks(self.location.repository, blob))
        if sha256_digest(data) != blob:
            raise RemoteCacheError(f"entry {entry}: its record blob {blob[:19]} arrived corrupt")
        return data

    def _download(self, sha: str, size: int | None, copies: list[str], entry: str) -> None:
        """Blob `sha` into the local store, from a copy the manifest lists or else the blob itself."""
        failures = []
        for source in [*copies, f"sha256:{sha}"]:
            try:
                self._download_from(source, sha, size, header=source != f"sha256:{sha}")
                return
            except RemoteCacheError as err:
                failures.append(str(err))
            except RegistryError as err:
                failures.append(f"downloading {source[:19]}: {err}")
        with self._lock:
            self._corrupt.add(sha)
        raise RemoteCacheError(f"entry {entry}: output blob sha256:{sha[:16]} failed verification "
                               f"({'; '.join(failures)})")

    def _download_from(self, source: str, sha: str, size: int | None, *, header: bool) -> None:
        fd, tmp = tempfile.mkstemp(dir=self.blobs.tmp, prefix="remote-")
        transport = hashlib.sha256()
        content = hashlib.sha256() if header else transport  # a plain blob is its content: hash it once
        head = b"" if not header else None
        try:
            with os.fdopen(fd, "wb") as out:
                pending = b""
                for chunk in self.registry.blob_chunks(self.location.repository, source):
                    transport.update(chunk)
                    if head is None:  # a copy: hold back its header
                        pending += chunk
                        if len(pending) < COPY_HEADER_SIZE:
                            continue
                        head, chunk = pending[:COPY_HEADER_SIZE], pending[COPY_HEADER_SIZE:]
                    if header:
                        content.update(chunk)
                    out.write(chunk)
            if "sha256:" + transport.hexdigest() != source:
                raise RemoteCacheError(f"blob {source[:19]} arrived corrupt")
            if head is None or (header and not head.startswith(COPY_MAGIC)):
                raise RemoteCacheError(f"copy {source[:19]} has no copy header")
            if content.hexdigest() != sha or (size is not None and os.path.getsize(tmp) != size):
                raise RemoteCacheError(f"blob {source[:19]} does not hold sha256:{sha[:16]}")
            got, _ = self.blobs.put_file(Path(tmp), move=True)
            if got != sha:
                raise RemoteCacheError(f"blob {source[:19]} arrived corrupt")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    # -- writing ------------------------------------------------------------------------------

    def store(self, key: str, result: ActionResult, inputs: Mapping[str, list]) -> None:
        """Upload a result: its blobs the registry lacks, then the signed record, then the tag."""
        if not self.writable or self.signer is None:
            return
        repo = self.location.repository
        layers = []
        try:
            for sha in dict.fromkeys(sha for sha, _ in result.blob_refs()):
                path = self.blobs.path(sha)
                with self._lock:
                    known_bad = sha in self._corrupt
                if known_bad:
                    layers.append(self._upload_copy(sha, path))
                    continue
                digest = f"sha256:{sha}"
                if not self.registry.has_blob(repo, digest):
                    self.registry.upload_blob(repo, digest, path)
                layers.append({"mediaType": BLOB_TYPE, "digest": digest, "size": path.stat().st_size})
            record = result.to_json()
            signature = self.signer.sign(key, record, inputs)
            config = canonical_json({"key": key, "record": record, "inputs": dict(inputs), "signature": signature})
            config_digest = sha256_digest(config)
            if not self.registry.has_blob(repo, config_digest):
                self._upload_bytes(config_digest, [config])
            manifest = {"schemaVersion": 2, "mediaType": MANIFEST, "artifactType": RECORD_TYPE,
                        "config": {"mediaType": RECORD_TYPE, "digest": config_digest, "size": len(config)},
                        "layers": layers}
            self.registry.put_manifest(repo, TAG_PREFIX + key, canonical_json(manifest), MANIFEST)
        except (RegistryError, OSError) as err:
            raise RemoteCacheError(f"storing {TAG_PREFIX}{key}: {err}") from None

    def _upload_copy(self, sha: str, path: Path) -> dict[str, Any]:
        """Blob `sha` behind a fresh header: a digest the registry has never held."""
        header = COPY_MAGIC + secrets.token_hex(16).encode() + b"\n"
        assert len(header) == COPY_HEADER_SIZE
        copy = hashlib.sha256(header)
        with open(path, "rb") as data:
            for chunk in iter(lambda: data.read(1 << 20), b""):
                copy.update(chunk)
        copy_digest = "sha256:" + copy.hexdigest()
        with open(path, "rb") as data:
            self._upload_bytes(copy_digest, [header, *iter(lambda: data.read(1 << 20), b"")])
        return {"mediaType": COPY_TYPE, "digest": copy_digest, "size": len(header) + path.stat().st_size,
                "annotations": {CONTENT_ANNOTATION: f"sha256:{sha}"}}

    def _upload_bytes(self, digest: str, parts: list[bytes]) -> None:
        with tempfile.NamedTemporaryFile(dir=self.blobs.tmp, prefix="remote-") as handle:
            for part in parts:
                handle.write(part)
            handle.flush()
            self.registry.upload_blob(self.location.repository, digest, Path(handle.name))


def _is_sha256_digest(text: Any) -> bool:
    return isinstance(text, str) and re.fullmatch(r"sha256:[0-9a-f]{64}", text) is not None


def _copies(layers: list[Any]) -> dict[str, list[str]]:
    """content sha256 -> the copies the manifest lists for it."""
    found: dict[str, list[str]] = {}
    for layer in layers:
        if isinstance(layer, dict) and layer.get("mediaType") == COPY_TYPE:
            content = (layer.get("annotations") or {}).get(CONTENT_ANNOTATION, "")
            blob = layer.get("digest", "")
            if _is_sha256_digest(content) and _is_sha256_digest(blob):
                found.setdefault(content.removeprefix("sha256:"), []).append(blob)
    return found

