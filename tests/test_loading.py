"""BUILD.envs as Starlark: what a BUILD file can do (macros, load, glob, print), and where
each target and attribute is written (the lines `why` and errors point at)."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from graphbuild.errors import Location
from graphbuild.labels import Label
from graphbuild.loading.loader import Loader
from graphbuild.loading.scan import scan
from graphbuild.loading.workspace import Workspace
from graphbuild.rules import BUILTIN_RULES

if TYPE_CHECKING:
    from conftest import TestWorkspace


def loader(ws: TestWorkspace) -> Loader:
    return Loader(Workspace.at(ws.root), BUILTIN_RULES)


def test_each_attribute_and_each_list_item_has_its_line(ws):
    ws.write("pkg/BUILD.envs", """
        # a comment (with a bracket [ and a quote ")
        genrule(
            name = "x",
            srcs = [
                "a.txt",   # ] not the end
                "b.txt",
            ] + ["c.txt"],
            outs = ("x.txt",
                    "y.txt"),
            cmd = \"\"\"cat $SRCS > $OUT (
            \"\"\",
        )
        genrule(name = "y", outs = ["o"], cmd = "true")
    """)
    target = loader(ws).target(Label("pkg", "x"))
    assert target.location == Location("pkg/BUILD.envs", 2, 1)
    lines = {attr: loc.line for attr, loc in target.attr_locations.items()}
    assert lines == {"name": 3, "srcs": 4, "srcs[0]": 5, "srcs[1]": 6, "outs": 8, "outs[0]": 8, "outs[1]": 9,
                     "cmd": 10}
    assert target.attr_location("env") == target.location  # not written: the call's line
    second = loader(ws).target(Label("pkg", "y"))
    assert second.location == Location("pkg/BUILD.envs", 13, 1)
    assert second.attr_location("outs").line == 13


def test_targets_made_in_a_loop_and_by_a_macro_point_at_their_call(ws):
    ws.write("macros/defs.star", """
        def stamped(name, words):
            genrule(name = name, outs = [name + ".txt"], cmd = "echo " + " ".join(words) + " > $OUT",
                    srcs = glob(["*.in"]))
            return package_name()
    """)
    ws.write("pkg/a.in", "a\n")
    ws.write("pkg/BUILD.envs", """
        load("//macros:defs.star", "stamped")

        [genrule(name = "g%d" % i, outs = ["g%d" % i], cmd = "true") for i in range(3)]

        where = stamped(
            name = "s",
            words = ["x", "y"],
        )
        print("macro ran in", where)
    """)
    result = ws.gb("query", "//pkg:all", "--json")
    assert result.exit_code == 0, result.stderr
    assert [t["label"] for t in result.json["targets"]] == ["//pkg:g0", "//pkg:g1", "//pkg:g2", "//pkg:s"]
    assert "pkg/BUILD.envs:9: macro ran in pkg\n" in result.stderr
    load = loader(ws)
    assert load.target(Label("pkg", "g2")).location == Location("pkg/BUILD.envs", 3, 2)
    made = load.target(Label("pkg", "s"))
    assert made.location == Location("pkg/BUILD.envs", 5, 9)  # the macro's call in the BUILD file
    assert made.attrs.srcs == ["a.in"]  # glob() in a macro globs the calling package
    assert made.attr_location("cmd") == made.location


def test_a_relative_load_is_relative_to_the_loading_file(ws):
    ws.write("macros/defs.star", 'load(":words.star", "WORDS")\n\ndef words():\n    return WORDS\n')
    ws.write("macros/words.star", 'WORDS = ["a", "b"]\n')
    ws.write("pkg/BUILD.envs", 'load("//macros:defs.star", "words")\n'
                               'genrule(name = "x", outs = words(), cmd = "true")\n')
    assert loader(ws).target(Label("pkg", "x")).attrs.outs == ["a", "b"]


def test_loaded_values_are_frozen(ws):
    ws.write("macros/defs.star", 'LIST = [1]\n')
    ws.write("pkg/BUILD.envs", 'load("//macros:defs.star", "LIST")\nLIST.append(2)\n')
    result = ws.gb("query", "//pkg:all", "--json")
    assert result.exit_code == 2
    assert result.json["error"]["location"] == "pkg/BUILD.envs:2:1"
    assert "Immutable" in result.json["error"]["message"]


def test_glob_matches_like_bazel(ws):
    for rel in ("pkg/a.txt", "pkg/b.py", "pkg/sub/c.txt", "pkg/sub/deep/d.txt", "pkg/.hidden.txt",
                "pkg/sub/other/BUILD.envs", "pkg/sub/other/e.txt", "pkg/[x].txt"):
        ws.write(rel, "x\n")
    ws.write("pkg/BUILD.envs", """
        filegroup(name = "top", srcs = glob(["*.txt"]))
        filegroup(name = "all", srcs = glob(["**/*.txt"], exclude = ["sub/deep/**"]))
        filegroup(name = "classes", srcs = glob(["[ab].*", "[!ab]*.txt"]))
    """)
    load = loader(ws)
    assert load.target(Label("pkg", "top")).attrs.srcs == ["[x].txt", "a.txt"]
    # hidden files and the subpackage //pkg/sub/other are not the package's files
    assert load.target(Label("pkg", "all")).attrs.srcs == ["[x].txt", "a.txt", "sub/c.txt"]
    assert load.target(Label("pkg", "classes")).attrs.srcs == ["[x].txt", "a.txt", "b.py"]


@pytest.mark.parametrize(("config", "build", "location", "message"), [
    ("[loading]\nmax_steps = 1000\n", "def f():\n    for i in range(100000):\n        pass\n\nf()\n",
     "pkg/BUILD.envs:2:5", "evaluation exceeded 1,000 steps"),
    ("[loading]\ntimeout = 0.2\nmax_steps = 1000000000000\n",
     "def f():\n    for i in range(2000000000):\n        pass\n\nf()\n",
     "pkg/BUILD.envs:2:5", "evaluation took longer than 0.2 s"),
], ids=["steps", "timeout"])
def test_the_evaluation_limits_are_configurable(ws, config, build, location, message):
    ws.write("graphbuild.toml", config)
    ws.write("pkg/BUILD.envs", build)
    result = ws.gb("query", "//...", "--json")
    assert result.exit_code == 2
    assert result.json["error"]["location"] == location
    assert message in result.json["error"]["message"]


def test_a_crash_is_pinned_to_its_statement_and_the_next_file_still_loads(ws):
    ws.write("bad/BUILD.envs", 'filegroup(name = "ok")\nx = 1\ny = ' + "-" * 100000 + "1\nz = 2\n")
    ws.write("good/BUILD.envs", 'filegroup(name = "fine")\n')
    result = ws.gb("query", "//bad:all", "--json")
    assert result.exit_code == 2
    assert result.json["error"]["location"] == "bad/BUILD.envs:3"
    assert "crashed the Starlark interpreter" in result.json["error"]["message"]
    assert ws.gb("query", "//good:all").exit_code == 0


def test_the_scan_finds_top_level_statements_and_unclosed_brackets():
    found = scan('x = 1\ny = [\n    2,\n]\n\ndef f():\n    return """\nz = 3\n"""\nw = (1,\n')
    assert found.statements == [1, 2, 6, 10]
    assert found.unclosed == (10, 5, "(")


def test_the_workspace_config_is_validated_with_lines(tmp_path: Path):
    (tmp_path / "graphbuild.toml").write_text('# config\n[workspace]\nignore = ["a"]\n\n[cache]\ndir = 5\n')
    with pytest.raises(Exception) as caught:
        Workspace.at(tmp_path)
    assert str(caught.value.location) == "graphbuild.toml:6"
    assert "cache.dir: Input should be a valid string" in caught.value.message


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(p) for p in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state == "Z"


def test_the_evaluator_does_not_outlive_a_killed_graphbuild(ws):
    """graphbuild killed while a BUILD file loops: its evaluator stops by its own deadline."""
    ws.write("graphbuild.toml", "[loading]\ntimeout = 2\nmax_steps = 1000000000000\n")
    ws.write("pkg/BUILD.envs", "def f():\n    for i in range(2000000000):\n        pass\n\nf()\n")
    proc = ws.gb_process("query", "//...")
    deadline = time.monotonic() + 20
    workers: set[int] = set()
    while not workers and time.monotonic() < deadline:
        workers = {pid for pid in _children(proc.pid)
                   if b"graphbuild.loading.worker" in Path(f"/proc/{pid}/cmdline").read_bytes()}
        time.sleep(0.05)
    assert workers, "no evaluator process seen"
    time.sleep(0.3)  # it is evaluating now
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 20
    while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_gone(pid) for pid in workers)


def test_a_crash_in_one_package_of_many_is_charged_to_that_package(ws):
    """`//...` asks for every package at once; the one that kills the evaluator gets the error,
    the packages queued behind it are evaluated again by a new one."""
    ws.write("a/BUILD.envs", 'filegroup(name = "a")\n')
    ws.write("b/BUILD.envs", 'filegroup(name = "b")\nx = ' + "-" * 100000 + "1\n")
    ws.write("c/BUILD.envs", 'filegroup(name = "c")\nfail("c was evaluated")\n')
    ws.write("d/BUILD.envs", 'filegroup(name = "d")\n')
    result = ws.gb("query", "//...", "--json")
    assert result.exit_code == 2
    errors = {e["location"]: e["message"] for e in result.json["error"]["errors"]}
    assert list(errors) == ["b/BUILD.envs:2", "c/BUILD.envs:2:1"]
    assert "crashed the Starlark interpreter" in errors["b/BUILD.envs:2"]
    assert errors["c/BUILD.envs:2:1"] == "c was evaluated"
    assert ws.gb("query", "//a:all + //d:all").exit_code == 0


def test_affected_globs_the_working_trees_ignored_files_linked_into_its_checkout(ws):
    """`affected` links ignored files of the working tree into its checkout of the other
    revision: a glob there matches those links, which point outside the checkout, legitimately
    (were they refused, the package would not load at that revision and all of it would look new)."""
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(ws.root), *args], check=True, capture_output=True)

    ws.write(".gitignore", "graphbuild-out/\n*.local.txt\n")
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/b.in", "b\n")
    ws.write("pkg/made.local.txt", "not in git\n")
    ws.write("pkg/BUILD.envs", """
        genrule(name = "files", srcs = glob(["*.txt"]), outs = ["all"], cmd = "cat $SRCS > $OUT")
        genrule(name = "other", srcs = ["b.in"], outs = ["b"], cmd = "cat $SRCS > $OUT")
    """)
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "initial")
    ws.write("pkg/b.in", "changed\n")
    result = ws.gb("affected", "--since", "HEAD", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json["targets"] == ["//pkg:other"]


@pytest.mark.parametrize("directory", ["bad name", "CON", "trailing."])
def test_a_package_directory_whose_name_no_label_can_hold_is_a_located_error_until_ignored(ws, directory):
    ws.write(f"{directory}/BUILD.envs", 'genrule(name = "a", outs = ["a.txt"], cmd = "echo a > $OUT")\n')
    ws.write("ok/BUILD.envs", 'genrule(name = "a", outs = ["a.txt"], cmd = "echo a > $OUT")\n')
    result = ws.gb("query", "//...", "--json")
    assert result.exit_code == 2
    error = result.json["error"]
    assert error["location"] == f"{directory}/BUILD.envs:1"
    assert "cannot be one" in error["message"] and f'ignore = ["{directory}"]' in error["hint"]
    ws.write("graphbuild.toml", f'[workspace]\nignore = ["{directory}"]\n')
    assert ws.gb("query", "//...").stdout.split() == ["//ok:a"]
