"""What the scheduler needs of the stores it reads and writes results in.

`ActionCache` (local, SQLite) and `remote.RemoteCache` (an OCI registry) are the real ones;
the scheduler's unit tests use in-memory ones. This module imports nothing heavy: the HTTP
client of the remote cache is loaded only when one is configured.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from graphbuild.records import ActionResult


class RemoteCacheError(Exception):
    """The remote cache is unusable (unreachable, refusing) or an entry failed a check."""


class ActionStore(Protocol):
    """Results and the named inputs of their keys, by key."""

    def get(self, key: str) -> ActionResult | None: ...
    def put(self, key: str, result: ActionResult) -> None: ...
    def delete(self, key: str) -> None: ...
    def put_manifest(self, key: str, manifest: dict[str, list]) -> None: ...
    def mark_used(self, keys: Iterable[str]) -> None: ...


class RemoteCache(Protocol):
    """A shared cache: `lookup` downloads a result's blobs into the local stores before it
    returns it; both raise `RemoteCacheError` for an entry that must not be used or a cache
    that cannot be reached."""

    @property
    def writable(self) -> bool: ...

    def lookup(self, key: str) -> ActionResult | None: ...
    def store(self, key: str, result: ActionResult, inputs: Mapping[str, list]) -> None: ...
