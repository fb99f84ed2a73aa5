"""Walk the action graph: key each node once its dependencies are done, reuse or run it.

Cache lookups happen on the scheduling thread (they are fast); only misses go to the worker
pool.  A result is recorded only after its outputs are in the blob store, so a process
killed at any point leaves finished nodes reusable and unfinished ones absent.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphbuild.cache.actions import ActionCache
from graphbuild.cache.blobs import BlobStore, CorruptBlob
from graphbuild.execution.context import ExecContext
from graphbuild.execution.events import NodeOutcome, Reporter
from graphbuild.execution.keying import node_manifest
from graphbuild.keys import Manifest, digest, key_of
from graphbuild.nodes import ActionFailed, Node, OutputRef

if TYPE_CHECKING:  # the remote cache (and its HTTP client) is imported only when one is configured
    from graphbuild.cache.remote import RemoteCache

_LOG_TAIL_LINES = 30


class Scheduler:
    def __init__(self, *, actions: ActionCache, blobs: BlobStore, workspace_root: Path, tmp_dir: Path,
                 reporter: Reporter, jobs: int, remote: RemoteCache | None = None,
                 options: Mapping[str, Any] | None = None):
        self.actions = actions
        self.blobs = blobs
        self.root = workspace_root
        self.tmp_dir = tmp_dir
        self.reporter = reporter
        self.jobs = max(1, jobs)
        self.manifests: dict[str, Manifest] = {}
        self.remote = remote
        self.options = dict(options or {})

    def run(self, nodes: Mapping[str, Node], order: list[str], *, force: Iterable[str] = ()) -> dict[str, NodeOutcome]:
        """Run `order` (a topological order, dependencies first); `force` bypasses the cache."""
        selected = set(order)
        waiting_on = {nid: {d for d in nodes[nid].deps if d in selected} for nid in order}
        dependents: dict[str, list[str]] = {nid: [] for nid in order}
        for nid in order:
            for dep in waiting_on[nid]:
                dependents[dep].append(nid)
        outcomes: dict[str, NodeOutcome] = {}
        forced = set(force)
        ready = deque(nid for nid in order if not waiting_on[nid])
        running: dict[Future, str] = {}
        running_keys: dict[str, str] = {}  # key -> node id computing it (single flight)
        same_key_waiters: dict[str, list[str]] = {}
        used_keys: list[str] = []
        recovered: set[str] = set()

        def finish(nid: str, outcome: NodeOutcome) -> None:
            outcomes[nid] = outcome
            self.reporter.node_finished(nodes[nid], outcome)
            for dependent in dependents[nid]:
                pending = waiting_on[dependent]
                pending.discard(nid)
                if not pending and dependent not in outcomes:
                    ready.append(dependent)

        def output_digest(ref: OutputRef) -> str:
            return outcomes[ref.node_id].outputs[ref.name][0]

        def after_digest(node_id: str) -> str:
            return outcomes[node_id].output_digest or ""

        self.reporter.run_started(len(order), "")
        if (self.tmp_dir / "trash").is_dir():
            _sweeper.wake(self.tmp_dir / "trash")  # what an earlier process left
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="graphbuild") as pool:
            while ready or running:
                while ready:
                    nid = ready.popleft()
                    node = nodes[nid]
                    blocked = [d for d in node.deps if d in outcomes and not outcomes[d].ok]
                    if blocked:
                        finish(nid, NodeOutcome(nid, "skipped", message=f"dependency {blocked[0]} did not succeed"))
                        continue
                    manifest = node_manifest(node, output_digest, after_digest)
                    key = key_of(manifest)
                    self.manifests[nid] = manifest
                    if node.cacheable and nid not in forced:
                        cached = self._lookup(nid, key)
                        if cached is not None:
                            used_keys.append(key)
                            finish(nid, cached)
                            continue
                        if key in running_keys:
                            same_key_waiters.setdefault(key, []).append(nid)
                            continue
                    running_keys[key] = nid
                    use_remote = node.cacheable and nid not in forced
                    # the worker reads only its dependencies' outcomes: hand it those (a copy of
                    # every outcome per node would make large cold builds quadratic)
                    mine = {dep: outcomes[dep] for dep in node.deps if dep in outcomes}
                    future = pool.submit(self._fetch_or_execute, node, key, manifest, mine, use_remote)
                    running[future] = nid
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    nid = running.pop(future)
                    outcome = future.result()
                    key = outcome.key or ""
                    running_keys.pop(key, None)
                    if isinstance(outcome.metadata.get("_corrupt"), str) and nid not in recovered:
                        recovered.add(nid)
                        producer = self._recover_corrupt(nodes[nid], outcome.metadata["_corrupt"], outcomes)
                        if producer:
                            forced.add(producer)
                            outcomes.pop(producer)
                            waiting_on[nid].add(producer)
                            ready.append(producer)
                            continue
                    finish(nid, outcome)
                    for waiter in same_key_waiters.pop(key, []):
                        finish(waiter, _shared(outcome, nid, waiter))
        self.actions.mark_used(used_keys)
        return outcomes

    # -- cache ------------------------------------------------------------------------------

    def _lookup(self, nid: str, key: str) -> NodeOutcome | None:
        record = self.actions.get(key)
        if record is None:
            return None
        if record["status"] == "ok":
            for sha, size, _ in record["outputs"].values():
                stored = self.blobs.size(sha)
                if stored is None:
                    return None  # an output blob went missing (gc, disk cleanup): rebuild
                if stored != size:
                    self.reporter.warning(f"corrupt blob sha256:{sha[:16]} (output of {nid}, wrong size) "
                                          f"removed; rebuilding {nid}")
                    self.blobs.delete(sha)
                    return None
        return _from_record(nid, key, record, "local")

    def _recover_corrupt(self, node: Node, sha: str, outcomes: dict[str, NodeOutcome]) -> str | None:
        for dep in node.deps:
            dep_outcome = outcomes.get(dep)
            if dep_outcome and any(out[0] == sha for out in dep_outcome.outputs.values()):
                if dep_outcome.key:
                    self.actions.delete(dep_outcome.key)
                self.reporter.warning(f"corrupt blob sha256:{sha[:16]} (output of {dep}) removed; rebuilding {dep}")
                return dep
        return None

    # -- running a node -----------------------------------------------------------------------

    def _fetch_or_execute(self, node: Node, key: str, manifest: Manifest, outcomes: dict[str, NodeOutcome],
                          use_remote: bool) -> NodeOutcome:
        """Worker side: the shared cache first (a download, on this thread), else run the node."""
        if use_remote and self.remote is not None:
            from graphbuild.cache.remote import RemoteCacheError

            try:
                record = self.remote.lookup(key)
            except RemoteCacheError as err:
                self.reporter.warning(f"remote cache: {err}; {node.id} will run instead")
                record = None
            if record is not None:
                return _from_record(node.id, key, record, "remote")
        self.reporter.node_started(node)
        return self._execute(node, key, manifest, outcomes)

    def _execute(self, node: Node, key: str, manifest: Manifest, outcomes: dict[str, NodeOutcome]) -> NodeOutcome:
        started = time.monotonic()
        self.actions.put_manifest(key, {name: comp.to_json() for name, comp in manifest.items()})
        workdir = Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="node-"))
        ctx: ExecContext | None = None

        def resolve_output(ref: OutputRef) -> Path:
            return self.blobs.verified_path(outcomes[ref.node_id].outputs[ref.name][0])

        try:
            ctx = ExecContext(node, self.root, workdir, resolve_output, blob_root=self.blobs.root,
                              options=self.options)
            metadata = dict(node.executor.fn(ctx) or {})
            outputs = self._collect_outputs(node, ctx)
        except CorruptBlob as err:
            return NodeOutcome(node.id, "failed", key=key, metadata={"_corrupt": err.digest},
                               message=str(err), duration=time.monotonic() - started)
        except ActionFailed as err:
            log = (ctx.log_text if ctx else "") + (err.details or "")
            outcome = NodeOutcome(node.id, "failed", key=key, message=err.message, metadata=err.metadata,
                                  log_tail=_tail(log), duration=time.monotonic() - started,
                                  bad_input=err.bad_input, location=str(err.location) if err.location else None)
            if err.deterministic and node.cacheable:
                self._record(key, node, manifest, outcome, log)
            return outcome
        except Exception as err:  # an executor bug must not take the whole build down
            log = (ctx.log_text if ctx else "") + traceback.format_exc()
            return NodeOutcome(node.id, "failed", key=key, message=f"internal error in {node.executor.ident}: "
                               f"{type(err).__name__}: {err}", log_tail=_tail(log),
                               duration=time.monotonic() - started)
        finally:
            self._discard(workdir)
        outcome = NodeOutcome(node.id, "ran", key=key, outputs=outputs, metadata=metadata,
                              output_digest=digest({"outputs": {k: v[0] for k, v in outputs.items()},
                                                    "metadata": metadata}),
                              duration=time.monotonic() - started)
        if node.cacheable:
            self._record(key, node, manifest, outcome, ctx.log_text)
        return outcome

    def _discard(self, workdir: Path) -> None:
        """Scratch trees can be large (an installed layer): deleting one takes a second, so it is
        renamed aside at once and deleted by a background thread, off the node's time. A
        process that exits first leaves it to the next run's sweep."""
        trash = self.tmp_dir / "trash"
        trash.mkdir(exist_ok=True)
        try:
            os.replace(workdir, trash / workdir.name)
        except OSError:
            shutil.rmtree(workdir, ignore_errors=True)
            return
        _sweeper.wake(trash)

    def _collect_outputs(self, node: Node, ctx: ExecContext) -> dict[str, list]:
        outputs: dict[str, list] = {}
        for name in node.outputs:
            path = ctx.out_dir / name
            if not path.is_file():
                raise ActionFailed(f"did not produce its declared output '{name}'", details=ctx.log_text)
            executable = bool(path.stat().st_mode & 0o111)
            sha, size = self.blobs.put_file(path, move=True)
            outputs[name] = [sha, size, executable]
        return outputs

    def _record(self, key: str, node: Node, manifest: Manifest, outcome: NodeOutcome, log: str) -> None:
        record: dict[str, Any] = {
            "status": "ok" if outcome.status == "ran" else "failed",
            "node": node.id,
            "outputs": outcome.outputs,
            "metadata": outcome.metadata,
            "output_digest": outcome.output_digest,
            "message": outcome.message,
            "log_tail": outcome.log_tail,
            "log": self.blobs.put_bytes(log.encode())[0] if log else None,
            "duration": outcome.duration,
            "created": time.time(),
        }
        self.actions.put(key, record)
        if self.remote is not None and self.remote.writable:
            from graphbuild.cache.remote import RemoteCacheError

            try:
                self.remote.store(key, record, {name: comp.to_json() for name, comp in manifest.items()})
            except RemoteCacheError as err:
                self.reporter.warning(f"remote cache: could not store {node.id}: {err}")


class _Sweeper:
    """One daemon thread emptying trash directories."""

    def __init__(self) -> None:
        self._wanted: set[Path] = set()
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def wake(self, trash: Path) -> None:
        with self._lock:
            self._wanted.add(trash)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="graphbuild-sweeper", daemon=True)
                self._thread.start()
        self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait()
            self._event.clear()
            with self._lock:
                wanted = list(self._wanted)
            for trash in wanted:
                for entry in list(trash.iterdir()) if trash.is_dir() else ():
                    shutil.rmtree(entry, ignore_errors=True)


_sweeper = _Sweeper()


def _from_record(nid: str, key: str, record: dict[str, Any], source: str) -> NodeOutcome:
    """The outcome a stored result stands for: a success, or a failure the inputs caused."""
    if record["status"] == "ok":
        return NodeOutcome(nid, "cached", key=key, outputs=record["outputs"], metadata=record["metadata"],
                           output_digest=record["output_digest"], cached_from=_other(record.get("node"), nid),
                           source=source)
    return NodeOutcome(nid, "failed", key=key, metadata=record["metadata"], message=record["message"],
                       log_tail=record.get("log_tail", ""), cached_from=_other(record.get("node"), nid),
                       detail="cached failure", source=source)


def _shared(outcome: NodeOutcome, source: str, nid: str) -> NodeOutcome:
    if outcome.ok:
        return NodeOutcome(nid, "cached", key=outcome.key, outputs=outcome.outputs, metadata=outcome.metadata,
                           output_digest=outcome.output_digest, cached_from=source)
    return NodeOutcome(nid, "failed", key=outcome.key, message=outcome.message, log_tail=outcome.log_tail,
                       cached_from=source, detail=f"same action as {source}")


def _other(source: str | None, nid: str) -> str | None:
    """Where a cached result came from, when that is not the node itself."""
    return source if source != nid else None


def _tail(text: str) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-_LOG_TAIL_LINES:])
