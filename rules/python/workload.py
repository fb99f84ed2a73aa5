"""Running a workload in an environment's image: what `graphbuild exec` hands the Docker engine.

An environment with a base declares a `WorkloadInfo`: the node that loads its image into the
engine and the `resources` its containers get (the same limits its test containers get). The
command line is built here, as data, so that it can be tested without an engine and so that
a cluster job (a Kubernetes Job, a GitLab job) can be written from the same values.

The container: the directory given (the current one by default) mounted read-only at
`/work`, which is the working directory; `/tmp` a tmpfs (`HOME=/tmp`); the caller's uid:gid,
every capability dropped and `no-new-privileges`; no network unless asked (`--network host`);
the environment's memory, pids and cpus limits; the caller's terminal attached when stdin
and stdout are one. The engine's exit status is the command's.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from graphbuild.api import Field, Provider
from graphbuild.rules.oci.container import RUN_LABEL, TMPFS_SIZE, Resources

#: Where the directory of a workload is mounted in its container (read-only), and its working directory.
WORKLOAD_DIR = "/work"
NETWORKS = ("none", "host")
EXEC_LABEL = "org.graphbuild.exec"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class WorkloadInfo(Provider):
    """What running a command in an environment needs: the node loading its image, its limits."""

    label: str
    load_node: str = Field(description="id of the node that loads the image into the Docker engine")
    resources: dict[str, Any] = Field(description="memory (bytes), pids, cpus: None means no limit")


def parse_env_flags(values: Sequence[str]) -> dict[str, str]:
    """`--env NAME=VALUE` (or `--env NAME`, taking the caller's value, as `docker run -e` does)."""
    found: dict[str, str] = {}
    for value in values:
        name, sep, text = value.partition("=")
        if not _ENV_NAME.match(name):
            raise ValueError(f"--env {value!r}: expected NAME=VALUE with NAME a variable name "
                             "(letters, digits, _; not starting with a digit)")
        if not sep:
            if name not in os.environ:
                raise ValueError(f"--env {name}: no value given and {name} is not set here")
            text = os.environ[name]
        found[name] = text
    return found


def resource_args(resources: Mapping[str, Any]) -> list[str]:
    """The limits as `docker run` flags (memory includes swap: over it the kernel kills)."""
    args: list[str] = []
    if resources.get("memory") is not None:
        args += ["--memory", str(resources["memory"]), "--memory-swap", str(resources["memory"])]
    if resources.get("pids") is not None:
        args += ["--pids-limit", str(resources["pids"])]
    if resources.get("cpus") is not None:
        args += ["--cpus", f"{resources['cpus']:g}"]
    return args


def docker_run_args(image: str, command: Sequence[str], *, directory: str, resources: Mapping[str, Any],
                    network: str = "none", env: Mapping[str, str] | None = None, tty: bool = False,
                    user: str | None = None, run_id: str = "", label: str = "") -> list[str]:
    """`docker run ...` for `command` in `image` (see the module's docstring)."""
    if network not in NETWORKS:
        raise ValueError(f"network must be one of {', '.join(NETWORKS)}, got {network!r}")
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", label.lstrip("/")).strip("_.-")[:50] or "env"
    args = ["docker", "run", "--rm", "-i", *(["-t"] if tty else []),
            "--name", f"graphbuild-exec-{slug}-{uuid.uuid4().hex[:12]}",
            "--label", f"{EXEC_LABEL}={label}", *(["--label", f"{RUN_LABEL}={run_id}"] if run_id else []),
            "--user", user or f"{os.getuid()}:{os.getgid()}", "--cap-drop", "ALL",
            "--security-opt", "no-new-privileges", "--network", network,
            "--tmpfs", f"/tmp:rw,nosuid,nodev,size={TMPFS_SIZE},mode=1777", "--env", "HOME=/tmp",
            "--mount", f"type=bind,source={directory},target={WORKLOAD_DIR},readonly", "--workdir", WORKLOAD_DIR,
            *resource_args(resources)]
    for name, value in (env or {}).items():
        args += ["--env", f"{name}={value}"]
    return [*args, image, *command]


def resources_data(resources: Resources) -> dict[str, Any]:
    return {"memory": resources.memory, "pids": resources.pids, "cpus": resources.cpus}


__all__ = ["EXEC_LABEL", "WORKLOAD_DIR", "WorkloadInfo", "docker_run_args", "parse_env_flags", "resource_args",
           "resources_data"]
