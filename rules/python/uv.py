"""Calling uv: where its binary is and how its runs are reported."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from graphbuild.api import ActionFailed, run_process


def uv_bin() -> str:
    try:
        from uv import find_uv_bin

        return find_uv_bin()
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if not found:
            raise ActionFailed("uv is not installed (pip install uv)") from None
        return found


def run_uv(args: list[str], *, cwd: Path, env: dict[str, str] | None = None,
           timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """Run uv with the caller's environment (its cache, index and proxy settings apply)."""
    full_env = {**os.environ, "UV_NO_PROGRESS": "1", **(env or {})}
    full_env.pop("VIRTUAL_ENV", None)
    try:
        return run_process([uv_bin(), *args], cwd=cwd, env=full_env, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ActionFailed(f"uv {args[0]} {args[1] if len(args) > 1 else ''} timed out after {timeout} s") from None
