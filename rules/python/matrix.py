"""The compatibility matrix: for each library x environment, pass / fail / incompatible / not applicable.

Planning reads only the analysed workspace and the environments' locks:
  * a library the environment lists: its cell is the environment's own test node (`test.<lib>`);
  * a library it does not list: decided from the lock first (`compat.check`); when the lock
    can satisfy it, a *probe* is declared (`env_image.declare_probe`): the library (and the
    in-repo libraries it needs that the environment lacks) as extra layers over the
    environment's test image, and its tests in it; never pushed;
  * incompatible and not applicable cells declare nothing: no image is built for them.

Every cell that runs is a node with a key like any other: a second matrix with nothing changed
runs no test, and a probe whose library and closure match a listed library's (or another
probe's) gets that result from the cache.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from graphbuild.api import Label, OutputRef, RuleContext
from graphbuild.rules.oci.base_image import BaseImageInfo
from graphbuild.rules.python import compat, lockfile
from graphbuild.rules.python.env_image import ImageInfo, declare_probe
from graphbuild.rules.python.environment import EnvironmentAttrs, EnvironmentInfo
from graphbuild.rules.python.lockfile import TEST_RUNNER_GROUP
from graphbuild.rules.python.providers import PyLayerInfo, PyLibraryInfo
from graphbuild.rules.python.requirements import canonicalize_name, name_of

PASS, FAIL, INCOMPATIBLE, NOT_APPLICABLE, ERROR = "pass", "fail", "incompatible", "not applicable", "error"
STATUSES = (PASS, FAIL, INCOMPATIBLE, NOT_APPLICABLE, ERROR)
ENVIRONMENT_RULE = "environment"
LIBRARY_RULES = ("py_library", "git_library")


@dataclass
class Cell:
    environment: str
    library: str
    status: str = ""
    reason: str = ""
    node: str | None = None  # the test node deciding it (the environment's own, or a probe)
    probe: bool = False
    failing: list[str] = field(default_factory=list)
    test_run: str | None = None  # "executed" or "reused" (the test node's result), None: no test

    def as_json(self) -> dict[str, Any]:
        return {"environment": self.environment, "library": self.library, "status": self.status,
                "reason": self.reason or None, "failing": self.failing, "probe": self.probe, "node": self.node,
                "test_run": self.test_run}


@dataclass
class EnvironmentView:
    """What the matrix and `pick` know of an environment."""

    label: str
    attrs: EnvironmentAttrs
    info: EnvironmentInfo
    image: ImageInfo | None
    base: BaseImageInfo | None
    lock: lockfile.Lock
    holdings: compat.Holdings
    stack: list[str]  # py_layer labels, bottom first


@dataclass
class Workspace:
    """The analysed workspace as the matrix needs it."""

    environments: dict[str, EnvironmentView]
    libraries: dict[str, PyLibraryInfo]
    needs: dict[str, compat.Need]  # canonical distribution name -> Need
    needs_by_label: dict[str, compat.Need] = field(default_factory=dict)


def view(analysis: Any, workspace_root: Path) -> Workspace:
    """Environments and libraries of an analysis (of `//...`, or of the requested targets)."""
    environments: dict[str, EnvironmentView] = {}
    libraries: dict[str, PyLibraryInfo] = {}
    for label, target in analysis.targets.items():
        providers = analysis.providers.get(label, {})
        if target.rule.name == ENVIRONMENT_RULE and EnvironmentInfo in providers:
            environments[str(label)] = _environment(analysis, target, providers, workspace_root)
        elif target.rule.name in LIBRARY_RULES and PyLibraryInfo in providers:
            libraries[str(label)] = providers[PyLibraryInfo]
    locks = [env.lock for env in environments.values()]
    by_label = {label: _need(library, locks) for label, library in libraries.items()}
    needs = {need.name: need for need in by_label.values()}
    return Workspace(environments, libraries, needs, by_label)


def _environment(analysis: Any, target: Any, providers: Mapping[type, Any], root: Path) -> EnvironmentView:
    attrs: EnvironmentAttrs = target.attrs
    info: EnvironmentInfo = providers[EnvironmentInfo]
    lock = lockfile.parse((root / info.lock_path).read_text())
    test_only = set()
    for group in lock.layers:
        if group["label"] == TEST_RUNNER_GROUP:
            test_only.update(group["packages"])
    shipped = {name: str(entry.get("version", "")) for name, entry in lock.packages.items() if name not in test_only}
    listed = {canonicalize_name(lock.libraries.get(lib.label, {}).get("name") or lib.name): lib.label
              for lib in info.libraries}
    holdings = compat.Holdings(python=attrs.python, platform=attrs.platform, packages=shipped,
                               test_only=frozenset(test_only), libraries=listed)
    stack: list[str] = []
    for layer in attrs.layers:
        for entry in analysis.providers[layer][PyLayerInfo].stack:
            if entry[0] not in stack:
                stack.append(entry[0])
    base = analysis.providers[attrs.base].get(BaseImageInfo) if attrs.base is not None else None
    return EnvironmentView(str(target.label), attrs, info, providers.get(ImageInfo), base, lock, holdings, stack)


def _need(library: PyLibraryInfo, locks: list[lockfile.Lock]) -> compat.Need:
    if library.kind == "git":  # what it asks for is known from a lock that lists it
        locked = next((lock.libraries[library.label] for lock in locks if library.label in lock.libraries), {})
        return compat.Need(library.label, canonicalize_name(locked.get("name") or library.name),
                           tuple(locked.get("requirements", [])), "", library.deps)
    return compat.Need(library.label, library.name, tuple(r.value for r in library.requirements),
                       library.requires_python, library.deps)


# -- planning ---------------------------------------------------------------------------------


@dataclass
class Plan:
    workspace: Workspace
    environments: list[str]
    libraries: list[str]
    cells: list[Cell]
    nodes: list[Any]  # probe nodes declared (graphbuild Node objects), to add to the analysis

    @property
    def test_nodes(self) -> list[str]:
        return list(dict.fromkeys(c.node for c in self.cells if c.node))


def plan(analysis: Any, workspace: Workspace, environments: list[str], libraries: list[str],
         context_for: Callable[[Label], RuleContext]) -> Plan:
    """Decide what can be decided from the locks; declare a probe for every other cell."""
    cells: list[Cell] = []
    declared: list[Any] = []
    keys = _probe_keys(workspace.libraries)
    for env_label in environments:
        env = workspace.environments[env_label]
        ctx: RuleContext | None = None
        listed = {lib.label for lib in env.info.libraries}
        for lib_label in libraries:
            library = workspace.libraries[lib_label]
            cell = Cell(env_label, lib_label)
            cells.append(cell)
            if env.image is None or env.base is None:
                cell.status, cell.reason = NOT_APPLICABLE, "the environment builds no image (it has no base)"
                continue
            if lib_label in listed:
                short = lib_label.rsplit(":", 1)[-1]
                cell.node = f"{env_label}#test.{short}"
                continue
            need = _need_of(workspace, library)
            verdict = compat.check(need, env.holdings, workspace.needs)
            if verdict.status == compat.NOT_APPLICABLE:
                cell.status, cell.reason = NOT_APPLICABLE, verdict.reason
                continue
            if verdict.status == compat.INCOMPATIBLE:
                cell.status, cell.reason = INCOMPATIBLE, "; ".join(verdict.problems)
                continue
            wheel = _wheel(workspace, library)
            if wheel is None:
                cell.status, cell.reason = ERROR, (f"{lib_label} is a git library no environment lists: its commit "
                                                   "is unknown (list it in an environment and lock it)")
                continue
            if ctx is None:
                ctx = context_for(Label.parse(env_label))
            before = len(ctx.nodes)
            cell.node = _declare(ctx, env, workspace, library, verdict.adds, keys).id
            cell.probe = True
            declared.extend(ctx.nodes[before:])
    return Plan(workspace, environments, libraries, cells, declared)


def _need_of(workspace: Workspace, library: PyLibraryInfo) -> compat.Need:
    return workspace.needs_by_label[library.label]


def _probe_keys(libraries: Mapping[str, PyLibraryInfo]) -> dict[str, str]:
    """A short, unique name per library for its probe nodes (`probe.<key>.test`)."""
    shorts: dict[str, list[str]] = {}
    for label in libraries:
        shorts.setdefault(label.rsplit(":", 1)[-1], []).append(label)
    keys = {}
    for short, labels in shorts.items():
        for label in labels:
            keys[label] = short if len(labels) == 1 else re.sub(r"[^A-Za-z0-9_]+", "_", label.strip("/"))
    return keys


def _wheel(workspace: Workspace, library: PyLibraryInfo) -> dict[str, Any] | None:
    if library.wheel:
        return dict(library.wheel)
    for env in workspace.environments.values():  # a git library: the wheel an environment built
        if library.label in env.info.wheels:
            return dict(env.info.wheels[library.label])
    return None


def _sources(library: PyLibraryInfo, wheel: dict[str, Any]) -> dict[str, Any]:
    if library.kind == "git":
        return {"sources": OutputRef(wheel["wheel"].node_id, "source.tar"), "source_root": ""}
    return {"sources": list(library.files), "source_root": library.root}


def _declare(ctx: RuleContext, env: EnvironmentView, workspace: Workspace, library: PyLibraryInfo,
             adds: Iterable[str], keys: Mapping[str, str]) -> Any:
    chain = [workspace.libraries[label] for label in adds] + [library]
    wheels = {lib.label: _wheel(workspace, lib) or {} for lib in chain}
    sources = {lib.label: _sources(lib, wheels[lib.label]) for lib in chain}
    closures = {lib.label: env.lock.closure([name_of(r) for r in _need_of(workspace, lib).requirements
                                             if _is_package(r, env.lock)]) for lib in chain}
    present = dict(env.holdings.libraries) | {lib.name: lib.label for lib in chain}
    library_deps = {lib.label: _library_deps(lib, workspace, present) for lib in chain}
    return declare_probe(ctx, env.attrs, env.info, env.base, env.image, chain, sources, wheels, closures,
                         library_deps, keys[library.label])


def _is_package(requirement: str, lock: lockfile.Lock) -> bool:
    try:
        return name_of(requirement) in lock.packages
    except ValueError:
        return False


def _library_deps(library: PyLibraryInfo, workspace: Workspace, present: Mapping[str, str]) -> list[str]:
    """The in-repo libraries (of those in the probe image) `library` needs, transitively."""
    by_label = workspace.needs_by_label
    seen: set[str] = set()
    todo = [library.label]
    while todo:
        need = by_label.get(todo.pop())
        if need is None:
            continue
        names = [_safe_name(r) for r in need.requirements]
        for dep in [*need.deps, *(present[n] for n in names if n in present)]:
            if dep not in seen and dep != library.label:
                seen.add(dep)
                todo.append(dep)
    return sorted(d for d in seen if d in present.values())


def _safe_name(requirement: str) -> str:
    try:
        return name_of(requirement)
    except ValueError:
        return ""


# -- results ----------------------------------------------------------------------------------


def finish(plan: Plan, outcomes: Mapping[str, Any]) -> list[Cell]:
    """Fill the cells from the test nodes' outcomes (`NodeOutcome`s by node id)."""
    for cell in plan.cells:
        if cell.node is None:
            continue
        outcome = outcomes.get(cell.node)
        if outcome is None:
            cell.status, cell.reason = ERROR, "its test node did not run"
            continue
        cached = outcome.status == "cached" or outcome.detail == "cached failure"
        if outcome.status in ("ran", "cached"):
            cell.status = PASS
            cell.reason = str(outcome.metadata.get("summary", "")).split(" (in ")[0]
        elif outcome.status == "failed" and outcome.metadata.get("failing") is not None and \
                outcome.metadata.get("exit_code") in (1, 2, 5):
            cell.status = FAIL
            cell.failing = list(outcome.metadata.get("failing") or [])
            cell.reason = ("failing: " + ", ".join(t.rsplit("::", 1)[-1] for t in cell.failing[:5])
                           + (f" and {len(cell.failing) - 5} more" if len(cell.failing) > 5 else "")
                           if cell.failing else outcome.message)
        else:
            cell.status, cell.reason = ERROR, outcome.message or f"test node {outcome.status}"
        if outcome.status != "skipped":
            cell.test_run = "reused" if cached else "executed"
    return plan.cells


def counts(cells: list[Cell]) -> dict[str, int]:
    found = {status: 0 for status in STATUSES}
    for cell in cells:
        found[cell.status] = found.get(cell.status, 0) + 1
    runs: dict[str, str] = {}
    for cell in cells:
        if cell.node and cell.test_run:
            runs[cell.node] = cell.test_run
    found["test_runs_executed"] = sum(1 for v in runs.values() if v == "executed")
    found["test_runs_reused"] = sum(1 for v in runs.values() if v == "reused")
    found["cells"] = len(cells)
    return found
