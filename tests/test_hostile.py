"""The hostile corpus: BUILD files, Starlark files, plugins and configs written to break out,
hang, exhaust memory or crash graphbuild (tests/hostile/*, one directory per case).

Each case is a workspace (its files, with `@CANARY@` and `@OUTSIDE@` replaced by paths
outside it) and an `expect.json`: the location and a fragment of the message graphbuild must
answer with.  Every case goes through the real CLI, `graphbuild query //... --json` and
`graphbuild build //...`, and must: exit 2; name the file and line (the expected location);
print no traceback; leave no side effect (the canary file every payload tries to write is
absent, nothing was built, and no process is left but graphbuild's own Starlark
evaluator); and finish within the case's time limit (pytest-timeout).

`expect.json` keys: `location`, `message`; optional `hint` (a fragment), `links` (path ->
target, made as symbolic links), `fifos` (paths made as named pipes), `only` ("query" or
"build").  A file `NAME.gen` holds a Python expression of string literals (and range()) whose value is
written to NAME (a 33 MiB file or 100,000 nested brackets need not be checked in).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import TestWorkspace

CORPUS = Path(__file__).parent / "hostile"
CASES = sorted(p.name for p in CORPUS.iterdir() if (p / "expect.json").is_file())

EVIL_STAR = "def evil():\n    pass\n"
EVIL_PLUGIN = 'open("@CANARY@", "w").write("plugin code ran")\n'


def materialize(case: Path, ws: TestWorkspace, outside: Path, canary: Path) -> dict:
    """Write `case` into the workspace; return its expectations."""
    outside.mkdir(exist_ok=True)
    (outside / "evil.star").write_text(EVIL_STAR)
    (outside / "secret.txt").write_text("secret\n")
    (outside / "evil.py").write_text(EVIL_PLUGIN.replace("@CANARY@", str(canary)))

    def fill(text: str) -> str:
        return text.replace("@CANARY@", str(canary)).replace("@OUTSIDE@", str(outside))

    expect = json.loads((case / "expect.json").read_text())
    for path in sorted(case.rglob("*")):
        rel = path.relative_to(case).as_posix()
        if path.is_dir() or rel == "expect.json":
            continue
        if rel.endswith(".gen"):
            content = eval(path.read_text(), {"__builtins__": {}, "range": range})  # the corpus's own data
            target = ws.root / rel.removesuffix(".gen")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content.encode("utf-8", "surrogateescape"))
            continue
        target = ws.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        data = path.read_bytes()
        try:
            target.write_bytes(fill(data.decode("utf-8")).encode())
        except UnicodeDecodeError:
            target.write_bytes(data)
    for rel, link_target in expect.get("links", {}).items():
        link = ws.root / rel
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(fill(link_target), link)
    for rel in expect.get("fifos", []):
        (ws.root / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mkfifo(ws.root / rel)
    return expect


def child_processes() -> dict[int, str]:
    """This process's children that are still there: pid -> command line."""
    found: dict[int, str] = {}
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids = (task / "children").read_text().split()
        except OSError:
            continue
        for pid in pids:
            try:
                found[int(pid)] = (Path("/proc") / pid / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
    return found


def unexpected_processes(before: dict[int, str]) -> list[str]:
    return [cmd for pid, cmd in child_processes().items()
            if pid not in before and "graphbuild.loading.worker" not in cmd]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("name", CASES)
def test_hostile_input_is_a_located_error_without_side_effects(ws, tmp_path, name):
    canary = tmp_path / "canary"
    expect = materialize(CORPUS / name, ws, tmp_path / "outside", canary)
    location, fragment = expect["location"], expect["message"]
    before = child_processes()

    if expect.get("only") != "build":
        result = ws.gb("query", "//...", "--json")
        assert result.exit_code == 2, result.stderr + result.stdout
        assert "Traceback" not in result.stderr
        error = result.json["error"]
        first = error["errors"][0] if error.get("errors") else error
        assert first["location"] == location, first
        assert fragment in first["message"], first
        if "hint" in expect:
            assert expect["hint"] in (first["hint"] or ""), first

    if expect.get("only") != "query":
        result = ws.gb("build", "//...")
        assert result.exit_code == 2, result.stderr
        assert "Traceback" not in result.stderr
        # what the file printed comes first; then the error
        errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
        assert errors and errors[0].startswith(f"error: {location}: "), result.stderr[-2000:]
        assert fragment in result.stderr

    assert not canary.exists(), canary.read_text()
    assert not (ws.root / "graphbuild-out").exists()
    assert unexpected_processes(before) == []


def test_the_corpus_is_large_enough():
    assert len(CASES) >= 100
