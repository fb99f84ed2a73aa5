"""Workspace plugins: rules written in Python, declared in graphbuild.toml, in scope in every
BUILD file; their file is source (its digest keys the nodes their executors run)."""

from __future__ import annotations

import os
import subprocess
from typing import TYPE_CHECKING

import pytest
from test_errors import expect_error

if TYPE_CHECKING:
    from conftest import TestWorkspace

STAMP = '''
"""A plugin with its own executor."""

from graphbuild.api import Attrs, DefaultInfo, Field, Source, executor, rule
from graphbuild.rules import run_command, staged_sources


@executor("stamp", version=1)
def write_stamp(ctx):
    ctx.out("stamp.txt").write_text("STAMP " + ctx.inputs["word"] + "\\n")


class StampAttrs(Attrs):
    word: str = Field(default="hello", description="what the stamp says")
    srcs: list[Source] = Field(default=[], description="files copied beside the stamp")


@rule(attrs=StampAttrs, version=1)
def stamp(ctx, attrs):
    node = ctx.action("stamp", executor=write_stamp, inputs={"word": attrs.word}, outputs=["stamp.txt"])
    copy = ctx.action("copy", executor=run_command,
                      inputs={"cmd": "cat $SRCS > $OUT", **staged_sources(ctx, attrs.srcs, "srcs")},
                      outputs=["copy.txt"])
    return DefaultInfo(files=(node.output("stamp.txt"), copy.output("copy.txt")))
'''
PLUGINS = '[plugins]\nrules = ["tools/stamp.py"]\n'


@pytest.fixture
def stamped(ws: TestWorkspace) -> TestWorkspace:
    ws.write("graphbuild.toml", PLUGINS)
    ws.write("tools/stamp.py", STAMP)
    ws.write("a/BUILD.envs", 'stamp(name = "s", word = "a", srcs = ["in.txt"])\n')
    ws.write("a/in.txt", "input\n")
    ws.write("b/BUILD.envs", 'stamp(\n    name = "s",\n    word = "b",\n)\n')
    return ws


def test_plugin_rules_are_in_scope_in_every_build_file(stamped):
    result = stamped.gb("build", "//...", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.ran() == {"//a:s#stamp", "//a:s#copy", "//b:s#stamp", "//b:s#copy"}
    assert (stamped.root / "graphbuild-out/a/stamp.txt").read_text() == "STAMP a\n"
    assert (stamped.root / "graphbuild-out/a/copy.txt").read_text() == "input\n"
    kinds = stamped.gb("query", "kind(stamp, //...)", "--json")
    assert [t["label"] for t in kinds.json["targets"]] == ["//a:s", "//b:s"]


def test_editing_an_executor_body_reruns_its_nodes_without_a_version_bump(stamped):
    assert stamped.gb("build", "//...", "--json").exit_code == 0
    stamped.write("tools/stamp.py", STAMP.replace('"STAMP "', '"STAMPED "'))
    second = stamped.gb("build", "//...", "--json")
    assert second.exit_code == 0, second.stderr
    # the plugin's own executor reruns; the node run by a built-in executor keeps its key
    assert second.statuses() == {"//a:s#stamp": "ran", "//a:s#copy": "cached",
                                 "//b:s#stamp": "ran", "//b:s#copy": "cached"}
    assert (stamped.root / "graphbuild-out/a/stamp.txt").read_text() == "STAMPED a\n"
    why = stamped.gb("why", "//a:s", "--json")
    changes = {entry["id"]: entry for entry in why.json["nodes"]}["//a:s#stamp"]["changes"]
    assert [c["input"] for c in changes] == ["executor"]
    assert changes[0]["old"].startswith("stamp@1 (tools/stamp.py sha256:")
    assert changes[0]["new"].startswith("stamp@1 (tools/stamp.py sha256:")
    assert changes[0]["old"] != changes[0]["new"]
    third = stamped.gb("build", "//...", "--json")
    assert third.ran() == set()


def test_a_plugin_edit_is_affected_and_a_build_file_edit_is_not_code(stamped):
    def git(*args: str) -> None:
        subprocess.run(["git", "-C", str(stamped.root), *args], check=True, capture_output=True)

    stamped.write(".gitignore", "graphbuild-out/\n")
    git("init", "-q", "-b", "main")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "initial")
    stamped.write("tools/stamp.py", STAMP.replace('"STAMP "', '"STAMPED "'))
    result = stamped.gb("affected", "--since", "HEAD", "--nodes", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json["targets"] == ["//a:s", "//b:s"]
    assert result.json["nodes"] == ["//a:s#stamp", "//b:s#stamp"]


@pytest.mark.parametrize(("config", "files", "location", "message", "hint"), [
    ('[plugins]\nrules = ["tools/nope.py"]\n', {}, "graphbuild.toml:2", "plugin tools/nope.py does not exist",
     "relative to the workspace root"),
    ('[plugins]\nrules = ["../outside.py"]\n', {}, "graphbuild.toml:2", "must be a path inside the workspace",
     ""),
    ('[plugins]\nrules = ["/etc/hostname"]\n', {}, "graphbuild.toml:2", "must be a path inside the workspace", ""),
    ('# plugins\n[plugins]\nrules = ["tools/stamp.envs"]\n', {"tools/stamp.envs": STAMP}, "graphbuild.toml:3",
     "is not a Python file", ""),
    ('[plugins]\nrules = ["tools/empty.py"]\n', {"tools/empty.py": "X = 1\n"}, "graphbuild.toml:2",
     "plugin tools/empty.py defines no rule", "@rule"),
    ('[plugins]\nrules = ["tools/g.py"]\n',
     {"tools/g.py": STAMP.replace("@rule(attrs=StampAttrs, version=1)", "@rule(attrs=StampAttrs, name='genrule')")},
     "graphbuild.toml:2", "defines rule 'genrule', which is a built-in rule", "another name"),
    ('[plugins]\nrules = ["tools/stamp.py", "tools/again.py"]\n', {"tools/again.py": STAMP}, "graphbuild.toml:2",
     "plugins tools/stamp.py and tools/again.py both define rule 'stamp'", ""),
], ids=["missing", "dotdot", "absolute", "not-python", "no-rule", "builtin-clash", "two-define"])
def test_bad_plugin_declarations(ws, config, files, location, message, hint):
    ws.write("tools/stamp.py", STAMP)
    for rel, text in files.items():
        ws.write(rel, text)
    ws.write("graphbuild.toml", config)
    ws.write("pkg/BUILD.envs", 'filegroup(name = "x")\n')
    expect_error(ws, "query", "//...", location=location, message=[message], hint=[hint] if hint else [])


def test_a_plugin_linked_from_outside_the_workspace_is_refused(ws, tmp_path):
    outside = tmp_path / "elsewhere.py"
    outside.write_text(STAMP)
    (ws.root / "tools").mkdir()
    os.symlink(outside, ws.root / "tools/stamp.py")
    ws.write("graphbuild.toml", PLUGINS)
    ws.write("pkg/BUILD.envs", 'filegroup(name = "x")\n')
    expect_error(ws, "query", "//...", location="graphbuild.toml:2",
                 message=[f"plugin tools/stamp.py is a link to {outside}, outside the workspace"])


def test_build_files_cannot_reach_the_plugin_module(stamped):
    """A plugin is trusted code; BUILD files still see only the rule, as a Starlark function."""
    stamped.write("b/BUILD.envs", 'x = getattr(stamp, "__globals__")\n')
    expect_error(stamped, "query", "//...", location="b/BUILD.envs:1:5",
                 message=["`.__globals__`"], hint=["no reflection"])


README_PLUGIN = '''
from graphbuild.api import Attrs, DefaultInfo, Field, Source, executor, rule
from graphbuild.rules import run_command, staged_sources


class StampAttrs(Attrs):
    srcs: list[Source] = Field(default=[], description="files to stamp")


@executor("stamp.sign", version=1)
def sign(ctx):                                   # an executor of your own
    ctx.out("signed.txt").write_text("signed\\n")


@rule(attrs=StampAttrs, version=1)
def stamp(ctx, attrs):
    sums = ctx.action(
        "sums",
        executor=run_command,                    # or a built-in executor
        inputs={"cmd": "sha256sum $SRCS > $OUT", **staged_sources(ctx, attrs.srcs, "srcs")},
        outputs=["stamp.txt"],
    )
    signed = ctx.action("sign", executor=sign, inputs={}, outputs=["signed.txt"], after=[sums])
    return DefaultInfo(files=(sums.output("stamp.txt"), signed.output("signed.txt")))
'''


def test_the_readme_plugin_example_builds(ws):
    """The example of README "Writing your own rule", as written there."""
    ws.write("graphbuild.toml", '[plugins]\nrules = ["tools/stamp.py"]     # paths relative to the workspace root\n')
    ws.write("tools/stamp.py", README_PLUGIN)
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/BUILD.envs", 'stamp(name = "stamps", srcs = glob(["*.txt"]))\n')
    result = ws.gb("build", "//pkg:stamps", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.ran() == {"//pkg:stamps#sums", "//pkg:stamps#sign"}
    assert "a.txt" in (ws.root / "graphbuild-out/pkg/stamp.txt").read_text()
    assert (ws.root / "graphbuild-out/pkg/signed.txt").read_text() == "signed\n"
