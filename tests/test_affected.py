"""`graphbuild affected --since REV` and `run --affected-since REV`, as a CI job uses them.

The workspace is a git repository: one BUILD.envs with ten "environments" (genrules) over a
shared `core`, and a `lib/` package whose README.md is no target's input. Changes are made
in the working tree (uncommitted) and compared with HEAD.
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Result, TestWorkspace

ENVS = [f"env{i}" for i in range(10)]
ENV_LABELS = [f"//envs:{name}" for name in ENVS]
CORE = "//envs:core"
LIB = "//lib:lib"
LIB_BUILD = 'genrule(name = "lib", srcs = ["src.txt"], outs = ["lib.out"], cmd = "cat $SRCS > $OUT")\n'

BUILD = 'genrule(name = "core", srcs = ["core.txt"], outs = ["core.out"], cmd = "cat $SRCS > $OUT")\n' + "".join(
    f"""
genrule(
    name = "{name}",
    srcs = [":core"],
    outs = ["{name}.out"],
    cmd = "cat $SRCS > $OUT; echo {name} >> $OUT",
)
""" for name in ENVS)


def git(ws: TestWorkspace, *args: str) -> str:
    return subprocess.run(["git", "-C", str(ws.root), *args], check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(ws: TestWorkspace) -> TestWorkspace:
    ws.write("envs/BUILD.envs", BUILD)
    ws.write("envs/core.txt", "core\n")
    ws.write("lib/BUILD.envs", LIB_BUILD)
    ws.write("lib/src.txt", "source\n")
    ws.write("lib/README.md", "# lib\n\nNotes that no target reads.\n")
    ws.write(".gitignore", "graphbuild-out/\n")
    git(ws, "init", "-q", "-b", "main")
    git(ws, "add", "-A")
    git(ws, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-m", "initial")
    return ws


def affected(ws: TestWorkspace, *extra: str) -> Result:
    result = ws.gb("affected", "--since", "HEAD", "--json", *extra)
    assert result.exit_code == 0, result.stderr + result.stdout
    assert result.json["command"] == "affected" and result.json["since"] == "HEAD"
    return result


def edit(ws: TestWorkspace, rel: str, old: str, new: str) -> None:
    path = ws.root / rel
    text = path.read_text()
    assert text.count(old) == 1, (rel, old)
    path.write_text(text.replace(old, new))


def test_nothing_changed_affects_nothing(repo):
    assert affected(repo).json["targets"] == []
    text = repo.gb("affected", "--since", "HEAD")
    assert text.exit_code == 0
    assert text.stdout == ""


def test_editing_one_target_affects_only_that_target(repo):
    # an edit that also adds a line: the targets below it move, but their inputs do not change
    edit(repo, "envs/BUILD.envs", 'cmd = "cat $SRCS > $OUT; echo env4 >> $OUT",',
         'cmd = "cat $SRCS > $OUT; echo env4 changed >> $OUT",\n    env = {"X": "1"},')
    result = affected(repo, "--nodes")
    assert result.json["targets"] == ["//envs:env4"]
    assert result.json["nodes"] == ["//envs:env4#gen"]

    text = repo.gb("affected", "--since", "HEAD", "--nodes")
    assert text.exit_code == 0
    assert text.stdout.splitlines() == ["//envs:env4", "  //envs:env4#gen"]

    # restricted to other targets: none of them is affected
    assert affected(repo, "//lib/...", "//envs:env0").json["targets"] == []


def test_a_file_that_is_no_input_affects_nothing(repo):
    (repo.root / "lib/README.md").write_text("# lib\n\nRewritten notes.\n")
    result = affected(repo, "--nodes")
    assert result.json["targets"] == []
    assert result.json["nodes"] == []


def test_the_library_source_affects_only_the_library(repo):
    (repo.root / "lib/src.txt").write_text("source changed\n")
    assert affected(repo).json["targets"] == [LIB]


def test_the_shared_core_input_affects_every_target_over_it(repo):
    (repo.root / "envs/core.txt").write_text("core changed\n")
    result = affected(repo, "--nodes")
    assert sorted(result.json["targets"]) == sorted([CORE, *ENV_LABELS])
    assert LIB not in result.json["targets"]
    assert sorted(result.json["nodes"]) == sorted(f"{label}#gen" for label in [CORE, *ENV_LABELS])


def test_a_new_target_is_affected(repo):
    with open(repo.root / "envs/BUILD.envs", "a") as build:
        build.write('\ngenrule(name = "extra", srcs = [":core"], outs = ["extra.out"], cmd = "cp $SRCS $OUT")\n')
    (repo.root / "new").mkdir()
    repo.write("new/BUILD.envs", 'genrule(name = "new", outs = ["n.txt"], cmd = "echo new > $OUT")\n')
    result = affected(repo, "--nodes")
    assert sorted(result.json["targets"]) == ["//envs:extra", "//new:new"]
    assert sorted(result.json["nodes"]) == ["//envs:extra#gen", "//new:new#gen"]


def test_committed_changes_are_compared_with_the_given_revision(repo):
    (repo.root / "envs/core.txt").write_text("core changed\n")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@example.com", "commit", "-q", "-am", "core")
    assert affected(repo).json["targets"] == []
    since_first = repo.gb("affected", "--since", "HEAD~1", "--json")
    assert since_first.exit_code == 0, since_first.stderr
    assert sorted(since_first.json["targets"]) == sorted([CORE, *ENV_LABELS])


def test_a_bad_revision_is_a_usage_error(repo):
    result = repo.gb("affected", "--since", "no-such-branch")
    assert result.exit_code == 2
    assert "'no-such-branch' is not a revision" in result.stderr
    assert "Traceback" not in result.stderr
    as_json = repo.gb("affected", "--since", "no-such-branch", "--json")
    assert as_json.exit_code == 2
    assert as_json.json["exit_code"] == 2
    assert "no-such-branch" in str(as_json.json["error"])


def test_outside_a_git_repository_is_a_usage_error(ws):
    ws.write("pkg/BUILD.envs", 'genrule(name = "a", outs = ["a.txt"], cmd = "echo a > $OUT")\n')
    result = ws.gb("affected", "--since", "HEAD")
    assert result.exit_code == 2
    assert "is not a revision of a git repository" in result.stderr


def test_run_affected_since_runs_only_the_affected_targets(repo):
    first = repo.gb("run", "--affected-since", "HEAD", "//...", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json["nodes"] == [] and first.json["targets"] == []
    text = repo.gb("run", "--affected-since", "HEAD", "//...")
    assert text.exit_code == 0
    assert "nothing is affected" in text.stderr
    assert not (repo.root / "graphbuild-out").exists()

    edit(repo, "envs/BUILD.envs", "echo env7 >> $OUT", "echo seven >> $OUT")
    second = repo.gb("run", "--affected-since", "HEAD", "//...", "--json")
    assert second.exit_code == 0, second.stderr
    assert second.json["targets"] == ["//envs:env7"]
    # the affected target's nodes run, and what they need (core, not affected, built as well)
    assert second.ran() == {"//envs:env7#gen", "//envs:core#gen"}
    assert (repo.root / "graphbuild-out/envs/env7.out").read_text() == "core\nseven\n"
    assert not (repo.root / "graphbuild-out/envs/env6.out").exists()

    (repo.root / "envs/core.txt").write_text("core 2\n")
    third = repo.gb("run", "--affected-since", "HEAD", "//...", "--json")
    assert third.exit_code == 0, third.stderr
    assert sorted(third.json["targets"]) == sorted([CORE, *ENV_LABELS])
    assert third.ran() == {f"{label}#gen" for label in [CORE, *ENV_LABELS]}
    assert "//lib:lib#gen" not in third.statuses()
