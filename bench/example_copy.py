"""A copy of the repository's example workspace in a temp dir, for benchmarks that build it."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GRAPHBUILD = [sys.executable, "-m", "graphbuild"]


def services_env() -> dict[str, str]:
    """Start (or reuse) the Docker engine, registry and base image; their variables."""
    out = subprocess.run(["bash", str(REPO / "scripts/workspace-env.sh")], check=True, capture_output=True,
                         text=True).stdout
    env = dict(os.environ)
    for line in out.splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            env[key] = value.strip("'\"")
    return env


def copy_example(dest: Path, push_prefix: str) -> Path:
    subprocess.run(["bash", str(REPO / "scripts/example-repos.sh")], check=True, capture_output=True)
    dest.mkdir(parents=True)
    shutil.copy(REPO / "graphbuild.toml", dest)
    for name in ("envs", "libs", ".repos", ".bases"):
        shutil.copytree(REPO / name, dest / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "graphbuild-out"))
    build = dest / "envs/BUILD.envs"
    build.write_text(re.sub(r'push = "graphbuild-examples/', f'push = "{push_prefix}/', build.read_text()))
    return dest


def graphbuild(args: list[str], *, cwd: Path, env: dict[str, str]) -> tuple[dict, float]:
    started = time.monotonic()
    proc = subprocess.run([*GRAPHBUILD, *args, "--json", "-C", str(cwd)], capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - started
    try:
        document = json.loads(proc.stdout)
    except ValueError:
        command = " ".join(args)
        raise SystemExit(f"graphbuild {command} printed no JSON (exit {proc.returncode}):\n{proc.stderr}") from None
    if proc.returncode != 0:
        raise SystemExit(f"graphbuild {' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-3000:]}")
    return document, elapsed
