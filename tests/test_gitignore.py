"""A library's sources follow git's ignore rules exactly: `.gitignore` files from the workspace
root down, `.git/info/exclude`, precedence and negations, tracked files always listed.

git itself is the reference: generated trees are compared with `git ls-files` and
`git check-ignore`, and an edit to a file ignored at the workspace root reruns nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from graphbuild.rules.python.gitignore import IgnoreRules, translate
from graphbuild.rules.python.sources import library_files

if TYPE_CHECKING:
    from conftest import TestWorkspace

GIT_ENV = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull}


def git(root: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True, text=True,
                          input=stdin, env=GIT_ENV).stdout


def git_listed(root: Path) -> set[str]:
    """What `git ls-files` lists: tracked files, and untracked ones no rule ignores."""
    out = git(root, "ls-files", "-z", "--cached", "--others", "--exclude-standard")
    return {p for p in out.split("\0") if p}


def ours(root: Path, package: str = "") -> set[str]:
    return {p.relative_to(root).as_posix() for p in library_files(root, package)}


def git_ignored(root: Path, paths: list[str]) -> set[str]:
    """`git check-ignore` over existing paths (exit 1 when none is ignored)."""
    if not paths:
        return set()
    proc = subprocess.run(["git", "-C", str(root), "check-ignore", "-z", "--stdin"], input="\0".join(paths) + "\0",
                          capture_output=True, text=True, env=GIT_ENV)
    assert proc.returncode in (0, 1), proc.stderr
    return {p for p in proc.stdout.split("\0") if p}


def make_tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


# -- property: generated trees, compared with git ------------------------------------------

NAMES = ["a", "b", "c.py", "d.txt", "build", "x.log", "[ab]", "sp ace", "#h", "!n", "a-b", "\\", "*", "é"]
PATTERNS = ["*", "!*/", "!*.py", "*.log", "build/", "/build", "a", "!a", "a/**", "**/b", "a/**/c.py", "!d.txt",
            "b/", "!b/", "*.txt", "/a/*", "!/a/b", "?.py", "[ab]", "\\[ab]", "c.*", "**", "a/", "!c.py", "d*",
            "\\#h", "\\!n", "*/", "/*", "!/a", "a/*/", "[!a]", "[a-c]*", "*.py ", "sp\\ ace", "**/", "/**/b",
            "b/**/", "!**/d.txt", "[[:alpha:]]*", "*[", "a/b/", "[]a]", "[z-a]", "[^[:space:]]", "a\\", "*\\/a",
            "[a-b-]", "# comment", "", "\\", "é", "[é]", "?"]
WILD = "ab/*?[]!^-\\:. é"


@st.composite
def trees(draw: st.DrawFn) -> tuple[list[str], dict[str, list[str]]]:
    """(file paths, {directory: .gitignore lines}): nested directories, rules at several levels."""
    dirs = [""]
    files: list[str] = []
    for _ in range(draw(st.integers(3, 25))):
        parent = draw(st.sampled_from(dirs))
        path = f"{parent}/{draw(st.sampled_from(NAMES))}".lstrip("/")
        if path in dirs or path in files:
            continue
        if draw(st.booleans()) and parent.count("/") < 3:
            dirs.append(path)
        else:
            files.append(path)
    files = [f for f in files if not any(d.startswith(f + "/") or d == f for d in dirs)]
    pattern = st.one_of(st.sampled_from(PATTERNS), st.text(WILD, min_size=1, max_size=7))
    rules = {d: draw(st.lists(pattern, min_size=1, max_size=5)) for d in dirs if draw(st.booleans())}
    return files, rules


def write_generated(root: Path, files: list[str], rules: dict[str, list[str]], dirs_too: bool = True) -> None:
    for rel in files:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).touch()
    for directory, lines in rules.items():
        (root / directory).mkdir(parents=True, exist_ok=True)
        (root / directory / ".gitignore").write_text("\n".join(lines) + "\n")


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_library_files_are_what_git_ls_files_lists(tree):
    files, rules = tree
    root = Path(tempfile.mkdtemp(prefix="gb-gitignore-"))
    try:
        git(root, "init", "-q")
        write_generated(root, files, rules)
        assert ours(root) == git_listed(root)
    finally:
        shutil.rmtree(root)


@settings(max_examples=examples(200), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees())
def test_each_path_is_ignored_exactly_when_git_check_ignore_says_so(tree):
    files, rules = tree
    root = Path(tempfile.mkdtemp(prefix="gb-gitignore-"))
    try:
        git(root, "init", "-q")
        write_generated(root, files, rules)
        dirs = sorted({"/".join(f.split("/")[:i]) for f in files for i in range(1, f.count("/") + 1)})
        paths = [p for p in files + dirs if not p.startswith(":")]  # a leading ':' is pathspec magic
        answer = IgnoreRules(root)
        assert {p for p in paths if answer.ignored(p, is_dir=p in dirs)} == git_ignored(root, paths)
    finally:
        shutil.rmtree(root)


# -- the rules, case by case (each also checked against git) -------------------------------


NESTED = {
    ".gitignore": "*.log\nnotes.txt\ndata/\n!keep.log\n/top-only.txt\n",
    "libs/lib/.gitignore": "!important.log\n*.tmp\n",
    "libs/lib/sub/.gitignore": "!notes.txt\n*.py\n!main.py\n",
    "libs/lib/a.py": "", "libs/lib/notes.txt": "ignored by the root's rule\n", "libs/lib/x.log": "",
    "libs/lib/important.log": "re-included below the root", "libs/lib/keep.log": "", "libs/lib/y.tmp": "",
    "libs/lib/top-only.txt": "anchored at the root: not this one", "top-only.txt": "",
    "libs/lib/sub/notes.txt": "re-included deeper", "libs/lib/sub/other.py": "", "libs/lib/sub/main.py": "",
    "libs/lib/data/file.txt": "inside an ignored directory", "libs/lib/data/.gitignore": "!file.txt\n",
}


def test_nested_rules_and_negations_match_git(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    make_tree(root, NESTED)
    (root / ".git" / "info" / "exclude").write_text("a.py\n")
    expected = {p for p in git_listed(root) if p.startswith("libs/lib/")}
    assert ours(root, "libs/lib") == expected
    assert expected == {"libs/lib/.gitignore", "libs/lib/important.log", "libs/lib/keep.log",
                        "libs/lib/top-only.txt", "libs/lib/sub/.gitignore", "libs/lib/sub/notes.txt",
                        "libs/lib/sub/main.py"}
    paths = [p for p in NESTED if p.startswith("libs/")]
    rules = IgnoreRules.for_workspace(root)
    assert {p for p in paths if rules.ignored(p, is_dir=False)} == git_ignored(root, paths)


def test_info_exclude_is_read_from_a_worktree_s_main_repository(tmp_path):
    main = tmp_path / "main"
    main.mkdir()
    git(main, "init", "-q")
    make_tree(main, {"graphbuild.toml": "", "libs/lib/a.py": "", "libs/lib/scratch.txt": ""})
    git(main, "add", "-A")
    git(main, "commit", "-qm", "init")
    (main / ".git" / "info" / "exclude").write_text("scratch.txt\n")
    tree = tmp_path / "tree"
    git(main, "worktree", "add", "-q", str(tree))
    (tree / "libs" / "lib" / "new-scratch.txt").touch()
    (main / ".git" / "info" / "exclude").write_text("scratch.txt\nnew-scratch.txt\n")
    assert ours(tree, "libs/lib") == {"libs/lib/a.py", "libs/lib/scratch.txt"}  # tracked: still listed
    assert {p for p in git_listed(tree) if p.startswith("libs/")} == ours(tree, "libs/lib")


def test_a_tracked_file_is_a_source_even_when_a_pattern_matches_it(tmp_path):
    root = tmp_path / "ws"
    root.mkdir()
    git(root, "init", "-q")
    make_tree(root, {".gitignore": "*.json\n", "libs/lib/a.py": "", "libs/lib/fixture.json": "{}",
                     "libs/lib/local.json": "{}"})
    git(root, "add", "-f", "libs/lib/fixture.json")
    assert ours(root, "libs/lib") == {"libs/lib/a.py", "libs/lib/fixture.json"}
    assert {p for p in git_listed(root) if p.startswith("libs/")} == ours(root, "libs/lib")


def test_outside_a_git_work_tree_the_same_rules_apply(tmp_path):
    make_tree(tmp_path, {".gitignore": "*.log\n", "lib/.gitignore": "!keep.log\n", "lib/a.log": "",
                         "lib/keep.log": "", "lib/a.py": ""})
    assert ours(tmp_path, "lib") == {"lib/.gitignore", "lib/keep.log", "lib/a.py"}


def test_a_symlinked_gitignore_is_not_followed(tmp_path):
    """git does not follow it either; and its target may be outside the workspace."""
    outside = tmp_path / "outside.gitignore"
    outside.write_text("*.py\n")
    root = tmp_path / "ws"
    make_tree(root, {"lib/a.py": ""})
    (root / ".gitignore").symlink_to(outside)
    assert ours(root, "lib") == {"lib/a.py"}


@pytest.mark.parametrize(("pattern", "text", "matches"), [
    ("**/a", "a", True), ("**/a", "x/y/a", True), ("a/**", "a/x/y", True), ("a/**", "a", False),
    ("a/**/b", "a/b", True), ("a/**/b", "a/x/y/b", True), ("a**b", "a/b", False), ("a**b", "axxb", True),
    ("*", "a/b", False), ("?", "/", False), ("[/]", "/", False), ("[!a]", "/", False), ("[]a]", "]", True),
    ("[z-a]", "z", True), ("[z-a]", "m", False), ("[a-]", "-", True), ("[[:digit:]x]", "7", True),
    ("[[:nope:]]", "n", False), ("[", "[", False), ("\\*", "*", True), ("\\*", "a", False),
])
def test_wildmatch_translation(pattern, text, matches):
    import re

    regex = translate(pattern.encode())
    found = regex is not None and re.fullmatch(regex, text.encode(), re.DOTALL) is not None
    assert found == matches


# -- end to end: an edit to an ignored file reruns nothing ----------------------------------


LIBRARY = {
    "libs/lib/BUILD.envs": 'py_library(name = "lib")\n',
    "libs/lib/pyproject.toml": '[build-system]\nrequires = ["setuptools>=68"]\n'
                               'build-backend = "setuptools.build_meta"\n[project]\nname = "lib"\n'
                               'version = "0.1.0"\n[tool.setuptools]\npackages = ["lib"]\n',
    "libs/lib/lib/__init__.py": "VALUE = 1\n",
    "libs/lib/notes.txt": "scratch notes, ignored by the workspace root's .gitignore\n",
    "libs/lib/out/run.log": "a log in an ignored directory\n",
    ".gitignore": "notes.txt\nout/\n",
}


@pytest.mark.network
def test_editing_a_file_ignored_at_the_workspace_root_reruns_nothing(ws: TestWorkspace):
    for rel, text in LIBRARY.items():
        ws.write(rel, text)
    git(ws.root, "init", "-q")
    first = ws.gb("build", "//libs/lib", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.ran() == {"//libs/lib:lib#wheel"}
    ws.write("libs/lib/notes.txt", "edited: still ignored\n")
    ws.write("libs/lib/out/run.log", "another log line\n")
    ws.write("libs/lib/out/new.log", "a new file in the ignored directory\n")
    again = ws.gb("build", "//libs/lib", "--json")
    assert again.exit_code == 0, again.stderr
    assert again.ran() == set()
    ws.write("libs/lib/lib/__init__.py", "VALUE = 2\n")  # a source: it does rerun
    assert ws.gb("build", "//libs/lib", "--json").ran() == {"//libs/lib:lib#wheel"}
