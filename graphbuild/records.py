"""The records graphbuild stores, and their one serialised form.

`ActionResult` is what the action cache keeps per key (locally, and signed in the shared
cache); `RunRecord` is what the history keeps per run of a target (the node keys `why`
compares). Both are frozen; only this module turns them into JSON-shaped values and back, so
the layout of a record lives here and nowhere else (a test greps the rest of the code for
record fields).

An older or damaged stored value does not parse (`RecordError`): the stores drop it and the
node runs again.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from graphbuild.keys import digest

#: Bumped when the serialised layout changes: a stored record of another format is a miss.
FORMAT = 2

_SHA256 = re.compile(r"[0-9a-f]{64}")


class RecordError(ValueError):
    """A stored value that is not a record of this format (damaged, forged, or older)."""


class OtherFormat(RecordError):
    """A record of another format (an older graphbuild wrote it): a miss, not damage."""


class Status(enum.StrEnum):
    """What a stored result says: a success, or a failure the inputs alone produced."""

    OK = "ok"
    FAILED = "failed"


class OutputBlob(NamedTuple):
    """One output of a node: the blob holding it. A tuple: `sha, size, executable = blob`."""

    sha256: str
    size: int
    executable: bool = False


@dataclass(frozen=True, slots=True)
class ActionResult:
    """The stored result of one action (the node `node` ran it; others with its key reuse it)."""

    status: Status
    node: str
    outputs: Mapping[str, OutputBlob] = field(default_factory=dict)
    metadata: Mapping[str, Any] = field(default_factory=dict)
    #: one line on what the node did, in its own words ("pushed ..."): shown, never keyed
    summary: str = ""
    message: str = ""
    log_tail: str = ""
    log: str | None = None  # sha256 of the whole log, in the blob store
    duration: float = 0.0
    created: float = 0.0
    #: what dependents key on: the outputs' digests and the metadata (not the summary)
    digest: str = ""

    @staticmethod
    def create(status: Status, node: str, *, outputs: Mapping[str, OutputBlob] | None = None,
               metadata: Mapping[str, Any] | None = None, **fields: Any) -> ActionResult:
        """A new result, the output digest of a success computed (a failure has no dependents)."""
        outputs = {name: OutputBlob(*blob) for name, blob in (outputs or {}).items()}
        metadata = dict(metadata or {})
        return ActionResult(status=status, node=node, outputs=outputs, metadata=metadata,
                            digest=output_digest(outputs, metadata) if status is Status.OK else "", **fields)

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def output_digest(self) -> str:
        return self.digest

    def digest_matches(self) -> bool:
        """Whether the recorded output digest is the one its outputs and metadata give (a
        result read from elsewhere is checked before it is believed)."""
        return self.digest == output_digest(self.outputs, self.metadata)

    def blob_refs(self) -> list[tuple[str, int | None]]:
        """Every blob the result needs, (sha256, size; None when unknown): outputs, then the log."""
        refs: list[tuple[str, int | None]] = [(blob.sha256, blob.size) for blob in self.outputs.values()]
        if self.log:
            refs.append((self.log, None))
        return refs

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "status": self.status.value,
            "node": self.node,
            "outputs": {name: list(blob) for name, blob in self.outputs.items()},
            "metadata": dict(self.metadata),
            "summary": self.summary,
            "output_digest": self.digest,
            "message": self.message,
            "log_tail": self.log_tail,
            "log": self.log,
            "duration": self.duration,
            "created": self.created,
        }

    @staticmethod
    def from_json(data: Any) -> ActionResult:
        """The result a stored value holds; RecordError when it is not one of this format."""
        try:
            if data.get("format") != FORMAT:
                raise OtherFormat(f"record format {data.get('format')!r}, not {FORMAT}")
            outputs = {}
            for name, (sha, size, executable) in data["outputs"].items():
                if (type(name) is not str or type(sha) is not str or not _SHA256.fullmatch(sha)
                        or type(size) is not int or size < 0 or type(executable) is not bool):
                    raise RecordError(f"output {name!r} is malformed")
                outputs[name] = OutputBlob(sha, size, executable)
            log = data["log"]
            if log is not None and (type(log) is not str or not _SHA256.fullmatch(log)):
                raise RecordError("its log is not a sha256")
            metadata = data["metadata"]
            texts = (data["node"], data["summary"], data["output_digest"], data["message"] or "",
                     data["log_tail"] or "")
            if type(metadata) is not dict or not all(type(t) is str for t in texts):
                raise RecordError("malformed fields")
            return ActionResult(status=Status(data["status"]), node=texts[0], outputs=outputs, metadata=metadata,
                                summary=texts[1], digest=texts[2], message=texts[3], log_tail=texts[4], log=log,
                                duration=float(data["duration"]), created=float(data["created"]))
        except RecordError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise RecordError(f"not a result record ({type(err).__name__}: {err})") from None


def output_digest(outputs: Mapping[str, OutputBlob], metadata: Mapping[str, Any]) -> str:
    """What a node's dependents key on when they run after it: its outputs and metadata."""
    return digest({"outputs": {name: blob[0] for name, blob in outputs.items()}, "metadata": dict(metadata)})


# -- runs ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunEntry:
    """One node of a recorded run."""

    key: str | None
    status: str  # ran, cached, failed, skipped
    cached_from: str | None = None  # the node whose result served it, when another one
    source: str | None = None  # for a cached result: "local" or "remote"
    cacheable: bool = True

    @property
    def served_by_other(self) -> bool:
        """Its result came from another node or from the shared cache."""
        return bool(self.cached_from) or self.source == "remote"


@dataclass(frozen=True, slots=True)
class RunRecord:
    """A run of some targets: each node's key and status, for `why`."""

    time: float
    phase: str
    nodes: Mapping[str, RunEntry]

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "phase": self.phase,
                "nodes": {nid: [e.key, e.status, e.cached_from, e.source, e.cacheable]
                          for nid, e in self.nodes.items()}}

    @staticmethod
    def from_json(data: Any) -> RunRecord:
        try:
            return RunRecord(time=float(data.get("time", 0.0)), phase=str(data.get("phase", "")),
                             nodes={nid: run_entry_from_json(row) for nid, row in data["nodes"].items()})
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as err:
            raise RecordError(f"not a run record ({type(err).__name__}: {err})") from None


def run_entry_from_json(row: Any) -> RunEntry:
    """A stored node row (older rows lack the source and cacheable columns)."""
    if not isinstance(row, list) or not 3 <= len(row) <= 5:
        raise RecordError(f"a run's node row is {type(row).__name__} {row!r:.40}, not a list of 3 to 5 fields")
    key, status, cached_from, *rest = row
    source = rest[0] if rest else None
    cacheable = rest[1] if len(rest) > 1 else True
    if not (_text_or_none(key) and type(status) is str and _text_or_none(cached_from) and _text_or_none(source)
            and type(cacheable) is bool):
        raise RecordError(f"a run's node row {row!r:.80} is malformed")
    return RunEntry(key=key, status=status, cached_from=cached_from, source=source, cacheable=cacheable)


def _text_or_none(value: Any) -> bool:
    return value is None or type(value) is str

