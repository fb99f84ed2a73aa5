"""Containers graphbuild starts in the Docker engine: their limits, their privileges, and who owns them.

`Resources` is the spec's `resources = {"cpus": 2, "memory": "4g", "pids": 512}` (validated when
the BUILD file loads; unset fields keep their defaults, `None` lifts a limit).  `ContainerSpec`
is everything about a container that reaches the process inside it besides the image and the
command; rules put it in the key of the node that runs the container, and the executor passes
exactly that to the engine.

Every container is labelled with the run that started it (`org.graphbuild.run`), the node
(`org.graphbuild.node`) and the owning process (`org.graphbuild.owner`: host, boot, pid and
the pid's start time).  A run killed with SIGKILL cannot remove its containers; the next run
that starts one removes those of dead runs first, never those of a run still alive.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import uuid
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Limits of a test container when the environment sets none (README, "Images, tests in the image").
DEFAULT_MEMORY = 4 << 30
DEFAULT_PIDS = 512
#: Who tests run as unless the environment says otherwise: nobody:nogroup, by number (the
#: image need not have a passwd entry for it).
DEFAULT_TEST_USER = "65534:65534"
TMPFS_SIZE = "512m"

RUN_LABEL = "org.graphbuild.run"
NODE_LABEL = "org.graphbuild.node"
OWNER_LABEL = "org.graphbuild.owner"

_UNITS = {"": 1, "b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", re.IGNORECASE)
#: Docker refuses less than 6 MiB.
_MIN_MEMORY = 6 << 20


def parse_memory(value: Any) -> int:
    """`"4g"`, `"512m"`, `"1.5GiB"`, `"256MB"` or a number of bytes -> bytes (units of 1024)."""
    if isinstance(value, bool):
        raise ValueError("memory must be a size such as \"512m\" or \"4g\", not a boolean")
    if isinstance(value, int):
        size = value
    elif isinstance(value, str) and (match := _MEMORY.match(value)):
        size = int(float(match.group(1)) * _UNITS[match.group(2).lower()])
    else:
        raise ValueError(f"memory must be a size such as \"512m\" or \"4g\" (units b, k, m, g, t), got {value!r}")
    if size < _MIN_MEMORY:
        raise ValueError(f"memory must be at least 6m (the Docker engine refuses less), got {value!r}")
    return size


class Resources(BaseModel):
    """What a container may use. Unset: the default; `None`: no limit."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpus: float | None = Field(default=None, gt=0, le=1024,
                               description="CPUs the container may use (fractions allowed); default: no limit.")
    memory: int | None = Field(default=DEFAULT_MEMORY, description="Memory limit (\"512m\", \"4g\"; units of "
                               "1024), swap included: over it the kernel kills the biggest process. Default 4g.")
    pids: int | None = Field(default=DEFAULT_PIDS, ge=1, le=4_194_304,
                             description="Most processes and threads at once (fork bombs stop there). Default 512.")

    @field_validator("memory", mode="before")
    @classmethod
    def _memory(cls, value: Any) -> int | None:
        return None if value is None else parse_memory(value)


def check_user(value: str) -> str:
    """`root`, `UID`, `UID:GID` or a user name the image knows."""
    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,31})?", value):
        raise ValueError(f"expected root, UID, UID:GID or a user name, got {value!r}")
    return value


def is_root(user: str) -> bool:
    return user.split(":", 1)[0] in ("root", "0")


def container_spec_for_tests(resources: Resources, user: str) -> dict[str, Any]:
    """The options of a test container, as plain data (a node input: all of it is keyed).

    No network, a read-only root with a tmpfs `/tmp`, `no-new-privileges`, the limits of
    `resources`; as any user but root, every capability dropped. `user = "root"` runs as uid 0
    with the engine's default capabilities (what "root in a container" means to most tests).
    """
    return {
        "user": "0:0" if user == "root" else user,
        "cap_drop": [] if is_root(user) else ["ALL"],
        "security_opt": ["no-new-privileges"],
        "network_mode": "none",
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={TMPFS_SIZE},mode=1777"},
        "memory": resources.memory,
        "pids": resources.pids,
        "cpus": resources.cpus,
    }


def engine_options(spec: Mapping[str, Any]) -> dict[str, Any]:
    """`ContainerSpec` data -> keyword arguments of the docker SDK's `containers.run`."""
    options: dict[str, Any] = {
        "user": spec["user"], "network_mode": spec["network_mode"], "read_only": spec["read_only"],
        "tmpfs": dict(spec["tmpfs"]), "security_opt": list(spec["security_opt"]),
    }
    if spec["cap_drop"]:
        options["cap_drop"] = list(spec["cap_drop"])
    if spec["memory"] is not None:
        options["mem_limit"] = spec["memory"]
        options["memswap_limit"] = spec["memory"]  # no swap beyond the limit
    if spec["pids"] is not None:
        options["pids_limit"] = spec["pids"]
    if spec["cpus"] is not None:
        options["nano_cpus"] = int(spec["cpus"] * 1e9)
    return options


# -- who owns a container --------------------------------------------------------------------


@lru_cache(maxsize=1)
def _this_host() -> str:
    boot = ""
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as handle:
        boot = handle.read().strip()[:8]
    return f"{socket.gethostname()}/{boot}"


def _start_time(pid: int) -> str | None:
    """A process's start time (clock ticks since boot): with the pid, it names one process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            stat = handle.read()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def owner() -> str:
    """This process, as `host/boot/pid/start`."""
    pid = os.getpid()
    return f"{_this_host()}/{pid}/{_start_time(pid) or '?'}"


def owner_alive(value: str | None) -> bool | None:
    """Whether the process an owner label names still runs; None when this host cannot tell
    (another machine's engine client, or no label)."""
    if not value:
        return None
    parts = value.rsplit("/", 2)  # host/boot, pid, start
    if len(parts) != 3 or parts[0] != _this_host() or not parts[1].isdigit():
        return None
    return _start_time(int(parts[1])) == parts[2]


def run_identity(ctx: Any) -> tuple[str, Callable[[str], bool] | None]:
    """The run a node executes in, and the engine's test of whether a run is alive.

    `ExecContext.run_id` / `run_is_alive` come with the engine's run registry; without them
    the run is this process (its owner label says the same).
    """
    run_id = getattr(ctx, "run_id", None)
    alive = getattr(ctx, "run_is_alive", None)
    if isinstance(run_id, str) and run_id and callable(alive):
        return run_id, alive
    return f"process:{owner()}", None


def container_labels(run_id: str, node_id: str) -> dict[str, str]:
    return {RUN_LABEL: run_id, NODE_LABEL: node_id, OWNER_LABEL: owner()}


def container_name(node_id: str) -> str:
    """A readable, unique name: `graphbuild-<node>-<random>`."""
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", node_id.lstrip("/")).strip("_.-")[:60] or "node"
    return f"graphbuild-{slug}-{uuid.uuid4().hex[:12]}"


def is_dead(labels: Mapping[str, str], run_is_alive: Callable[[str], bool] | None, my_run: str) -> bool:
    """Whether a labelled container's run is over (so the container is a leftover).

    A container of this run, or of a process this host sees running, is never dead; else the
    engine's registry decides, and without one only a process this host sees gone is dead.
    """
    run_id = labels.get(RUN_LABEL, "")
    if not run_id or run_id == my_run:
        return False
    local = owner_alive(labels.get(OWNER_LABEL))
    if local is True:
        return False
    if run_is_alive is not None:
        try:
            return not run_is_alive(run_id)
        except Exception:  # a registry that cannot answer never removes anything
            return False
    return local is False


def remove_dead_runs_containers(client: Any, my_run: str, run_is_alive: Callable[[str], bool] | None,
                                log: Callable[[str], None]) -> list[str]:
    """Remove graphbuild's containers left by runs that are over; return their names."""
    from docker.errors import APIError, NotFound

    removed = []
    try:
        found = client.containers.list(all=True, filters={"label": RUN_LABEL})
    except APIError:
        return removed
    for container in found:
        labels = container.labels or {}
        if not is_dead(labels, run_is_alive, my_run):
            continue
        with contextlib.suppress(NotFound, APIError):
            container.remove(force=True)
            removed.append(container.name)
            log(f"removed container {container.name} of {labels.get(NODE_LABEL, '?')}, left by run "
                f"{labels.get(RUN_LABEL)} which is no longer running")
    return removed
