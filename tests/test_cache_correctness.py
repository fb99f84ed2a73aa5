"""The mutation matrix: for each class of input change, exactly the nodes it must rerun do.

On a copy of the repository's example workspace (four environments, two in-repo libraries, a
git library), each mutation is applied, `graphbuild test //envs/...` is run, and the set of
nodes whose key changed (the nodes that ran, or took the result of a node of another
environment that ran) is compared with the set the mutation must change, stated here:

* a node that must change but kept its key is a **false hit** (a stale result served);
* a node that changed but had no reason to is a **needless rerun**.

Both are reported separately and must be empty. Then the mutation is reverted (files,
modes and mtimes restored) and nothing may rerun: every key is back to the baseline's.
Finally `why` must name the input that changed for a node of each class.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from docker_env import copy_example

if TYPE_CHECKING:
    from conftest import TestWorkspace

pytestmark = [pytest.mark.docker, pytest.mark.network]

ENVS = ("prod", "dev", "ml", "research")
ML = ("ml", "research")  # the environments over //envs:mlstack


def ids(*patterns: str) -> set[str]:
    """`*#image` -> that node of every environment; `prod#image` -> //envs:prod#image;
    `//libs/textstats:textstats#wheel` as is."""
    found: set[str] = set()
    for pattern in patterns:
        if pattern.startswith("//"):
            found.add(pattern)
            continue
        env, _, node = pattern.partition("#")
        envs = ENVS if env == "*" else ML if env == "ml*" else (env,)
        found.update(f"//envs:{e}#{node}" for e in envs)
    return found


TEXTSTATS_WHEEL = "//libs/textstats:textstats#wheel"
FEATURIZE_WHEEL = "//libs/featurize:featurize#wheel"
IMAGES = ("*#image", "*#image.test")


# -- the workspace ------------------------------------------------------------------------------


class Example:
    """The example workspace copied into a temp dir, with a file-level undo log."""

    def __init__(self, ws: TestWorkspace):
        self.ws = ws
        self.root = ws.root
        self._saved: dict[Path, tuple[bytes | None, int, int]] = {}
        self._undo: list[Callable[[], None]] = []

    def path(self, rel: str) -> Path:
        return self.root / rel

    def save(self, rel: str) -> Path:
        path = self.path(rel)
        if path not in self._saved:
            if path.exists():
                st = path.stat()
                self._saved[path] = (path.read_bytes(), st.st_mode, st.st_mtime_ns)
            else:
                self._saved[path] = (None, 0, 0)
        return path

    def edit(self, rel: str, change: Callable[[str], str]) -> None:
        path = self.save(rel)
        before = path.read_text()
        after = change(before)
        assert after != before, f"the mutation of {rel} changed nothing"
        path.write_text(after)

    def write(self, rel: str, text: str) -> None:
        path = self.save(rel)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def on_restore(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def restore(self) -> None:
        while self._undo:
            self._undo.pop()()
        for path, (data, mode, mtime) in self._saved.items():
            if data is None:
                path.unlink(missing_ok=True)
                continue
            path.write_bytes(data)
            os.chmod(path, mode & 0o7777)
            os.utime(path, ns=(mtime, mtime))
        self._saved.clear()

    def keys(self, *args: str, env: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
        """node id -> (key, status) of `graphbuild test //envs/...`."""
        with _environ(env or {}):
            result = self.ws.gb("test", "//envs/...", "--json", *args)
        assert result.exit_code == 0, result.stderr[-3000:] + result.stdout[-3000:]
        return {n["id"]: (n["key"], n["status"]) for n in result.json["nodes"] if n["phase"] != "lock"}


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory, registry: str) -> Iterator[tuple[Example, dict]]:
    from conftest import TestWorkspace

    top = tmp_path_factory.mktemp("matrix")
    root = top / "example"
    copy_example(root)
    # files the workspace root's .gitignore keeps out of every library
    (root / ".gitignore").write_text("*.scratch\n")
    # a workspace plugin and a target using it, for the plugin mutations
    config = root / "graphbuild.toml"
    config.write_text(config.read_text() + '\n[plugins]\nrules = ["plugins/stamp.py"]\n')
    (root / "plugins").mkdir()
    (root / "plugins/stamp.py").write_text(STAMP_PLUGIN)
    (root / "envs/stamps").mkdir()
    (root / "envs/stamps/BUILD.envs").write_text('stamp(name = "stamps", srcs = ["notes.txt"])\n')
    (root / "envs/stamps/notes.txt").write_text("release notes\n")
    ws = TestWorkspace(root, top / "cache")
    ex = Example(ws)
    baseline = ex.keys()
    assert all(key for key, _ in baseline.values())
    yield ex, baseline


STAMP_PLUGIN = """\
from graphbuild.api import Attrs, DefaultInfo, Field, Source, executor, rule
from graphbuild.rules import run_command, staged_sources


class StampAttrs(Attrs):
    srcs: list[Source] = Field(default=[], description="files to stamp")


@executor("stamp.sign", version=1)
def sign(ctx):
    ctx.out("signed.txt").write_text("signed\\n")


@rule(attrs=StampAttrs, version=1)
def stamp(ctx, attrs):
    sums = ctx.action("sums", executor=run_command, outputs=["stamp.txt"],
                      inputs={"cmd": "sha256sum $SRCS > $OUT", **staged_sources(ctx, attrs.srcs, "srcs")})
    signed = ctx.action("sign", executor=sign, inputs={}, outputs=["signed.txt"], after=[sums])
    return DefaultInfo(files=(sums.output("stamp.txt"), signed.output("signed.txt")))
"""
STAMPS = "//envs/stamps:stamps"


# -- the mutations ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutation:
    name: str
    apply: Callable[[Example], None]
    changes: frozenset[str]
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    #: (node id, text `why` must show among that node's changed inputs)
    why: tuple[str, str] | None = None


def _m(name: str, apply: Callable[[Example], None], changes: set[str], **kwargs: Any) -> Mutation:
    return Mutation(name, apply, frozenset(changes), **kwargs)


def _comments(ex: Example) -> None:
    ex.edit("envs/BUILD.envs", lambda t: "# a comment at the top\n\n" + t.replace(
        '        "requests>=2.31",\n', '        # why requests\n\n        "requests>=2.31",\n'))
    ex.edit("libs/textstats/BUILD.envs", lambda t: "\n# textstats\n" + t)


def _reorder(ex: Example) -> None:
    ex.edit("envs/BUILD.envs", lambda t: t.replace(
        '        "numpy>=2.0,<2.3",\n        "requests>=2.31",\n',
        '        "requests>=2.31",\n        "numpy>=2.0,<2.3",\n'))


def _top_layer_requirement(ex: Example) -> None:
    ex.save("envs/pylock.ml.toml")
    ex.save("envs/pylock.research.toml")
    ex.edit("envs/BUILD.envs", lambda t: t.replace(
        'requirements = ["scikit-learn>=1.5"]', 'requirements = ["scikit-learn>=1.5", "six==1.17.0"]'))


def _core_requirement(ex: Example) -> None:
    for env in ENVS:
        ex.save(f"envs/pylock.{env}.toml")
    ex.edit("envs/BUILD.envs", lambda t: t.replace('"pydantic>=2.7",\n', '"pydantic>=2.7",\n        "six==1.17.0",\n'))


def _env(ex: Example) -> None:
    ex.edit("envs/BUILD.envs", lambda t: t.replace(
        '    push = "', '    env = {"MATRIX_FLAG": "1"},\n    push = "', 1))


def _cmd(ex: Example) -> None:
    ex.edit("envs/BUILD.envs", lambda t: t.replace(
        '    push = "', '    cmd = ["python", "-c", "print(1)"],\n    push = "', 1))


TEXTSTATS_SRC = "libs/textstats/src/textstats/__init__.py"
TEXTSTATS_TEST = "libs/textstats/tests/test_textstats.py"


def _library_source(ex: Example) -> None:
    ex.edit(TEXTSTATS_SRC, lambda t: t + "\n\ndef char_count(text: str) -> int:\n    return len(text)\n")


def _same_size_edit(ex: Example) -> None:
    """A byte of the library changed, its size and mtime as before (a tar or rsync -t restore)."""
    path = ex.save(TEXTSTATS_SRC)
    st = path.stat()
    text = path.read_text()
    assert "[.!?]+" in text
    path.write_text(text.replace("[.!?]+", "[.?!]+"))  # the same class: tests still pass
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _test_file(ex: Example) -> None:
    ex.edit(TEXTSTATS_TEST, lambda t: t + "\n\ndef test_empty():\n    assert textstats.words('') == []\n")


def _non_source(ex: Example) -> None:
    ex.write("envs/NOTES.md", "notes no target reads\n")
    ex.write("NOTES.md", "notes at the root\n")


def _ignored_at_root(ex: Example) -> None:
    ex.write("libs/textstats/src/textstats/debug.scratch", "ignored by the workspace root's .gitignore\n")


def _test_command(ex: Example) -> None:
    ex.edit("libs/textstats/BUILD.envs", lambda t: t.replace(
        'py_library(name = "textstats")', 'py_library(name = "textstats", test_command = ["python", "-m", "pytest", '
        '"-q", "-p", "no:cacheprovider", "--junitxml=/out/junit.xml", "tests"])'))


def _mode(ex: Example) -> None:
    path = ex.save(TEXTSTATS_TEST)
    os.chmod(path, path.stat().st_mode | 0o111)


def _touch(ex: Example) -> None:
    touched = (TEXTSTATS_SRC, TEXTSTATS_TEST, "envs/BUILD.envs", "envs/pylock.prod.toml",
               "libs/featurize/pyproject.toml")
    for rel in touched:
        path = ex.save(rel)
        os.utime(path)


def _identical_output(ex: Example) -> None:
    """A requirement widened: the lock node reruns and pins exactly the same wheels, so every
    layer, image and test after it stays cached (early cutoff)."""
    for env in ENVS:
        ex.save(f"envs/pylock.{env}.toml")
    ex.edit("envs/BUILD.envs", lambda t: t.replace('"requests>=2.31"', '"requests>=2.30"'))


def _base_tarball(ex: Example) -> None:
    """Another base: the same rootfs with one more file."""
    (tarball,) = (ex.root / ".bases").iterdir()
    path = ex.save(f".bases/{tarball.name}")
    extra = ex.root.parent / "etc-matrix"
    extra.mkdir(exist_ok=True)
    (extra / "matrix-release").write_text("another base\n")
    copy = ex.root.parent / "base-copy.tar"
    shutil.copyfile(path, copy)
    subprocess.run(["tar", "-rf", str(copy), "-C", str(extra), "--owner=0", "--group=0", "matrix-release"],
                   check=True)
    os.replace(copy, path)


def _git_branch(ex: Example) -> None:
    """The followed branch moves on; `graphbuild lock` pins the new commit."""
    bare = ex.root / ".repos/research-lib.git"
    before = _git(bare, "rev-parse", "refs/heads/main")
    ex.on_restore(lambda: _git(bare, "update-ref", "refs/heads/main", before))
    ex.save("envs/pylock.research.toml")
    work = ex.root.parent / "research-work"
    shutil.rmtree(work, ignore_errors=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    init = work / "research_tools/__init__.py"
    init.write_text(init.read_text() + "\n\ndef spread(values):\n    return max(values) - min(values)\n")
    _git(work, "-c", "user.name=R", "-c", "user.email=r@example.invalid", "commit", "-qam", "spread")
    _git(work, "push", "-q", "origin", "HEAD:main")
    locked = ex.ws.gb("lock", "//envs:research")
    assert locked.exit_code == 0, locked.stderr


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def _rule_version(ex: Example) -> None:
    ex.edit("plugins/stamp.py", lambda t: t.replace("@rule(attrs=StampAttrs, version=1)",
                                                    "@rule(attrs=StampAttrs, version=2)"))


def _rule_command(ex: Example) -> None:
    ex.edit("plugins/stamp.py", lambda t: t.replace("sha256sum $SRCS", "sha512sum $SRCS"))


def _executor_body(ex: Example) -> None:
    ex.edit("plugins/stamp.py", lambda t: t.replace('write_text("signed', 'write_text("signed again'))


def _nothing(ex: Example) -> None:
    pass


# a layer's compressed blob follows its tar; the SBOM and the layout documents follow what is
# installed; classify (in ml) needs featurize, which needs textstats: its tests rerun too
LIBRARY_CHANGED = {TEXTSTATS_WHEEL, *ids("*#lib.textstats", "*#compress.lib.textstats", *IMAGES, "*#sbom", "*#out",
                                         "*#test.textstats", "*#test.featurize", "ml#test.classify")}

MUTATIONS = [
    _m("comment and blank lines", _comments, set()),
    _m("requirement reorder", _reorder, set()),
    # a new package is a new node (and its compressed layer); the images holding it, their SBOMs
    # and layout documents change; no other package's node does
    _m("a requirement of a top layer", _top_layer_requirement,
       ids("ml*#pkg.six", "ml*#compress.pkg.six", "ml*#image", "ml*#image.test", "ml*#sbom", "ml*#out"),
       args=("--relock",), why=("//envs:ml#sbom", "six")),
    _m("a requirement of the shared core", _core_requirement,
       ids("*#pkg.six", "*#compress.pkg.six", *IMAGES, "*#sbom", "*#out"), args=("--relock",),
       why=("//envs:dev#sbom", "six")),
    _m("env of one environment", _env, ids("prod#image", "prod#image.test", "prod#out", "prod#test.textstats",
                                           "prod#test.featurize", "prod#test.jobconfig", "prod#test.legacyconf"),
       why=("//envs:prod#test.textstats", "MATRIX_FLAG")),
    _m("cmd of one environment", _cmd, ids("prod#image", "prod#image.test", "prod#out"),
       why=("//envs:prod#image", "print(1)")),
    _m("a library source file", _library_source, LIBRARY_CHANGED,
       why=(TEXTSTATS_WHEEL, "textstats/__init__.py")),
    _m("a same-size edit with its mtime restored", _same_size_edit, LIBRARY_CHANGED,
       why=(TEXTSTATS_WHEEL, "textstats/__init__.py")),
    _m("a test file only", _test_file, {TEXTSTATS_WHEEL, *ids("*#test.textstats")},
       why=("//envs:prod#test.textstats", "test_textstats.py")),
    _m("a file no target reads", _non_source, set()),
    _m("a file ignored at the workspace root", _ignored_at_root, set()),
    _m("the test command", _test_command, ids("*#test.textstats"), why=("//envs:prod#test.textstats", "junitxml")),
    _m("a mode change", _mode, {TEXTSTATS_WHEEL, *ids("*#test.textstats")},
       why=(TEXTSTATS_WHEEL, "executable")),
    _m("mtime-only touches", _touch, set()),
    _m("the base tarball", _base_tarball,
       {"//envs:debian#import", *ids(*IMAGES, "*#compress.base", "*#out", "*#test.textstats", "*#test.featurize",
                                     "research#test.research_tools", "prod#test.jobconfig", "prod#test.legacyconf",
                                     "ml#test.classify")},
       why=("//envs:prod#test.textstats", "sha256")),
    _m("a git branch advanced, then locked", _git_branch,
       ids("research#git.research_tools", "research#lib.research_tools", "research#compress.lib.research_tools",
           "research#image", "research#image.test", "research#sbom", "research#out", "research#test.research_tools"),
       why=("//envs:research#git.research_tools", "branch main at")),
    _m("a workspace rule's version", _rule_version, {f"{STAMPS}#sums", f"{STAMPS}#sign"},
       why=(f"{STAMPS}#sums", "stamp@2")),
    _m("a workspace rule's command", _rule_command, {f"{STAMPS}#sums", f"{STAMPS}#sign"},
       why=(f"{STAMPS}#sums", "sha512sum")),
    _m("a workspace executor's body", _executor_body, {f"{STAMPS}#sign"}, why=(f"{STAMPS}#sign", "stamp.py sha256")),
    _m("host environment variables", _nothing, set(),
       env={"HOME": "/tmp/elsewhere", "LANG": "fr_FR.UTF-8", "LC_ALL": "C", "TZ": "Pacific/Auckland",
            "PYTHONHASHSEED": "7"}),
    _m("an upstream change with identical output bytes", _identical_output, set(), args=("--relock",)),
]


@pytest.mark.parametrize("mutation", MUTATIONS, ids=[m.name for m in MUTATIONS])
def test_exactly_the_nodes_a_change_affects_rerun(example: tuple[Example, dict], mutation: Mutation) -> None:
    ex, baseline = example
    try:
        mutation.apply(ex)
        after = ex.keys(*mutation.args, env=mutation.env)
        _check(mutation, baseline, after)
        if mutation.why:
            _check_why(ex, *mutation.why)
    finally:
        ex.restore()
    reverted = ex.keys()
    back = {nid for nid, (key, _) in reverted.items() if baseline.get(nid, (None,))[0] != key}
    assert not back, f"after reverting '{mutation.name}', these nodes still differ from the baseline: {sorted(back)}"
    ran = sorted(nid for nid, (_, status) in reverted.items() if status == "ran")
    assert not ran, f"after reverting '{mutation.name}', these nodes ran instead of being reused: {ran}"


def _check(mutation: Mutation, baseline: dict, after: dict) -> None:
    assert set(baseline) <= set(after), "the mutation removed nodes"
    assert set(after) - set(baseline) <= mutation.changes, "the mutation added nodes it does not name"
    changed = {nid for nid, (key, _) in after.items() if nid not in baseline or key != baseline[nid][0]}
    false_hits = sorted(mutation.changes - changed)
    needless = sorted(changed - mutation.changes)
    problems = []
    if false_hits:
        problems.append(f"false hits (must rerun, kept their key): {false_hits}")
    if needless:
        problems.append(f"needless reruns (changed key without a reason): {needless}")
    assert not problems, f"{mutation.name}: " + "; ".join(problems)
    ran = {nid for nid, (_, status) in after.items() if status == "ran"}
    assert ran <= changed, f"{mutation.name}: nodes ran although their key did not change: {sorted(ran - changed)}"


def _check_why(ex: Example, node: str, expected: str) -> None:
    target = node.split("#", 1)[0]
    result = ex.ws.gb("why", target, "--node", node, "--json")
    assert result.exit_code == 0, result.stderr
    (entry,) = result.json["nodes"]
    shown = " ".join(f"{c['input']} {c['old']} {c['new']}" for c in entry.get("changes", []))
    assert expected in shown, f"why {node}: expected a change mentioning {expected!r}, got: {entry}"


class _environ:
    def __init__(self, values: dict[str, str]):
        self.values = values
        self.saved: dict[str, str | None] = {}

    def __enter__(self) -> None:
        for name, value in self.values.items():
            self.saved[name] = os.environ.get(name)
            os.environ[name] = value

    def __exit__(self, *exc: object) -> None:
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
