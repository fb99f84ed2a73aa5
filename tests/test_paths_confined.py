"""Hostile paths and names: no attribute makes a build read or write outside its package, the
workspace or graphbuild-out/, and no name is a file system trick.

Each hostile case runs through the real CLI on a temp workspace and must exit 2, name the
attribute and its BUILD.envs line, print no traceback, and leave no trace: the file outside is
neither read into the cache (no cache file holds its bytes) nor written (its bytes unchanged,
nothing created).
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import pytest

from graphbuild.analysis.context import RuleContext
from graphbuild.errors import Location, SpecError
from graphbuild.labels import Label, LabelError, Pattern
from graphbuild.loading.loader import Target
from graphbuild.nodes import executor
from graphbuild.rules.filegroup import filegroup

if TYPE_CHECKING:
    from conftest import Result, TestWorkspace


@pytest.fixture
def canary(tmp_path: Path) -> Path:
    """A file outside the workspace whose bytes must never reach the cache."""
    path = tmp_path / "outside" / "secret.txt"
    path.parent.mkdir()
    path.write_bytes(b"CANARY-" + uuid.uuid4().hex.encode() + b"\n")
    return path


def line_of(ws: TestWorkspace, rel: str, needle: str) -> int:
    lines = [i + 1 for i, line in enumerate((ws.root / rel).read_text().splitlines()) if needle in line]
    assert len(lines) == 1, (needle, lines)
    return lines[0]


def cache_holds(ws: TestWorkspace, data: bytes) -> bool:
    if not ws.cache.exists():
        return False
    return any(data in p.read_bytes() for p in ws.cache.rglob("*") if p.is_file() and not p.is_symlink())


def refused(ws: TestWorkspace, *args: str, attr: str, line: int, words: tuple[str, ...] = (),
            build_file: str = "pkg/BUILD.envs") -> Result:
    """`args` exits 2 in text and JSON form, naming `attr` at `build_file:line`, no traceback."""
    result = ws.gb(*args)
    output = result.stderr + result.stdout
    assert result.exit_code == 2, output
    assert "Traceback" not in output, output
    assert f"{build_file}:{line}" in output, output
    assert attr in output, output
    for word in words:
        assert word in output, output
    as_json = ws.gb(*args, "--json")
    assert as_json.exit_code == 2 and "Traceback" not in as_json.stderr + as_json.stdout
    assert as_json.json["error"], as_json.stdout
    return result


# -- base_image(tarball) ---------------------------------------------------------------------


def test_tarball_climbing_out_of_the_workspace_is_refused_and_nothing_is_read(ws, canary):
    up = os.path.relpath(canary, ws.root / "pkg")  # ../../outside/secret.txt
    ws.write("pkg/BUILD.envs", f'base_image(\n    name = "b",\n    tarball = "{up}",\n)\n')
    refused(ws, "build", "//pkg:b", attr="tarball", line=3, words=("leaves the workspace",))
    assert not cache_holds(ws, canary.read_bytes())


def test_tarball_absolute_path_is_refused(ws, canary):
    ws.write("pkg/BUILD.envs", f'base_image(name = "b", tarball = "{canary}")\n')
    refused(ws, "build", "//pkg:b", attr="tarball", line=1, words=("absolute",))
    assert not cache_holds(ws, canary.read_bytes())


@pytest.mark.parametrize("where", ["pkg/base.tar", ".bases/base.tar"])
def test_tarball_symlinked_out_of_the_workspace_is_refused(ws, canary, where):
    link = ws.root / where
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(canary)
    tarball = os.path.relpath(link, ws.root / "pkg")
    ws.write("pkg/BUILD.envs", f'base_image(\n    name = "b",\n    tarball = "{tarball}",\n)\n')
    result = refused(ws, "build", "//pkg:b", attr="tarball", line=3,
                     words=("outside the workspace", "symlinks are followed", "hard-link or copy"))
    assert str(canary) in result.stderr  # where the link really goes
    assert not cache_holds(ws, canary.read_bytes())


def test_tarball_hard_linked_into_the_workspace_builds(ws, canary):
    """The supported way to use a tarball made outside the workspace (scripts/place-file.sh)."""
    (ws.root / ".bases").mkdir()
    os.link(canary, ws.root / ".bases" / "base.tar")
    ws.write("pkg/BUILD.envs", 'base_image(name = "b", tarball = "../.bases/base.tar")\n')
    result = ws.gb("build", "//pkg:b", "--json")
    assert result.exit_code == 0, result.stderr
    assert "//pkg:b#import" in result.ran()


def test_tarball_symlink_inside_the_workspace_is_followed(ws):
    (ws.root / "data").mkdir()
    (ws.root / "data" / "real.tar").write_bytes(b"not really a tar, the import node only copies it")
    (ws.root / "pkg").mkdir()
    (ws.root / "pkg" / "base.tar").symlink_to("../data/real.tar")
    ws.write("pkg/BUILD.envs", 'base_image(name = "b", tarball = "base.tar")\n')
    result = ws.gb("build", "//pkg:b", "--json")
    assert result.exit_code == 0, result.stderr


# -- genrule(outs) and the output tree --------------------------------------------------------


@pytest.mark.parametrize(("outs", "words"), [
    ('"../../graphbuild.toml"', ("goes up",)),
    ('"../BUILD.envs"', ("goes up",)),
    ('"a/../../x"', ("goes up",)),
    ('"ABSOLUTE"', ("absolute",)),
    ('"."', ("directory",)),
    ('""', ("empty",)),
    ('"a", "./a"', ("twice",)),
    ('"a", "a/b"', ("inside output",)),
    ('"nul\\0byte"', ("NUL",)),
    ('"' + "x" * 300 + '"', ("300 bytes long",)),
])
def test_outs_that_leave_the_output_directory_are_refused(ws, tmp_path, outs, words):
    target = tmp_path / "written-outside.txt"
    outs = outs.replace("ABSOLUTE", str(target))
    config = b"[cache]\n# the workspace's config, which a hostile out would overwrite\n"
    (ws.root / "graphbuild.toml").write_bytes(config)
    ws.write("pkg/a.txt", "hi\n")
    ws.write("pkg/BUILD.envs", f'genrule(\n    name = "g",\n    srcs = ["a.txt"],\n    outs = [{outs}],\n'
                               '    cmd = "for o in $OUTS; do cp $SRCS $o; done",\n)\n')
    refused(ws, "build", "//pkg:g", attr="outs", line=4, words=words)
    assert (ws.root / "graphbuild.toml").read_bytes() == config
    assert not target.exists()
    assert not (ws.root / "graphbuild-out").exists()


def test_a_symlinked_directory_in_graphbuild_out_is_refused_not_followed(ws, tmp_path):
    outside = tmp_path / "outside-dir"
    outside.mkdir()
    ws.write("pkg/BUILD.envs", 'genrule(name = "g", outs = ["sub/o.txt"], cmd = "echo hi > $OUT")\n')
    (ws.root / "graphbuild-out" / "pkg").mkdir(parents=True)
    (ws.root / "graphbuild-out" / "pkg" / "sub").symlink_to(outside)
    result = ws.gb("build", "//pkg:g")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "graphbuild-out/pkg/sub" in result.stderr and "symlink" in result.stderr
    assert list(outside.iterdir()) == []


def test_a_symlinked_graphbuild_out_is_refused_and_clean_removes_only_the_link(ws, tmp_path):
    outside = tmp_path / "outside-out"
    outside.mkdir()
    (outside / "keep.txt").write_text("mine\n")
    ws.write("pkg/BUILD.envs", 'genrule(name = "g", outs = ["o.txt"], cmd = "echo hi > $OUT")\n')
    (ws.root / "graphbuild-out").symlink_to(outside)
    result = ws.gb("build", "//pkg:g")
    assert result.exit_code == 2 and "symlink" in result.stderr, result.stderr
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert ws.gb("clean").exit_code == 0
    assert not (ws.root / "graphbuild-out").is_symlink()
    assert (outside / "keep.txt").read_text() == "mine\n"
    assert ws.gb("build", "//pkg:g").exit_code == 0
    assert (ws.root / "graphbuild-out" / "pkg" / "o.txt").read_text() == "hi\n"


def test_an_output_file_symlinked_out_is_replaced_not_written_through(ws, canary):
    before = canary.read_bytes()
    ws.write("pkg/BUILD.envs", 'genrule(name = "g", outs = ["o.txt"], cmd = "echo hi > $OUT")\n')
    (ws.root / "graphbuild-out" / "pkg").mkdir(parents=True)
    (ws.root / "graphbuild-out" / "pkg" / "o.txt").symlink_to(canary)
    result = ws.gb("build", "//pkg:g")
    assert result.exit_code == 0, result.stderr
    out = ws.root / "graphbuild-out" / "pkg" / "o.txt"
    assert not out.is_symlink() and out.read_text() == "hi\n"
    assert canary.read_bytes() == before


def test_rule_outputs_are_checked_for_every_rule_not_only_genrule(tmp_path):
    """A workspace rule declaring nodes itself gets the same check from ctx.action()."""
    rule = filegroup
    target = Target(Label("pkg", "t"), rule, rule.attrs(name="t"), Location("pkg/BUILD.envs", 3))
    noop = executor("test.noop")(lambda ctx: None)
    for bad in ("../x", "/etc/x", "a/../../x", "", "a//b", "./a"):
        ctx = RuleContext(target, MappingProxyType({}), tmp_path, lambda p: "0" * 64)
        with pytest.raises(SpecError) as err:
            ctx.action("n", executor=noop, outputs=[bad])
        assert "pkg/BUILD.envs:3" in err.value.render()
    ctx = RuleContext(target, MappingProxyType({}), tmp_path, lambda p: "0" * 64)
    with pytest.raises(SpecError, match="inside output"):
        ctx.action("n", executor=noop, outputs=["a", "a/b"])
    ctx.action("ok", executor=noop, outputs=["a.txt", "sub/b.txt"])


# -- srcs: symlinks out of the package --------------------------------------------------------


@pytest.mark.parametrize("rule", ["genrule", "command_test", "filegroup"])
def test_srcs_symlinked_out_of_the_workspace_are_refused(ws, canary, rule):
    (ws.root / "pkg").mkdir()
    (ws.root / "pkg" / "data.txt").symlink_to(canary)
    extra = {"genrule": ', outs = ["o"], cmd = "cp $SRCS $OUT"', "command_test": ', cmd = "cat $SRCS"',
             "filegroup": ""}[rule]
    ws.write("pkg/BUILD.envs", f'{rule}(\n    name = "t",\n    srcs = ["data.txt"]{extra},\n)\n')
    verb = "test" if rule == "command_test" else "build"
    refused(ws, verb, "//pkg:t", attr="srcs", line=3, words=("outside package //pkg", str(canary)))
    assert not cache_holds(ws, canary.read_bytes())


def test_srcs_symlinked_to_another_package_or_up_are_refused(ws):
    ws.write("other/secret.txt", "another package's file\n")
    (ws.root / "pkg").mkdir()
    (ws.root / "pkg" / "peek.txt").symlink_to("../other/secret.txt")
    (ws.root / "pkg" / "dir").symlink_to("../other")
    ws.write("pkg/BUILD.envs", 'genrule(\n    name = "a",\n    srcs = ["peek.txt"],\n    outs = ["o"],\n'
                               '    cmd = "cp $SRCS $OUT",\n)\n'
                               'genrule(\n    name = "b",\n    srcs = ["dir/secret.txt"],\n    outs = ["p"],\n'
                               '    cmd = "cp $SRCS $OUT",\n)\n')
    result = refused(ws, "build", "//pkg:all", attr="srcs", line=3, words=("outside package //pkg",))
    assert "pkg/BUILD.envs:9" in result.stderr  # both targets' errors, each at its line
    assert not cache_holds(ws, b"another package's file")


def test_a_symlink_inside_the_package_is_fine(ws):
    ws.write("pkg/real.txt", "hello\n")
    (ws.root / "pkg" / "alias.txt").symlink_to("real.txt")
    ws.write("pkg/BUILD.envs", 'genrule(name = "g", srcs = ["alias.txt"], outs = ["o"], cmd = "cp $SRCS $OUT")\n')
    assert ws.gb("build", "//pkg:g").exit_code == 0
    assert (ws.root / "graphbuild-out" / "pkg" / "o").read_text() == "hello\n"


@pytest.mark.parametrize(("srcs", "words"), [('"../x.txt"', ("goes up",)), ('"/etc/passwd"', ("absolute",))])
def test_srcs_written_out_of_the_package_are_refused(ws, srcs, words):
    ws.write("x.txt", "root file\n")
    ws.write("pkg/BUILD.envs", f'filegroup(\n    name = "f",\n    srcs = [{srcs}],\n)\n')
    refused(ws, "build", "//pkg:f", attr="srcs", line=3, words=words)


# -- libraries ----------------------------------------------------------------------------


PYPROJECT = '[project]\nname = "lib"\nversion = "0.1"\n'


def test_a_library_file_symlinked_out_is_refused(ws, canary):
    ws.write("pkg/BUILD.envs", 'py_library(name = "lib")\n')
    ws.write("pkg/pyproject.toml", PYPROJECT)
    (ws.root / "pkg" / "leak.txt").symlink_to(canary)
    result = ws.gb("build", "//pkg:lib")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "'leak.txt'" in result.stderr and "outside package //pkg" in result.stderr
    assert not cache_holds(ws, canary.read_bytes())


@pytest.mark.parametrize(("rule", "attr", "value", "words"), [
    ("py_library", "tests", '["../../etc"]', ("goes up",)),
    ("py_library", "tests", '["/etc"]', ("absolute",)),
    ("git_library", "subdir", '"../../etc"', ("goes up",)),
    ("git_library", "subdir", '"/etc"', ("absolute",)),
])
def test_library_path_attributes_stay_inside(ws, rule, attr, value, words):
    ws.write("pkg/pyproject.toml", PYPROJECT)
    extra = ', url = "file:///nowhere", branch = "main"' if rule == "git_library" else ""
    ws.write("pkg/BUILD.envs", f'{rule}(\n    name = "lib"{extra},\n    {attr} = {value},\n)\n')
    refused(ws, "query", "//pkg:lib", attr=attr, line=3, words=words)


# -- names --------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "words"), [
    (".", ("relative path",)),
    ("..", ("relative path",)),
    ("-", ("starts with '-'",)),
    ("-rf", ("starts with '-'",)),
    (".hidden", ("starts with '.'",)),
    ("CON", ("device name",)),
    ("nul.txt", ("device name",)),
    ("com1", ("device name",)),
    ("trailing.", ("ends with '.'",)),
    ("a/b", ("'/'",)),
    ("sp ace", ("' '",)),
    ("tab\\t", ("'\\t'",)),
    ("new\\nline", ("'\\n'",)),
    ("x" * 300, ("300 characters",)),
    ("é", ("'é'",)),
    ("a#b", ("'#'",)),
    ("a:b", ("':'",)),
])
def test_bad_target_names_are_refused_with_the_grammar(ws, name, words):
    ws.write("pkg/BUILD.envs", f'filegroup(\n    name = "{name}",\n)\n')
    result = refused(ws, "query", "//pkg:all", attr="name", line=2, words=(*words, "see the README, Labels"))
    assert "invalid target name" in result.stderr


@pytest.mark.parametrize("name", ["a", "A1", "_x", "9lives", "my-lib", "v1.2", "a+b", "a@b", "k=v", "a,b", "a~",
                                  "con1", "x" * 128])
def test_good_target_names_are_accepted(ws, name):
    ws.write("pkg/BUILD.envs", f'filegroup(name = "{name}")\n')
    result = ws.gb("query", f"//pkg:{name}")
    assert result.exit_code == 0, result.stderr


def test_a_300_character_package_in_a_label_is_an_error_not_a_traceback(ws):
    long = "a" * 300
    ws.write("pkg/BUILD.envs", f'filegroup(\n    name = "f",\n    srcs = ["//{long}:x"],\n)\n')
    refused(ws, "query", "//pkg:f", attr="srcs", line=3, words=("300 characters", "at most 128"))
    for pattern in (f"//{long}:x", f"//{long}/...", f"//{long}:all", f"//pkg/{long}"):
        result = ws.gb("query", pattern)
        assert result.exit_code == 2 and "Traceback" not in result.stderr, result.stderr
        assert "300 characters" in result.stderr


@pytest.mark.parametrize("text", ["//pkg/../x:y", "//./pkg:y", "//pkg//sub:y", "//pkg/:y", "//pkg:", "//", "//:",
                                  "//pkg:a/../b", "//pkg:./b", "//pkg:b/", "//pkg:CON", "//p\x00:y", "//pkg:y\n",
                                  "//-pkg:y", "//pkg:-y", "@repo//pkg:y"])
def test_label_parse_refuses_non_grammar_labels(text):
    with pytest.raises(LabelError):
        Label.parse(text)


@pytest.mark.parametrize(("text", "label"), [
    ("//envs:prod", Label("envs", "prod")), ("//envs", Label("envs", "envs")), ("//:x", Label("", "x")),
    ("//tools:sub/defs.envs", Label("tools", "sub/defs.envs")), ("//a/b-c/d.e:f_g", Label("a/b-c/d.e", "f_g")),
])
def test_label_parse_accepts_the_grammar(text, label):
    assert Label.parse(text) == label


def test_a_trailing_slash_typed_on_the_command_line_is_forgiven():
    assert Pattern.parse("envs/", cwd_package="") == Pattern("envs", "envs")
    assert Pattern.parse("//envs/:all") == Pattern("envs", None)
