"""Which locks the layer plan is made from: every environment of the workspace, found the way
`//...` finds packages (issue 12). No network: the locks are the repository's example locks
copied into temporary workspaces (for the plan, a lock is what it pins; its spec is checked
only by its own environment's analysis)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING

from graphbuild.analysis.analyzer import Analyzer
from graphbuild.analysis.context import RuleContext
from graphbuild.labels import Label
from graphbuild.loading.loader import Loader
from graphbuild.loading.workspace import Workspace
from graphbuild.rules import BUILTIN_RULES
from graphbuild.rules.python import lockfile
from graphbuild.rules.python.environment import planned_packages
from graphbuild.rules.python.layer_plan import plan_layers
from graphbuild.rules.python.workspace_locks import (
    _PARSED,
    EnvironmentLock,
    cached_plan,
    lock_path,
    workspace_locks,
)

if TYPE_CHECKING:
    from conftest import TestWorkspace

REPO = Path(__file__).resolve().parent.parent
PROD_LOCK = (REPO / "envs/pylock.prod.toml").read_text()
DEV_LOCK = (REPO / "envs/pylock.dev.toml").read_text()


def digest_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def context(ws: TestWorkspace, label: str) -> tuple[RuleContext, Analyzer]:
    loader = Loader(Workspace.at(ws.root), BUILTIN_RULES)
    analyzer = Analyzer(loader, digest_file)
    target = loader.target(Label.parse(label))
    ctx = RuleContext(target, {}, ws.root, digest_file, real_roots=analyzer.real_roots,
                      declared=analyzer.declared)
    return ctx, analyzer


def own(ws: TestWorkspace, label: str, max_layers: int = 40) -> EnvironmentLock:
    path = lock_path(label)
    text = (ws.root / path).read_text()
    return EnvironmentLock(label, path, hashlib.sha256(text.encode()).hexdigest(), lockfile.parse(text), max_layers)


def found(ws: TestWorkspace, label: str) -> dict[str, EnvironmentLock]:
    ctx, _ = context(ws, label)
    return {entry.label: entry for entry in workspace_locks(ctx, own(ws, label))}


def test_lock_paths_of_labels_in_the_root_and_in_nested_packages():
    assert lock_path("//:ci") == "pylock.ci.toml"
    assert lock_path("//envs:prod") == "envs/pylock.prod.toml"
    assert lock_path("//team/ml:prod") == "team/ml/pylock.prod.toml"


def test_every_declared_environment_of_the_workspace_enters_by_label_and_nothing_else(ws, tmp_path):
    ws.write("graphbuild.toml", '[workspace]\nignore = ["fixtures"]\n')
    ws.write("BUILD.envs", 'environment(name = "ci")\n')
    ws.write("pylock.ci.toml", DEV_LOCK)
    ws.write("a/BUILD.envs", 'environment(name = "prod")\nenvironment(name = "dev")\n'
                             'environment(name = "unlocked")\n')
    ws.write("a/pylock.prod.toml", PROD_LOCK)
    ws.write("a/pylock.dev.toml", DEV_LOCK)
    ws.write("a/pylock.gone.toml", PROD_LOCK)  # no environment declares it (renamed, say)
    ws.write("team/ml/BUILD.envs", 'environment(name = "prod")\n')  # the same name, another package
    ws.write("team/ml/pylock.prod.toml", DEV_LOCK)
    ws.write("fixtures/BUILD.envs", 'environment(name = "x")\n')  # ignored by graphbuild.toml
    ws.write("fixtures/pylock.x.toml", PROD_LOCK)
    ws.write(".hidden/BUILD.envs", 'environment(name = "h")\n')
    ws.write(".hidden/pylock.h.toml", PROD_LOCK)
    ws.write("nobuild/pylock.prod.toml", PROD_LOCK)  # not a package
    locks = found(ws, "//a:prod")
    assert list(locks) == ["//:ci", "//a:dev", "//a:prod", "//team/ml:prod"]
    assert locks["//:ci"].path == "pylock.ci.toml" and locks["//team/ml:prod"].path == "team/ml/pylock.prod.toml"
    assert locks["//team/ml:prod"].lock.packages.keys() == lockfile.parse(DEV_LOCK).packages.keys()
    # every environment plans from the same locks: the same plan key from each of them
    from graphbuild.rules.python.workspace_locks import plan_key

    keys = {plan_key(found(ws, label).values()) for label in ("//a:prod", "//a:dev", "//team/ml:prod", "//:ci")}
    assert len(keys) == 1


def test_a_broken_package_a_broken_lock_and_links_out_of_the_workspace_are_left_out_without_error(ws, tmp_path):
    ws.write("a/BUILD.envs", 'environment(name = "prod")\n')
    ws.write("a/pylock.prod.toml", PROD_LOCK)
    ws.write("broken/BUILD.envs", 'environment(name = "x"\n')  # does not parse
    ws.write("broken/pylock.x.toml", PROD_LOCK)
    ws.write("bad/BUILD.envs", 'environment(name = "damaged")\nenvironment(name = "binary")\n'
                               'environment(name = "dir")\nenvironment(name = "outside")\n')
    ws.write("bad/pylock.damaged.toml", PROD_LOCK.replace("[[packages]]", "[[packages]", 1))
    (ws.root / "bad/pylock.binary.toml").write_bytes(b"\xff\xfe\x00lock")
    (ws.root / "bad/pylock.dir.toml").mkdir()
    secret = tmp_path / "outside.toml"
    secret.write_text(DEV_LOCK)
    os.symlink(secret, ws.root / "bad/pylock.outside.toml")
    assert list(found(ws, "//a:prod")) == ["//a:prod"]


def test_each_environment_plans_under_its_own_cap_and_a_fork_under_its_parents(ws):
    ws.write("a/BUILD.envs", 'environment(name = "prod", max_layers = 6)\n'
                             'environment(name = "next", fork = ":prod")\n'
                             'environment(name = "wide", fork = ":prod", max_layers = 30)\n')
    ws.write("b/BUILD.envs", 'environment(name = "dev")\n')
    for name in ("prod", "next", "wide"):
        ws.write(f"a/pylock.{name}.toml", PROD_LOCK)
    ws.write("b/pylock.dev.toml", DEV_LOCK)
    locks = found(ws, "//b:dev")
    assert {label: entry.max_layers for label, entry in locks.items()} == {
        "//a:next": 6, "//a:prod": 6, "//a:wide": 30, "//b:dev": 40}


def test_the_workspace_is_loaded_once_per_analysis_and_each_lock_parsed_once(ws, monkeypatch):
    for index in range(5):
        ws.write(f"p{index}/BUILD.envs", 'environment(name = "prod")\n')
        ws.write(f"p{index}/pylock.prod.toml", PROD_LOCK + f"# {index}\n")
    loader = Loader(Workspace.at(ws.root), BUILTIN_RULES)
    analyzer = Analyzer(loader, digest_file)
    walks = []
    real_walk = Workspace.packages_under
    monkeypatch.setattr(Workspace, "packages_under", lambda self, p: walks.append(p) or real_walk(self, p))
    parses = []
    real_parse = lockfile.parse
    monkeypatch.setattr(lockfile, "parse", lambda text: parses.append(1) or real_parse(text))
    _PARSED.clear()
    plans = []
    for index in range(5):
        label = f"//p{index}:prod"
        target = loader.target(Label.parse(label))
        ctx = RuleContext(target, {}, ws.root, digest_file, real_roots=analyzer.real_roots, declared=analyzer.declared)
        locks = workspace_locks(ctx, own(ws, label))
        assert len(locks) == 5
        plans.append(cached_plan(locks, lambda entries: plan_layers(
            {e.label: planned_packages(e.lock) for e in entries})))
    assert walks == [""]  # one walk of the workspace for the five environments
    # each of the five locks parsed once by the discovery (p0's by p1, the others by p0), and
    # five times by this test's `own` (the rule parses its own lock as it reads it)
    assert len(parses) == 5 + 5
    assert all(plan is plans[0] for plan in plans)  # one plan for all five


def test_the_text_report_names_a_few_sharing_environments_and_json_all():
    from graphbuild.rules.python.layers_report import layers_text

    envs = [f"//team{i:02d}:prod" for i in range(54)]
    layer = {"position": 1, "name": "pkg.six", "environments": envs, "wheel_size": None, "chain_shared": True,
             "packages": [{"name": "six", "version": "1.16.0"}], "why": "its own layer"}
    text = layers_text({"environment": envs[0], "layers": [layer], "own_layers": 2, "max_layers": 40,
                        "other_layers": ["layer.venv"]})
    assert "shared by 54: //team00:prod, //team01:prod, //team02:prod, //team03:prod, //team04:prod and 49 more" \
        in text
    assert "//team05:prod" not in text
