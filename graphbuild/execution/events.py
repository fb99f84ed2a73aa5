"""What execution tells the outside world. The core never prints; a `Reporter` decides."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from graphbuild.nodes import Node
from graphbuild.records import OutputBlob

STATUSES = ("ran", "cached", "failed", "skipped")


@dataclass
class NodeOutcome:
    node_id: str
    status: str  # one of STATUSES
    key: str | None = None
    duration: float = 0.0
    outputs: Mapping[str, OutputBlob] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""  # what the node did, in its own words (a push...)
    output_digest: str | None = None
    message: str = ""
    log_tail: str = ""
    cached_from: str | None = None  # where a cached result came from ("local", another node...)
    detail: str = ""  # why it ran despite a cache entry (a corrupt blob...)
    bad_input: bool = False  # the failure is the spec's fault: exit 2
    source: str | None = None  # for a cached result: "local" or "remote" (the shared cache)
    location: str | None = None
    #: a failure because an input blob (sha256) was found corrupt: the scheduler repairs it
    corrupt_blob: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ran", "cached")


class Reporter(Protocol):
    def run_started(self, total: int, phase: str) -> None: ...
    def node_started(self, node: Node) -> None: ...
    def node_finished(self, node: Node, outcome: NodeOutcome) -> None: ...
    def warning(self, text: str) -> None: ...
