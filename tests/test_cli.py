"""The command line: query, graph, labels relative to the current directory, and --json on
every verb."""

from __future__ import annotations

import json

import pytest

#   //app:bin -> //lib:core -> //lib:base
#             -> //lib:util -> //lib:base
#   //app:check (test) -> //app:bin
#   //app:docs (filegroup of a file), //other:lone (no deps)
WORKSPACE = {
    "lib/base.txt": "base\n",
    "lib/BUILD.envs": """
        genrule(name = "base", srcs = ["base.txt"], outs = ["base.out"], cmd = "cat $SRCS > $OUT")
        genrule(name = "core", srcs = [":base"], outs = ["core.out"], cmd = "cat $SRCS > $OUT")
        genrule(name = "util", srcs = [":base"], outs = ["util.out"], cmd = "cat $SRCS > $OUT")
    """,
    "app/BUILD.envs": """
        genrule(name = "bin", srcs = ["//lib:core", "//lib:util"], outs = ["bin.out"], cmd = "cat $SRCS > $OUT")
        command_test(name = "check", srcs = [":bin"], cmd = "grep -q base $SRCS")
        filegroup(name = "docs", srcs = ["README"])
    """,
    "app/README": "read me\n",
    "app/sub/notes.txt": "a directory of //app without its own BUILD.envs\n",
    "other/BUILD.envs": """
        genrule(name = "lone", outs = ["lone.out"], cmd = "echo lone > $OUT")
    """,
}


@pytest.fixture
def cli_ws(ws):
    for rel, text in WORKSPACE.items():
        ws.write(rel, text)
    return ws


def _query(ws, expr: str) -> list[str]:
    result = ws.gb("query", expr)
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_query_deps_rdeps_kind_allpaths_in_text(cli_ws):
    assert _query(cli_ws, "deps(//app:bin)") == ["//app:bin", "//lib:base", "//lib:core", "//lib:util"]
    assert _query(cli_ws, "deps(//app:bin, 1)") == ["//app:bin", "//lib:core", "//lib:util"]
    assert _query(cli_ws, "rdeps(//..., //lib:util)") == ["//app:bin", "//app:check", "//lib:util"]
    assert _query(cli_ws, "kind(command_test, //...)") == ["//app:check"]
    assert _query(cli_ws, "kind(genrule, deps(//app:check)) - //lib:base") == ["//app:bin", "//lib:core",
                                                                                 "//lib:util"]
    assert _query(cli_ws, "allpaths(//app:check, //lib:base)") == [
        "//app:bin", "//app:check", "//lib:base", "//lib:core", "//lib:util"]
    assert _query(cli_ws, "allpaths(//lib:util, //lib:core)") == []


def test_query_json(cli_ws):
    result = cli_ws.gb("query", "rdeps(//..., //lib:base, 1)", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.json == {
        "command": "query",
        "expr": "rdeps(//..., //lib:base, 1)",
        "targets": [
            {"label": "//lib:base", "kind": "genrule"},
            {"label": "//lib:core", "kind": "genrule"},
            {"label": "//lib:util", "kind": "genrule"},
        ],
        "exit_code": 0,
    }
    kinds = cli_ws.gb("query", "//...", "--json").json["targets"]
    assert {t["label"]: t["kind"] for t in kinds}["//app:docs"] == "filegroup"


def test_query_errors_exit_2(cli_ws):
    bad = cli_ws.gb("query", "deps(//app:bin")
    assert bad.exit_code == 2
    assert "query" in bad.stderr
    unknown = cli_ws.gb("query", "deps(//app:nope)", "--json")
    assert unknown.exit_code == 2
    assert "nope" in unknown.json["error"]["message"]


def test_graph_dot(cli_ws):
    result = cli_ws.gb("graph", "//app:check", "--format", "dot")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "digraph graphbuild {"
    assert lines[-1] == "}"
    assert '  "//app:bin#gen" -> "//lib:core#gen";' in lines
    assert '  "//app:bin#gen" -> "//lib:util#gen";' in lines
    assert '  "//app:check#test" -> "//app:bin#gen";' in lines
    assert any(line.startswith('  "//app:check#test" [') and "shape=ellipse" in line for line in lines)
    assert any(line.startswith('  "//lib:base#gen" [') and "shape=box" in line for line in lines)
    assert "lone" not in result.stdout
    # graph does not build anything
    assert not (cli_ws.root / "graphbuild-out").exists()


def test_graph_json(cli_ws):
    result = cli_ws.gb("graph", "//app:check", "--format", "json")
    assert result.exit_code == 0, result.stderr
    doc = result.json
    assert doc["command"] == "graph"
    assert doc["targets"] == ["//app:check"]
    nodes = {n["id"]: n for n in doc["nodes"]}
    assert set(nodes) == {"//lib:base#gen", "//lib:core#gen", "//lib:util#gen", "//app:bin#gen", "//app:check#test"}
    assert set(nodes["//app:bin#gen"]["deps"]) == {"//lib:core#gen", "//lib:util#gen"}
    assert nodes["//app:check#test"]["phase"] == "test"
    assert nodes["//app:check#test"]["kind"] == "command_test"
    assert nodes["//lib:base#gen"]["outputs"] == ["base.out"]
    assert nodes["//lib:base#gen"]["executor"].startswith("command@")
    order = [n["id"] for n in doc["nodes"]]
    for node in doc["nodes"]:  # dependencies come first
        assert all(order.index(dep) < order.index(node["id"]) for dep in node["deps"])
    # --json alone means the JSON format too
    assert cli_ws.gb("graph", "//app:check", "--json").json == doc


def test_relative_labels_from_a_package_directory(cli_ws):
    result = cli_ws.gb("build", ":bin", "--json", cwd=cli_ws.root / "app")
    assert result.exit_code == 0, result.stderr
    assert result.json["targets"] == ["//app:bin"]
    assert "//app:bin#gen" in result.ran()
    assert (cli_ws.root / "graphbuild-out/app/bin.out").read_text() == "base\nbase\n"

    # a directory without BUILD.envs belongs to the package above it
    below = cli_ws.gb("build", ":bin", "--json", cwd=cli_ws.root / "app/sub")
    assert below.json["targets"] == ["//app:bin"]
    assert set(below.statuses().values()) == {"cached"}

    # other verbs and patterns are relative too
    tested = cli_ws.gb("test", ":check", "--json", cwd=cli_ws.root / "app")
    assert tested.exit_code == 0, tested.stderr
    assert tested.statuses()["//app:check#test"] == "ran"
    everything = cli_ws.gb("build", "...", "--json", cwd=cli_ws.root / "lib")
    assert everything.json["targets"] == ["//lib:base", "//lib:core", "//lib:util"]
    assert _query_in(cli_ws, "deps(:core)", cli_ws.root / "lib") == ["//lib:base", "//lib:core"]
    why = cli_ws.gb("why", ":bin", "--json", cwd=cli_ws.root / "app")
    assert why.json["target"] == "//app:bin"

    missing = cli_ws.gb("build", ":nope", "--json", cwd=cli_ws.root / "app")
    assert missing.exit_code == 2
    assert "//app" in missing.json["error"]["message"]


def _query_in(ws, expr, cwd):
    result = ws.gb("query", expr, cwd=cwd)
    assert result.exit_code == 0, result.stderr
    return result.stdout.splitlines()


def test_every_verb_prints_one_json_document(cli_ws):
    commands = [
        ("build", "//app:bin"),
        ("test", "//app:check"),
        ("run", "//app:check", "//other:lone"),
        ("why", "//app:bin"),
        ("query", "deps(//app:bin)"),
        ("graph", "//app:check"),
        ("cache", "gc", "--max-size", "1G"),
        ("clean",),
    ]
    seen = []
    for argv in commands:
        result = cli_ws.gb(*argv, "--json")
        assert result.exit_code == 0, (argv, result.stdout, result.stderr)
        doc = json.loads(result.stdout)  # the whole of stdout is one document
        assert isinstance(doc, dict)
        seen.append(doc["command"])
    assert seen == ["build", "test", "run", "why", "query", "graph", "cache gc", "clean"]


@pytest.mark.parametrize("argv", [
    ("build", "//app:nope"),
    ("test", "//nowhere:x"),
    ("why", "//other:lone"),  # never run: nothing to explain
    ("query", "deps("),
    ("graph", "//app:nope"),
])
def test_errors_are_json_documents_too(cli_ws, argv):
    result = cli_ws.gb(*argv, "--json")
    assert result.exit_code == 2
    doc = result.json
    assert doc["exit_code"] == 2
    assert doc["command"] == argv[0]
    assert doc["error"]["message"]


def test_a_failing_build_reports_in_json_with_exit_code_1(cli_ws):
    cli_ws.write("other/BUILD.envs", 'genrule(name = "lone", outs = ["lone.out"], cmd = "exit 7")\n')
    result = cli_ws.gb("build", "//other:lone", "--json")
    assert result.exit_code == 1
    assert result.json["exit_code"] == 1
    assert result.json["summary"]["failed"] == 1
    assert result.statuses() == {"//other:lone#gen": "failed"}
    assert "exited with 7" in result.json["nodes"][0]["message"]


def test_main_leaves_the_garbage_collector_of_its_caller_alone(capsys):
    """The command's process tunes the collector (graphbuild.cli.run); a caller of main() (tests,
    a tool embedding graphbuild) keeps its own settings and frees what each call allocated."""
    import gc

    from graphbuild.cli.main import main

    threshold, frozen = gc.get_threshold(), gc.get_freeze_count()
    with pytest.raises(SystemExit):
        main(["--help"])
    assert (gc.get_threshold(), gc.get_freeze_count()) == (threshold, frozen)
    assert "usage" in capsys.readouterr().out
