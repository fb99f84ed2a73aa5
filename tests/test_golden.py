"""Golden files: `--help` of every verb, and the messages of small failing projects.

tests/golden/help/NAME.txt is `graphbuild help VERB` (NAME: the verb's words joined by "-";
graphbuild.txt is `graphbuild --help`), at 100 columns.

tests/golden/errors/CASE/ is a failing project in Meson's style: `project/` (the workspace's
files), `command` (the arguments, one line, shell-quoted) and `expected` (the exit code on the
first line, then stderr, with the workspace's path written <ws> and the cache's <cache>).

After a deliberate change of a message or an option, regenerate and review the diff:

    GRAPHBUILD_REGENERATE_GOLDEN=1 .venv/bin/python -m pytest -q tests/test_golden.py
    git diff tests/golden/
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import pytest

from graphbuild.cli.main import make_parser
from graphbuild.cli.registry import all_verbs

GOLDEN = Path(__file__).parent / "golden"
REGENERATE = os.environ.get("GRAPHBUILD_REGENERATE_GOLDEN") == "1"
ERROR_CASES = sorted(p.name for p in (GOLDEN / "errors").iterdir() if (p / "command").is_file())


def _topics() -> list[tuple[str, ...]]:
    topics: list[tuple[str, ...]] = [()]
    parser = make_parser(all_verbs(None))
    verbs = next(a for a in parser._actions if a.dest == "verb").choices
    for name, verb_parser in verbs.items():
        topics.append((name,))
        for action in verb_parser._actions:
            if action.__class__.__name__ == "_SubParsersAction":
                topics.extend((name, sub) for sub in action.choices)
    return topics


def check(path: Path, actual: str) -> None:
    if REGENERATE or not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(actual)
        if not REGENERATE:
            pytest.fail(f"{path} did not exist; written now: review and commit it")
        return
    assert actual == path.read_text(), (f"{path} differs; if the change is meant, regenerate with "
                                        "GRAPHBUILD_REGENERATE_GOLDEN=1 and review `git diff tests/golden/`")


@pytest.mark.parametrize("topic", _topics(), ids=lambda t: "-".join(t) or "graphbuild")
def test_help(ws, monkeypatch, topic):
    monkeypatch.setenv("COLUMNS", "100")
    result = ws.gb("help", *topic)
    assert result.exit_code == 0, result.stderr
    check(GOLDEN / "help" / f"{'-'.join(topic) or 'graphbuild'}.txt", result.stdout)


def test_every_help_file_is_a_verb():
    names = {"-".join(t) or "graphbuild" for t in _topics()}
    assert {p.stem for p in (GOLDEN / "help").glob("*.txt")} <= names


@pytest.mark.parametrize("case", ERROR_CASES)
def test_error_message(ws, monkeypatch, case):
    monkeypatch.setenv("COLUMNS", "100")
    directory = GOLDEN / "errors" / case
    (ws.root / "graphbuild.toml").unlink()
    ws.copy_tree(directory / "project")
    result = ws.gb(*shlex.split((directory / "command").read_text()))
    assert "Traceback" not in result.stderr
    assert result.exit_code == 2, f"{case}: a failing project must exit 2 (bad input)\n{result.stderr}"
    stderr = result.stderr.replace(str(ws.cache), "<cache>").replace(str(ws.root), "<ws>")
    check(directory / "expected", f"{result.exit_code}\n{stderr}")
