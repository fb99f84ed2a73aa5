"""`ExecContext`: what an executor sees while its node runs."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from graphbuild.cache import state as cache_state
from graphbuild.cache.atomic import write_bytes
from graphbuild.execution.processes import run_process
from graphbuild.nodes import LOCK_PHASE, ActionFailed, FileRef, Node, OutputRef, rebuild

if TYPE_CHECKING:
    from graphbuild.cache.runs import Run


class ExecContext:
    def __init__(self, node: Node, workspace_root: Path, workdir: Path,
                 resolve_output: Callable[[OutputRef], Path], *, blob_root: Path | None = None,
                 options: Mapping[str, Any] | None = None, run: Run | None = None,
                 state_root: Path | None = None):
        self.node = node
        self._state_root = state_root
        self._run = run
        #: What the command line asked of executors beyond the inputs (`lock --upgrade`); only
        #: non-cacheable executors may let it change their result.
        self.options: Mapping[str, Any] = dict(options or {})
        #: Where resolved outputs live: each is a file named by its sha256 (an OCI `blobs/`).
        self.blob_root = blob_root
        self.workspace_root = workspace_root
        self.workdir = workdir
        self.out_dir = workdir / "out"
        self.scratch = workdir / "scratch"
        self.out_dir.mkdir(parents=True)
        self.scratch.mkdir()
        self._resolve_output = resolve_output
        self._log: list[str] = []
        self._summary = ""
        self.inputs: Mapping[str, Any] = {k: self._resolve(v) for k, v in node.inputs.items()}
        #: Values that tell the executor where or how to run but cannot change its result
        #: (the image a test runs in, for instance); they are not part of the key.
        self.unkeyed: Mapping[str, Any] = {k: self._resolve(v) for k, v in node.unkeyed.items()}

    def _resolve(self, value: Any) -> Any:
        return rebuild(value, self._resolve_leaf)

    def _resolve_leaf(self, value: Any) -> Any:
        if isinstance(value, FileRef):
            return self.workspace_root / value.path
        if isinstance(value, OutputRef):
            return self._resolve_output(value)
        return value

    def path(self, name: str) -> Path:
        value = self.inputs[name]
        if not isinstance(value, Path):
            raise TypeError(f"input '{name}' of {self.node.id} is not a single file")
        return value

    def out(self, name: str) -> Path:
        """Where to write declared output `name`."""
        if name not in self.node.outputs:
            raise ActionFailed(f"{self.node.id} writes undeclared output '{name}'")
        target = self.out_dir / name
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def write_source(self, name: str, data: bytes) -> Path:
        """Atomically rewrite a file of the node's package (lock nodes only: builds never
        touch the workspace)."""
        if self.node.phase != LOCK_PHASE:
            raise ActionFailed(f"{self.node.id} is not a lock node and cannot write workspace files")
        if name.startswith("/") or ".." in name.split("/"):
            raise ActionFailed(f"{self.node.id}: {name!r} is outside its package")
        dest = self.workspace_root / self.node.label.package / name
        write_bytes(dest, data)
        return dest

    def state_dir(self, name: str) -> Path:
        """A directory the rule owns in the cache, kept across runs and shared by every node and
        process (lock what several may write at once): for what is neither input nor output,
        such as where pushed blobs already are. `graphbuild clean` deletes it."""
        return cache_state.state_dir(self._state_root_or_fail(), name)

    def state_entry(self, name: str, entry: str, *, blobs: Iterable[str]) -> Path:
        """`state_dir(name)/entry/`, for what refers to blobs of the store (an OCI layout
        linking them): `blobs` (sha256s) are recorded with it, and `graphbuild cache gc`
        deletes the entry when it deletes one of them."""
        return cache_state.state_entry(self._state_root_or_fail(), name, entry, blobs)

    def _state_root_or_fail(self) -> Path:
        if self._state_root is None:
            raise ActionFailed(f"{self.node.id}: no state directory in this run (no cache)")
        return self._state_root

    @property
    def run_id(self) -> str:
        """The id of this graphbuild run (one per process that builds; `""` outside one). Label
        what outlives a node with it (a container: `org.graphbuild.run=<run id>`) so that a later
        run can tell whether its owner is still running (`run_is_alive`)."""
        return self._run.id if self._run is not None else ""

    def run_is_alive(self, run_id: str) -> bool:
        """Whether the graphbuild run `run_id` is still running: this run; another run of this
        cache while its process lives (it holds a lock the kernel releases when it dies, SIGKILL
        included); a run of another cache on this machine while its process lives. A run of
        another machine, or an id this version did not make, counts as alive: remove what a run
        left only when this answers False."""
        if self._run is None:
            return True
        return self._run.alive(run_id)

    def summarize(self, text: str) -> None:
        """One line on what the node did ("pushed ..."), shown beside it; not part of what its
        dependents key on (metadata is)."""
        self._summary = " ".join(str(text).split())

    @property
    def summary_text(self) -> str:
        return self._summary

    def log(self, text: str) -> None:
        if text:
            self._log.append(text if text.endswith("\n") else text + "\n")

    @property
    def log_text(self) -> str:
        return "".join(self._log)

    def run(self, argv: Sequence[str] | str, *, cwd: Path | None = None, env: Mapping[str, str] | None = None,
            timeout: float | None = None, shell: bool = False, check: bool = True,
            deterministic_failure: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a command, its output going to the node's log; a non-zero exit fails the node."""
        full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.scratch),
                    "TMPDIR": str(self.scratch), "LANG": "C.UTF-8"}
        full_env.update(env or {})
        try:
            # its own process group, killed whole on a timeout; it dies with graphbuild
            proc = run_process(argv, cwd=cwd or self.scratch, env=full_env, shell=shell, timeout=timeout,
                               merge_stderr=True)
        except OSError as err:
            raise ActionFailed(f"cannot run {_show(argv)}: {err}") from None
        except subprocess.TimeoutExpired as err:
            self.log(err.output or "")
            raise ActionFailed(f"timed out after {timeout} s: {_show(argv)}") from None
        self.log(proc.stdout)
        if check and proc.returncode != 0:
            raise ActionFailed(f"command exited with {proc.returncode}: {_show(argv)}",
                               deterministic=deterministic_failure)
        return proc


def _show(argv: Sequence[str] | str) -> str:
    text = argv if isinstance(argv, str) else " ".join(argv)
    return text if len(text) < 200 else text[:199] + "…"
