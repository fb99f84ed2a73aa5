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
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphbuild.cache.blobs import BlobStore, CorruptBlob
from graphbuild.cache.locks import KeyLocks, Stopped
from graphbuild.cache.stores import ActionStore, RemoteCache, RemoteCacheError
from graphbuild.execution import processes
from graphbuild.execution.context import ExecContext
from graphbuild.execution.events import NodeOutcome, Reporter
from graphbuild.keying import after_key, node_manifest
from graphbuild.keys import Manifest, key_of
from graphbuild.nodes import ActionFailed, Node, OutputRef
from graphbuild.records import ActionResult, OutputBlob, Status

if TYPE_CHECKING:
    from graphbuild.cache.runs import Run

_LOG_TAIL_LINES = 30
#: How often one node (or `deliver`) may meet a corrupt blob in one run before it fails.
_MAX_REPAIRS = 3


class Scheduler:
    def __init__(self, *, actions: ActionStore, blobs: BlobStore, workspace_root: Path, tmp_dir: Path,
                 reporter: Reporter, jobs: int, remote: RemoteCache | None = None,
                 options: Mapping[str, Any] | None = None, run: Run | None = None, phase: str = "",
                 state_dir: Path | None = None):
        self.actions = actions
        self.blobs = blobs
        self.root = workspace_root
        self.tmp_dir = tmp_dir
        self.reporter = reporter
        self.jobs = max(1, jobs)
        self.phase = phase
        self.state_dir = state_dir  # rule-owned state (`ExecContext.state_dir`)
        self.remote = remote
        self.options = dict(options or {})
        #: this process's run: its scratch directories, the child processes it started
        self.run_state = run
        self.key_locks = KeyLocks(tmp_dir / "locks")

    def run(self, nodes: Mapping[str, Node], order: list[str], *, force: Iterable[str] = (),
            deliver: Callable[[Mapping[str, NodeOutcome]], object] | None = None) -> dict[str, NodeOutcome]:
        """Run `order` (a topological order, dependencies first); `force` bypasses the cache.

        `deliver` is called with the outcomes once every node is done (to copy outputs where
        people look for them): a corrupt blob it meets is repaired like one a node meets.
        """
        walk = _Walk(self, nodes, order, set(force))
        self.reporter.run_started(len(order), self.phase)
        if (self.tmp_dir / "trash").is_dir():
            _sweeper.wake(self.tmp_dir / "trash")  # what an earlier process left
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="graphbuild") as pool:
            try:
                walk.drain(pool)
                for _ in range(_MAX_REPAIRS):
                    if deliver is None:
                        break
                    try:
                        deliver(walk.outcomes)
                        break
                    except CorruptBlob as err:
                        if not walk.repair(err.digest, None):
                            self.reporter.warning(f"corrupt blob sha256:{err.digest[:16]} could not be repaired")
                            break
                        walk.drain(pool)
            except BaseException:
                self.key_locks.stopping.set()  # workers waiting for another process give up
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        self.actions.mark_used(walk.used_keys)
        return walk.outcomes

    # -- cache ------------------------------------------------------------------------------

    def _lookup(self, nid: str, key: str) -> NodeOutcome | None:
        record = self.actions.get(key)
        if record is None:
            return None
        if record.ok:
            for sha, size, _ in record.outputs.values():
                stored = self.blobs.size(sha)
                if stored is None:
                    return None  # an output blob went missing (gc, disk cleanup): rebuild
                if stored != size:
                    self.reporter.warning(f"corrupt blob sha256:{sha[:16]} (output of {nid}, wrong size) "
                                          f"removed; rebuilding {nid}")
                    self.blobs.delete(sha)
                    return None
        return _from_record(nid, key, record, "local")

    # -- running a node -----------------------------------------------------------------------

    def _fetch_or_execute(self, node: Node, key: str, manifest: Manifest, outcomes: dict[str, NodeOutcome],
                          use_cache: bool) -> NodeOutcome:
        """Worker side: hold the key's lock (a node in progress in another process is waited
        for), look in the cache again (another process may have stored the result since the
        first lookup, whether or not this one had to wait), then
        the shared cache (a download, on this thread), else run the node."""
        processes.bind(self.run_state)
        if not node.cacheable:
            self.reporter.node_started(node)
            return self._execute(node, key, manifest, outcomes)
        try:
            with self.key_locks.hold(key) as waited:
                if use_cache:
                    # looked up again even when nobody held the lock: another process may
                    # have run the node and released it between the first lookup and now
                    found = self._lookup(node.id, key)
                    if found is not None:
                        found.detail = ("stored by another graphbuild process while this one waited" if waited
                                        else "stored by another graphbuild process meanwhile")
                        return found
                    if self.remote is not None:
                        try:
                            record = self.remote.lookup(key)
                        except RemoteCacheError as err:
                            self.reporter.warning(f"remote cache: {err}; {node.id} will run instead")
                            record = None
                        if record is not None:
                            return _from_record(node.id, key, record, "remote")
                self.reporter.node_started(node)
                return self._execute(node, key, manifest, outcomes)
        except Stopped:
            return NodeOutcome(node.id, "failed", key=key, message="interrupted while waiting for another process")

    def _execute(self, node: Node, key: str, manifest: Manifest, outcomes: dict[str, NodeOutcome]) -> NodeOutcome:
        started = time.monotonic()
        self.actions.put_manifest(key, {name: comp.to_json() for name, comp in manifest.items()})
        workdir = (self.run_state.scratch_dir() if self.run_state is not None
                   else Path(tempfile.mkdtemp(dir=self.tmp_dir, prefix="node-")))
        ctx: ExecContext | None = None

        def resolve_output(ref: OutputRef) -> Path:
            return self.blobs.verified_path(outcomes[ref.node_id].outputs[ref.name][0])

        try:
            # a reporter may show the commands a node runs and its log (optional hooks)
            on_command, on_log = (getattr(self.reporter, name, None) for name in ("node_command", "node_log"))
            ctx = ExecContext(node, self.root, workdir, resolve_output, blob_root=self.blobs.root,
                              options=self.options, run=self.run_state, state_root=self.state_dir,
                              on_command=(lambda text: on_command(node, text)) if on_command else None)
            metadata = dict(node.executor.fn(ctx) or {})
            outputs = self._collect_outputs(node, ctx)
            if on_log is not None:
                on_log(node, ctx.log_text)
        except CorruptBlob as err:
            return NodeOutcome(node.id, "failed", key=key, corrupt_blob=err.digest,
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
        result = ActionResult.create(Status.OK, node.id, outputs=outputs, metadata=metadata,
                                     summary=ctx.summary_text)
        outcome = NodeOutcome(node.id, "ran", key=key, outputs=result.outputs, metadata=result.metadata,
                              summary=result.summary, output_digest=result.output_digest(),
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

    def _collect_outputs(self, node: Node, ctx: ExecContext) -> dict[str, OutputBlob]:
        outputs: dict[str, OutputBlob] = {}
        for name in node.outputs:
            path = ctx.out_dir / name
            if not path.is_file():
                raise ActionFailed(f"did not produce its declared output '{name}'", details=ctx.log_text)
            executable = bool(path.stat().st_mode & 0o111)
            sha, size = self.blobs.put_file(path, move=True)
            outputs[name] = OutputBlob(sha, size, executable)
        return outputs

    def _record(self, key: str, node: Node, manifest: Manifest, outcome: NodeOutcome, log: str) -> None:
        record = ActionResult.create(
            Status.OK if outcome.status == "ran" else Status.FAILED, node.id, outputs=outcome.outputs,
            metadata=outcome.metadata, summary=outcome.summary, message=outcome.message, log_tail=outcome.log_tail,
            log=self.blobs.put_bytes(log.encode())[0] if log else None, duration=outcome.duration,
            created=time.time())
        self.actions.put(key, record)
        if self.remote is not None and self.remote.writable:
            try:
                self.remote.store(key, record, {name: comp.to_json() for name, comp in manifest.items()})
            except RemoteCacheError as err:
                self.reporter.warning(f"remote cache: could not store {node.id}: {err}")


class _Walk:
    """One walk of the graph: which nodes wait on which, what is running, what is done.

    A corrupt blob met by a node (or by `deliver`) is repaired here, once per blob and run:
    its producer runs again (its stored result deleted), and every node that met the blob
    waits for that rerun and then reads the repaired bytes. Each node is reported finished
    once, so the progress counter stays right; a repaired producer is reported by a warning.
    """

    def __init__(self, scheduler: Scheduler, nodes: Mapping[str, Node], order: list[str], forced: set[str]):
        self.s = scheduler
        self.nodes = nodes
        selected = set(order)
        self.waiting_on = {nid: {d for d in nodes[nid].deps if d in selected} for nid in order}
        self.dependents: dict[str, list[str]] = {nid: [] for nid in order}
        for nid in order:
            for dep in self.waiting_on[nid]:
                self.dependents[dep].append(nid)
        self.outcomes: dict[str, NodeOutcome] = {}
        self.forced = forced
        self.ready = deque(nid for nid in order if not self.waiting_on[nid])
        self.queued = set(self.ready)  # what is in `ready`
        self.running: dict[Future, str] = {}
        self.running_keys: dict[str, str] = {}  # key -> node id computing it (single flight)
        self.same_key_waiters: dict[str, list[str]] = {}
        self.used_keys: list[str] = []
        self.reported: set[str] = set()
        self.repairing: dict[str, str] = {}  # blob sha256 -> the producer rerunning to repair it
        self.repaired: set[str] = set()
        self.attempts: dict[str | None, int] = {}

    def drain(self, pool: ThreadPoolExecutor) -> None:
        while self.ready or self.running:
            while self.ready:
                nid = self.ready.popleft()
                self.queued.discard(nid)
                self._dispatch(pool, nid)
            if not self.running:
                break
            done, _ = wait(self.running, return_when=FIRST_COMPLETED)
            for future in done:
                self._collect(self.running.pop(future), future.result())

    def _release(self, nid: str) -> None:
        if nid not in self.queued:
            self.queued.add(nid)
            self.ready.append(nid)

    def finish(self, nid: str, outcome: NodeOutcome) -> None:
        self.outcomes[nid] = outcome
        if nid in self.reported:
            outcome.detail = outcome.detail or "rebuilt to repair a corrupt output"
            verb = "rebuilt" if outcome.ok else "could not rebuild"
            self.s.reporter.warning(f"{verb} {nid} to repair its corrupt output ({outcome.duration:.2f} s)"
                                    + ("" if outcome.ok else f": {outcome.message}"))
        else:
            self.reported.add(nid)
            self.s.reporter.node_finished(self.nodes[nid], outcome)
        for sha in [sha for sha, producer in self.repairing.items() if producer == nid]:
            del self.repairing[sha]
            self.repaired.add(sha)
        for dependent in self.dependents[nid]:
            pending = self.waiting_on[dependent]
            if nid in pending:
                pending.discard(nid)
                if not pending:
                    self._release(dependent)

    def _dispatch(self, pool: ThreadPoolExecutor, nid: str) -> None:
        if self.waiting_on[nid]:
            return  # a repair it must wait for began after it was queued
        node = self.nodes[nid]
        blocked = [d for d in node.deps if d in self.outcomes and not self.outcomes[d].ok]
        if blocked:
            self.finish(nid, NodeOutcome(nid, "skipped", message=f"dependency {blocked[0]} did not succeed"))
            return
        manifest = node_manifest(node, self._output_digest, self._after_digest)
        key = key_of(manifest)
        use_cache = node.cacheable and nid not in self.forced
        if use_cache:
            cached = self.s._lookup(nid, key)
            if cached is not None:
                self.used_keys.append(key)
                self.finish(nid, cached)
                return
            if key in self.running_keys:
                self.same_key_waiters.setdefault(key, []).append(nid)
                return
        self.running_keys[key] = nid
        # the worker reads only its dependencies' outcomes: hand it those (a copy of every
        # outcome per node would make large cold builds quadratic)
        mine = {dep: self.outcomes[dep] for dep in node.deps if dep in self.outcomes}
        future = pool.submit(self.s._fetch_or_execute, node, key, manifest, mine, use_cache)
        self.running[future] = nid

    def _output_digest(self, ref: OutputRef) -> str:
        return self.outcomes[ref.node_id].outputs[ref.name][0]

    def _after_digest(self, node_id: str) -> str:
        return after_key(self.outcomes[node_id])

    def _collect(self, nid: str, outcome: NodeOutcome) -> None:
        key = outcome.key or ""
        if self.running_keys.get(key) == nid:
            del self.running_keys[key]
        if outcome.corrupt_blob is not None and self.repair(outcome.corrupt_blob, nid):
            return  # it runs again once the blob is repaired
        self.finish(nid, outcome)
        for waiter in self.same_key_waiters.pop(key, []):
            self.finish(waiter, _shared(outcome, nid, waiter))

    def repair(self, sha: str, consumer: str | None) -> bool:
        """Have blob `sha` rebuilt by its producer; `consumer` (None: `deliver`) runs again after.
        False when there is nothing to do: no producer of that blob, or repaired too often."""
        self.attempts[consumer] = self.attempts.get(consumer, 0) + 1
        if self.attempts[consumer] > _MAX_REPAIRS:
            return False
        producer = self.repairing.get(sha)
        if producer is None and sha in self.repaired:
            if consumer is not None:
                self._release(consumer)  # repaired since it looked: read it again
            return True
        if producer is None:
            producer = self._producer_of(sha, consumer)
            if producer is None:
                return False
            previous = self.outcomes[producer]
            if previous.key:
                self.s.actions.delete(previous.key)
            self.s.blobs.delete(sha)
            self.s.reporter.warning(f"corrupt blob sha256:{sha[:16]} (output of {producer}) removed; "
                                    f"rebuilding {producer}")
            self.repairing[sha] = producer
            self.forced.add(producer)
            self.waiting_on[producer] = set()
            self._release(producer)
        if consumer is not None:
            self.waiting_on[consumer].add(producer)
            if consumer not in self.dependents[producer]:
                self.dependents[producer].append(consumer)
        return True

    def _producer_of(self, sha: str, consumer: str | None) -> str | None:
        """The finished node whose output `sha` is: a dependency of the consumer first."""
        candidates = list(self.nodes[consumer].deps) if consumer is not None else []
        candidates += [nid for nid in self.outcomes if nid not in candidates]
        for nid in candidates:
            outcome = self.outcomes.get(nid)
            if outcome is not None and outcome.ok and any(out[0] == sha for out in outcome.outputs.values()):
                return nid
        return None


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


def _from_record(nid: str, key: str, record: ActionResult, source: str) -> NodeOutcome:
    """The outcome a stored result stands for: a success, or a failure the inputs caused."""
    if record.ok:
        return NodeOutcome(nid, "cached", key=key, outputs=record.outputs, metadata=record.metadata,
                           summary=record.summary, output_digest=record.output_digest(),
                           cached_from=_other(record.node, nid), source=source)
    return NodeOutcome(nid, "failed", key=key, metadata=record.metadata, message=record.message,
                       log_tail=record.log_tail, cached_from=_other(record.node, nid),
                       detail="cached failure", source=source)


def _shared(outcome: NodeOutcome, source: str, nid: str) -> NodeOutcome:
    if outcome.ok:
        return NodeOutcome(nid, "cached", key=outcome.key, outputs=outcome.outputs, metadata=outcome.metadata,
                           summary=outcome.summary, output_digest=outcome.output_digest, cached_from=source)
    return NodeOutcome(nid, "failed", key=outcome.key, message=outcome.message, log_tail=outcome.log_tail,
                       cached_from=source, detail=f"same action as {source}")


def _other(source: str | None, nid: str) -> str | None:
    """Where a cached result came from, when that is not the node itself."""
    return source if source != nid else None


def _tail(text: str) -> str:
    return "\n".join(text.rstrip("\n").splitlines()[-_LOG_TAIL_LINES:])
