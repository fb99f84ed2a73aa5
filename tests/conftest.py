"""Test helpers: small workspaces written into a temp dir, and graphbuild run against them."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from docker_env import ServicesUnavailable, start_services
from hypothesis import settings as hypothesis_settings

from graphbuild.cli.main import main

# -- the fast subset ------------------------------------------------------------------------------
# `-m "not docker and not network"` (no Docker) is what engineers run after each change: it
# must take under a minute. There, property tests try FAST_EXAMPLES examples, repeated trials
# run once, and tests marked `slow` are left out; the whole suite (no -m) runs them in full.

FAST_EXAMPLES = 20
hypothesis_settings.register_profile("fast", max_examples=FAST_EXAMPLES)
hypothesis_settings.register_profile("full")
_fast = False


def pytest_configure(config: pytest.Config) -> None:
    global _fast
    markexpr = config.getoption("markexpr", "") or ""
    _fast = "not docker" in markexpr and "slow" not in markexpr
    if config.getoption("--hypothesis-profile", None) is None:  # hypothesis' own option wins
        hypothesis_settings.load_profile("fast" if _fast else "full")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if not _fast:
        return
    slow = [item for item in items if item.get_closest_marker("slow")]
    if slow:
        config.hook.pytest_deselected(items=slow)
        items[:] = [item for item in items if not item.get_closest_marker("slow")]


def examples(full: int) -> int:
    """How many examples a property test tries: `full` in the whole suite, fewer in the fast subset."""
    return min(full, FAST_EXAMPLES) if _fast else full


def trials(full: int) -> int:
    """How many times a randomised trial (two processes at once...) repeats: once in the fast subset."""
    return 1 if _fast else full


@dataclass
class Result:
    exit_code: int
    stdout: str
    stderr: str

    @property
    def json(self) -> Any:
        return json.loads(self.stdout)

    def statuses(self) -> dict[str, str]:
        """node id -> status, from a `--json` build/test/run."""
        return {n["id"]: n["status"] for n in self.json["nodes"]}

    def ran(self) -> set[str]:
        return {nid for nid, status in self.statuses().items() if status == "ran"}


class TestWorkspace:
    """A workspace in a temp dir with its own cache dir."""

    def __init__(self, root: Path, cache: Path):
        self.root = root
        self.cache = cache
        root.mkdir(parents=True, exist_ok=True)
        (root / "graphbuild.toml").touch()

    def copy_tree(self, source: Path) -> None:
        """Write every file under `source` into the workspace at the same relative path (a
        checked-in project such as tests/golden/errors/CASE/project)."""
        for path in sorted(source.rglob("*")):
            if path.is_file():
                target = self.root / path.relative_to(source)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(path.read_bytes())

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def gb(self, *args: str, cwd: Path | None = None) -> Result:
        """Run graphbuild in this process (fast); `--json` output parsed by `Result.json`."""
        out, err = io.StringIO(), io.StringIO()
        argv = [*args, "--cache-dir", str(self.cache), "-C", str(cwd or self.root)]
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv)
            except SystemExit as exc:  # argparse usage errors
                code = int(exc.code or 0)
        return Result(code, out.getvalue(), err.getvalue())

    def gb_process(self, *args: str, **kwargs: Any) -> subprocess.Popen:
        """Run graphbuild as a separate process (for kill and concurrency tests)."""
        argv = [sys.executable, "-m", "graphbuild", *args, "--cache-dir", str(self.cache), "-C", str(self.root)]
        return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"}, **kwargs)


@pytest.fixture
def ws(tmp_path: Path) -> TestWorkspace:
    return TestWorkspace(tmp_path / "ws", tmp_path / "cache")


@pytest.fixture(scope="session")
def registry() -> Iterator[str]:
    """The loopback registry of scripts/workspace-env.sh ("127.0.0.1:5000"); its exports are set
    in os.environ meanwhile. Under CI a failure to start it fails the test, elsewhere skips it."""
    try:
        exports = start_services()
    except ServicesUnavailable as err:
        if os.environ.get("CI"):
            pytest.fail(f"the registry is required under CI: {err}")
        pytest.skip(f"no registry (scripts/workspace-env.sh failed): {err}")
    patch = pytest.MonkeyPatch()
    for name, value in exports.items():
        patch.setenv(name, value)
    yield exports["GRAPHBUILD_REGISTRY"]
    patch.undo()
