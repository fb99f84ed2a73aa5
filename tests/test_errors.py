"""User errors: each exits with 2 before anything runs, with no traceback, and says where
(file:line[:col]), what was expected and how to fix it; with --json the same error is one
JSON document on stdout."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import Result

from graphbuild.cli.main import main

if TYPE_CHECKING:
    from conftest import TestWorkspace

UP = 'genrule(name = "up", srcs = ["a.txt"], outs = ["up.txt"], cmd = "cat $SRCS > $OUT")\n'

# A workspace plugin defining a rule whose implementation reads its sources.
CAT_RULE = """
from graphbuild.api import Attrs, DefaultInfo, Field, Source, rule


class CatAttrs(Attrs):
    srcs: list[Source] = Field(default=[], description="files to concatenate")


@rule(attrs=CatAttrs)
def cat(ctx, attrs):
    files = ctx.sources(attrs.srcs, attr="srcs")
    return DefaultInfo(files=tuple(files))
"""
CAT_PLUGIN = '[plugins]\nrules = ["rules/cat.py"]\n'


def with_cat_plugin(ws: TestWorkspace, source: str = CAT_RULE) -> None:
    ws.write("rules/cat.py", source)
    ws.write("graphbuild.toml", CAT_PLUGIN)


def expect_error(ws: TestWorkspace, *args: str, location: str | None, message: Sequence[str],
                 hint: Sequence[str] = ()) -> tuple[str, dict]:
    """Run `args` in text and in --json form: both exit 2 without a traceback; the message
    holds every fragment of `message` (and the hint every fragment of `hint`) at `location`."""
    text = ws.gb(*args)
    assert text.exit_code == 2, text.stderr
    assert "Traceback" not in text.stderr
    first_line = text.stderr.splitlines()[0]
    assert first_line.startswith(f"error: {location}: " if location else "error: "), text.stderr
    for part in message:
        assert part in text.stderr
    for part in hint:
        assert part in text.stderr.split("\n  hint: ", 1)[1]

    as_json = ws.gb(*args, "--json")
    assert as_json.exit_code == 2, as_json.stderr
    assert "Traceback" not in as_json.stderr
    doc = as_json.json
    assert doc["exit_code"] == 2
    error = doc["error"]
    assert error["location"] == location
    for part in message:
        assert part in error["message"]
    for part in hint:
        assert part in error["hint"]
    return text.stderr, error


def run_main(argv: list[str]) -> Result:
    """Run the CLI without the fixture's own --cache-dir."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return Result(code, out.getvalue(), err.getvalue())


# 1 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("source", "location", "message", "hint"), [
    ('genrule(\n    name = "x",\n    outs = ["x.txt"]\n    cmd = "true",\n)\n',
     "pkg/BUILD.envs:4:5", "syntax error: unexpected identifier 'cmd' here",
     "is a comma missing at the end of line 3?"),
    ('genrule(name = "x", outs = ["x.txt"], cmd = )\n', "pkg/BUILD.envs:1:45", "syntax error: unexpected symbol ')'",
     "missing comma, bracket or quote"),
    ('x = 1\ngenrule(\n    name = "x",\n', "pkg/BUILD.envs:2:8", "syntax error: '(' is never closed", "close it"),
], ids=["missing-comma", "missing-value", "unclosed"])
def test_syntax_error(ws, source, location, message, hint):
    ws.write("pkg/BUILD.envs", source)
    stderr, _ = expect_error(ws, "build", "//pkg:x", location=location, message=[message], hint=[hint])
    assert stderr.startswith(f"error: {location}: {message}")


# 2 -------------------------------------------------------------------------------------------

def test_unknown_rule_is_named_located_and_corrected(ws):
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/BUILD.envs", UP + '\ngenrul(name = "x", outs = ["x.txt"], cmd = "true")\n')
    expect_error(ws, "build", "//pkg:up", location="pkg/BUILD.envs:3:1",
                 message=["unknown rule or name 'genrul'"], hint=["did you mean 'genrule'?"])


def test_unknown_rule_with_nothing_close_lists_the_rules_in_scope(ws):
    ws.write("pkg/BUILD.envs", 'frobnicate(name = "x")\n')
    expect_error(ws, "build", "//pkg:x", location="pkg/BUILD.envs:1:1",
                 message=["unknown rule or name 'frobnicate'"],
                 hint=["rules in scope: base_image, command_test, environment, filegroup, genrule"])


def test_a_plugin_rule_is_in_scope_and_listed(ws):
    with_cat_plugin(ws)
    ws.write("pkg/BUILD.envs", 'frobnicate(name = "x")\n')
    expect_error(ws, "build", "//pkg:x", location="pkg/BUILD.envs:1:1",
                 message=["unknown rule or name 'frobnicate'"], hint=["rules in scope: base_image, cat, command_test"])


# 3 -------------------------------------------------------------------------------------------

def test_misspelled_attribute_on_its_own_line(ws):
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/BUILD.envs", """
        genrule(
            name = "x",
            outs = ["x.txt"],
            srsc = ["a.txt"],
            cmd = "cat $SRCS > $OUT",
        )
    """)
    _, error = expect_error(ws, "build", "//pkg:x", location="pkg/BUILD.envs:4",
                            message=["rule 'genrule' has no attribute 'srsc'"],
                            hint=["did you mean 'srcs'?", "valid attributes: cmd, env, name, outs, srcs, timeout"])
    assert error["hint"] == "did you mean 'srcs'? valid attributes: cmd, env, name, outs, srcs, timeout"


# 4 -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("attr", "pydantic_message"), [
    ('outs = "x.txt"', "outs: Input should be a valid list"),
    ("cmd = 3", "cmd: Input should be a valid string"),
    ('env = {"A": 1}', "env.A: Input should be a valid string"),
], ids=["outs-str", "cmd-int", "env-value-int"])
def test_wrong_attribute_type_on_the_keywords_line(ws, attr, pydantic_message):
    values = {"outs": '["x.txt"]', "cmd": '"true"', "env": "{}"}
    key = attr.split(" =")[0]
    lines = [f"    {k} = {v}," for k, v in values.items() if k != key]
    ws.write("pkg/BUILD.envs", "\n".join(["genrule(", '    name = "x",', *lines, f"    {attr},", ")", ""]))
    line = 2 + len(lines) + 1
    stderr, _ = expect_error(ws, "build", "//pkg:x", location=f"pkg/BUILD.envs:{line}",
                             message=[f"rule 'genrule' target 'x': {pydantic_message}"])
    assert stderr == f"error: pkg/BUILD.envs:{line}: rule 'genrule' target 'x': {pydantic_message}\n"


# 5 -------------------------------------------------------------------------------------------

def test_duplicate_target_names_both_locations(ws):
    ws.write("pkg/BUILD.envs", """
        genrule(name = "x", outs = ["one.txt"], cmd = "true")

        filegroup(name = "other")
          # a comment
        genrule(name = "x", outs = ["two.txt"], cmd = "true")
    """)
    expect_error(ws, "build", "//pkg:other", location="pkg/BUILD.envs:5:1",
                 message=["duplicate target 'x' in package //pkg (first declared at pkg/BUILD.envs:1:1)"],
                 hint=["give each target of a package its own name"])


# 6 -------------------------------------------------------------------------------------------

def test_unknown_label_in_a_dependency(ws):
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/BUILD.envs", """
        genrule(name = "up", srcs = ["a.txt"], outs = ["up.txt"], cmd = "cat $SRCS > $OUT")
        genrule(
            name = "down",
            srcs = [":upp"],
            outs = ["down.txt"],
            cmd = "cat $SRCS > $OUT",
        )
    """)
    _, error = expect_error(ws, "build", "//pkg:down", location="pkg/BUILD.envs:4",
                            message=["no target 'upp' in package //pkg (pkg/BUILD.envs)"],
                            hint=["did you mean '//pkg:up'?"])
    # only names are compared: the shared '//pkg:' must not make ':down' look like ':upp'
    assert error["hint"] == "did you mean '//pkg:up'?"


def test_unknown_label_on_the_command_line(ws):
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/BUILD.envs", UP)
    expect_error(ws, "build", "//pkg:upp", location=None,
                 message=["no target 'upp' in package //pkg (pkg/BUILD.envs)"], hint=["did you mean '//pkg:up'?"])
    _, error = expect_error(ws, "build", "//pkg:nope", location=None,
                            message=["no target 'nope' in package //pkg"])
    assert error["hint"] is None  # nothing is close to 'nope': no misleading suggestion


def test_unknown_package_on_the_command_line_and_in_a_dependency(ws):
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/BUILD.envs", UP + 'filegroup(\n    name = "all",\n    srcs = ["//pgk:up"],\n)\n')
    expect_error(ws, "build", "//pgk:up", location=None,
                 message=["no package '//pgk' for label //pgk:up: there is no pgk/BUILD.envs"],
                 hint=["did you mean package 'pkg'?"])
    expect_error(ws, "build", "//pkg:all", location="pkg/BUILD.envs:4",
                 message=["no package '//pgk' for label //pgk:up"], hint=["did you mean package 'pkg'?"])


# 7 -------------------------------------------------------------------------------------------

def test_dependency_cycle_across_two_packages(ws):
    ws.write("a/BUILD.envs", """
        genrule(
            name = "a",
            srcs = ["//b:b"],
            outs = ["a.txt"],
            cmd = "true",
        )
    """)
    ws.write("b/BUILD.envs", """
        # b depends back on a
        filegroup(
            name = "b",
            srcs = ["//a:a"],
        )
    """)
    _, error = expect_error(
        ws, "build", "//a:a", location="a/BUILD.envs:3",
        message=["dependency cycle: //a:a -> //b:b -> //a:a",
                 "  //a:a -> //b:b    (a/BUILD.envs:3, attribute 'srcs')",
                 "  //b:b -> //a:a    (b/BUILD.envs:4, attribute 'srcs')"],
        hint=["remove one of these dependencies"])
    assert error["message"].count("\n") == 2  # the path, then one line per edge


# 8 -------------------------------------------------------------------------------------------

FORBIDDEN = [
    # source, column, message fragments, hint fragments: BUILD files are Starlark, which has
    # none of these (so no denylist to walk around)
    ("import os", 1, ["syntax error: 'import' is not part of Starlark"], ["cannot import", "load("]),
    ("from os import path", 1, ["syntax error: 'from' is not part of Starlark"], ["cannot import", "load("]),
    ('open("x")', 1, ["unknown rule or name 'open'"], ["Starlark, not Python", "no I/O"]),
    ('exec("x")', 1, ["unknown rule or name 'exec'"], ["Starlark, not Python"]),
    ('eval("1")', 1, ["unknown rule or name 'eval'"], ["Starlark, not Python"]),
    ('__import__("os")', 1, ["unknown rule or name '__import__'"], ["no imports"]),
    ('x = "".__class__', 5, ["has no attribute `__class__`"], ["no reflection"]),
    ("while True: pass", 1, ["syntax error: 'while' is not part of Starlark"], ["might never end", "range()"]),
    ("x = {1, 2}", 7, ["syntax error: unexpected symbol ','"], ["no sets", "use a list"]),
    ("class X: pass", 1, ["syntax error: 'class' is not part of Starlark"], ["no classes", "plugins"]),
]


@pytest.mark.parametrize(("source", "col", "message", "hint"), FORBIDDEN, ids=[f[0] for f in FORBIDDEN])
def test_forbidden_construct(ws, source, col, message, hint):
    ws.write("pkg/BUILD.envs", UP + source + "\n")
    expect_error(ws, "build", "//pkg:up", location=f"pkg/BUILD.envs:2:{col}", message=message, hint=hint)


def test_forbidden_construct_in_a_loaded_starlark_file_is_located_there(ws):
    ws.write("macros/BUILD.envs", "")
    ws.write("macros/cat.star", 'def cats(name):\n    filegroup(name = name)\n\nimport os\n')
    ws.write("pkg/BUILD.envs", 'load("//macros:cat.star", "cats")\ncats(name = "c")\n')
    expect_error(ws, "build", "//pkg:c", location="macros/cat.star:4:1",
                 message=["'import' is not part of Starlark"])


def test_loading_a_python_rule_file_says_plugins_replace_them(ws):
    ws.write("rules/BUILD.envs", "")
    ws.write("rules/cat.envs", CAT_RULE)
    ws.write("pkg/BUILD.envs", '# rules\nload("//rules:cat.envs", "cat")\n')
    expect_error(ws, "build", "//pkg:c", location="pkg/BUILD.envs:2:1",
                 message=["load: //rules:cat.envs is not a Starlark file"],
                 hint=["ending in '.star'", "plugins declared in graphbuild.toml"])


# 9 -------------------------------------------------------------------------------------------

def _valid_workspace(ws: TestWorkspace) -> None:
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/BUILD.envs", UP)


def test_cache_dir_under_a_regular_file(ws, tmp_path):
    _valid_workspace(ws)
    (tmp_path / "afile").write_text("not a directory\n")
    ws.cache = tmp_path / "afile" / "cache"
    expect_error(ws, "build", "//pkg:up", location=None,
                 message=[f"cache directory {ws.cache} is not usable: Not a directory"],
                 hint=["--cache-dir DIR", "GRAPHBUILD_CACHE_DIR"])
    assert not (ws.root / "graphbuild-out").exists()


def test_cache_dir_from_the_environment_under_a_regular_file(ws, tmp_path, monkeypatch):
    _valid_workspace(ws)
    (tmp_path / "afile").write_text("")
    monkeypatch.setenv("GRAPHBUILD_CACHE_DIR", str(tmp_path / "afile" / "cache"))
    text = run_main(["build", "//pkg:up", "-C", str(ws.root)])
    assert text.exit_code == 2
    assert "Traceback" not in text.stderr
    assert f"cache directory {tmp_path / 'afile' / 'cache'} is not usable" in text.stderr
    assert "hint: pass --cache-dir DIR or set GRAPHBUILD_CACHE_DIR" in text.stderr
    as_json = run_main(["build", "//pkg:up", "-C", str(ws.root), "--json"])
    assert as_json.exit_code == 2
    assert as_json.json["exit_code"] == 2
    assert str(tmp_path / "afile" / "cache") in as_json.json["error"]["message"]
    assert as_json.json["error"]["location"] is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_cache_dir(ws, tmp_path):
    _valid_workspace(ws)
    read_only = tmp_path / "ro"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        ws.cache = read_only / "cache"
        expect_error(ws, "build", "//pkg:up", location=None, message=[f"cache directory {ws.cache} is not usable"],
                     hint=["--cache-dir", "GRAPHBUILD_CACHE_DIR"])
    finally:
        read_only.chmod(0o755)


# 10 ------------------------------------------------------------------------------------------

def test_load_of_a_missing_starlark_file(ws):
    ws.write("pkg/BUILD.envs", '# macros\nload("//macros:nope.star", "cat")\n')
    expect_error(ws, "build", "//pkg:c", location="pkg/BUILD.envs:2:1",
                 message=["load: no file macros/nope.star for //macros:nope.star"])


def test_load_of_a_missing_symbol(ws):
    ws.write("macros/cat.star", "def cats(name):\n    filegroup(name = name)\n")
    ws.write("pkg/BUILD.envs", '\n# macros\nload("//macros:cat.star", "cast")\n')
    expect_error(ws, "build", "//pkg:c", location="pkg/BUILD.envs:2:27",
                 message=["Module has no symbol `cast`, did you mean `cats`?"])


def test_load_of_a_starlark_file_with_a_syntax_error(ws):
    ws.write("macros/cat.star", "def cat(:\n    pass\n")
    ws.write("pkg/BUILD.envs", 'load("//macros:cat.star", "cat")\n')
    expect_error(ws, "build", "//pkg:c", location="macros/cat.star:1:8", message=["syntax error: '(' is never closed"])


def test_plugin_that_fails_to_import_is_located_in_the_plugin(ws):
    with_cat_plugin(ws, CAT_RULE + "\n\nboom = {}['x']\n")
    ws.write("pkg/BUILD.envs", 'cat(name = "c")\n')
    expect_error(ws, "build", "//pkg:c", location="rules/cat.py:14",
                 message=["plugin rules/cat.py failed while imported: KeyError: 'x'"],
                 hint=["remove rules/cat.py from [plugins] in graphbuild.toml"])


def test_plugin_with_a_syntax_error(ws):
    with_cat_plugin(ws, "def cat(:\n    pass\n")
    ws.write("pkg/BUILD.envs", 'cat(name = "c")\n')
    expect_error(ws, "build", "//pkg:c", location="rules/cat.py:1:9", message=["plugin rules/cat.py: syntax error"])


# 11 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["cat", "genrule"], ids=["loaded-rule", "builtin-genrule"])
def test_missing_source_file_at_the_srcs_line(ws, kind):
    with_cat_plugin(ws)
    ws.write("pkg/mising.txt", "close\n")
    more = 'outs = ["c.txt"], cmd = "true",' if kind == "genrule" else ""
    ws.write("pkg/BUILD.envs", f"""
        # the rules

        {kind}(
            name = "c",
            srcs = ["missing.txt"],
            {more}
        )
    """)
    expect_error(ws, "build", "//pkg:c", location="pkg/BUILD.envs:5",
                 message=[f"{kind} 'c': srcs: no file 'missing.txt' in package //pkg"],
                 hint=["did you mean 'mising.txt'?"])


def test_bug_in_a_rule_implementation_names_the_rule_and_target(ws):
    with_cat_plugin(ws, CAT_RULE.replace("files = ctx.sources", 'files = {}["oops"] or ctx.sources'))
    ws.write("pkg/BUILD.envs", '# the rule\n\ncat(name = "c")\n')
    expect_error(ws, "build", "//pkg:c", location="pkg/BUILD.envs:3:1",
                 message=["rule 'cat' failed while analysing //pkg:c: KeyError: 'oops'"])


# 12 ------------------------------------------------------------------------------------------

def test_several_errors_of_one_file_are_reported_together(ws):
    ws.write("pkg/BUILD.envs", """
        genrule(
            name = "x",
            outs = ["x.txt"],
            cmd = 3,
        )
        genrule(
            name = "y",
            srsc = [],
            outs = ["y.txt"],
            cmd = "true",
        )
    """)
    text = ws.gb("build", "//pkg:x")
    assert text.exit_code == 2
    assert "Traceback" not in text.stderr
    assert text.stderr.startswith("error: pkg/BUILD.envs:4: rule 'genrule' target 'x': cmd: ")
    assert "\npkg/BUILD.envs:8: rule 'genrule' has no attribute 'srsc'\n" in text.stderr
    assert "hint: did you mean 'srcs'?" in text.stderr

    as_json = ws.gb("build", "//pkg:x", "--json")
    assert as_json.exit_code == 2
    error = as_json.json["error"]
    assert as_json.json["exit_code"] == 2
    assert error["message"] == "2 errors"
    assert error["location"] is None
    assert [e["location"] for e in error["errors"]] == ["pkg/BUILD.envs:4", "pkg/BUILD.envs:8"]
    assert "cmd: Input should be a valid string" in error["errors"][0]["message"]
    assert error["errors"][1]["hint"].startswith("did you mean 'srcs'?")


def test_every_python_keyword_of_a_file_is_reported(ws):
    ws.write("pkg/BUILD.envs", "import os\nx = [1, 2]\nwhile x:\n    pass\nclass X: pass\n")
    text = ws.gb("build", "//pkg:all")
    assert text.exit_code == 2
    assert "Traceback" not in text.stderr
    for location in ("pkg/BUILD.envs:1:1", "pkg/BUILD.envs:3:1", "pkg/BUILD.envs:5:1"):
        assert f"{location}: " in text.stderr
    as_json = ws.gb("build", "//pkg:all", "--json")
    assert as_json.exit_code == 2
    assert len(as_json.json["error"]["errors"]) == 3


# 13 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("pattern", "message", "hint"), [
    ("///x", "invalid package name in label '///x'", []),
    ("//pkg:bad name", "invalid target name in label '//pkg:bad name'", ["names use letters"]),
    ("//empty:all", "pattern //empty:all matches no targets", ["is there a BUILD.envs under //empty?"]),
    ("//nothing/...", "pattern //nothing/... matches no targets", ["is there a BUILD.envs under //nothing?"]),
], ids=["triple-slash", "bad-name", "empty-package", "no-package"])
def test_bad_or_empty_command_line_pattern(ws, pattern, message, hint):
    _valid_workspace(ws)
    ws.write("empty/BUILD.envs", "# no targets yet\n")
    expect_error(ws, "build", pattern, location=None, message=[message], hint=hint)


# 14 ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("args", "message", "hint"), [
    (["bild", "//pkg:up"], "error: unknown verb 'bild'", "hint: did you mean 'build'?"),
    (["build"], "error: the following arguments are required: TARGET", "hint: run 'graphbuild build --help'"),
    (["build", "//pkg:up", "-j", "many"], "error: argument -j/--jobs: invalid int value: 'many'",
     "hint: run 'graphbuild build --help'"),
], ids=["unknown-verb", "no-targets", "bad-int"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]], ids=["text", "json"])
def test_usage_errors(ws, args, message, hint, json_flag):
    _valid_workspace(ws)
    result = ws.gb(*args, *json_flag)
    assert result.exit_code == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("usage: graphbuild")
    assert message in result.stderr
    assert hint in result.stderr


def test_usage_error_with_a_real_process_exits_2(ws):
    """The same through `python -m graphbuild`: the exit status a shell sees."""
    _valid_workspace(ws)
    proc = ws.gb_process("build")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in stderr
    assert "the following arguments are required: TARGET" in stderr


def test_spec_error_with_a_real_process_exits_2(ws):
    ws.write("pkg/BUILD.envs", 'genrul(name = "x")\n')
    proc = ws.gb_process("build", "//pkg:x")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in stderr
    assert stderr.startswith("error: pkg/BUILD.envs:1:1: unknown rule or name 'genrul'")


def test_no_workspace_is_a_usage_error(tmp_path: Path):
    text = run_main(["build", "//pkg:x", "-C", str(tmp_path), "--cache-dir", str(tmp_path / "cache")])
    assert text.exit_code == 2
    assert "not inside a graphbuild workspace" in text.stderr
    assert "hint: create an empty graphbuild.toml" in text.stderr
