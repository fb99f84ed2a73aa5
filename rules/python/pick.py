"""`pick`: the smallest environment of the workspace that can run a workload.

A workload is any combination of:
  * requirements (PEP 508 strings), checked against each environment's lock (`compat`);
  * a library: its requirements, and its tests must pass there (its matrix cell: the
    environment's own test node, or a probe);
  * a script: its top-level imports, mapped to distributions through the metadata of the
    wheels each environment installs (`imports.index_modules`, one node per environment).

"Smallest" is, in this order: fewest layers above the shared core (the py_layers every
environment of the workspace has), then fewest installed bytes (what the shipped image's
layers install), then the label. The first environment in that order that qualifies is
chosen; every other one is listed with why it was not (rejected, or simply larger).

Use from other verbs (`exec --pick`): `plan(...)` declares the nodes to run (one index per
environment, the library's matrix cells), the caller runs `plan.wanted` through the
scheduler, then `finish(plan, outcomes, read_output)` gives the `Choice`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from graphbuild.api import Label, RuleContext, SpecError
from graphbuild.rules.oci import reference
from graphbuild.rules.python import compat, matrix
from graphbuild.rules.python.imports import index_modules
from graphbuild.rules.python.matrix_report import short

ORDER = "fewest layers above the shared core, then fewest installed bytes, then name"


@dataclass
class Candidate:
    label: str
    reference: str
    layers_above_core: int
    installed_bytes: int | None = None
    problems: list[str] = field(default_factory=list)
    provides: dict[str, str] = field(default_factory=dict)  # imported module -> distribution here

    @property
    def qualifies(self) -> bool:
        return not self.problems

    def sort_key(self) -> tuple[int, int, str]:
        return (self.layers_above_core, self.installed_bytes if self.installed_bytes is not None else 1 << 62,
                self.label)

    def as_json(self) -> dict[str, Any]:
        return {"label": self.label, "image": self.reference, "layers_above_core": self.layers_above_core,
                "installed_bytes": self.installed_bytes, "qualifies": self.qualifies, "reasons": self.problems,
                "imports": self.provides}


@dataclass
class Choice:
    chosen: Candidate | None
    ranking: list[Candidate]  # smallest first
    core: list[str]  # the shared core's py_layer labels

    @property
    def nearest(self) -> list[Candidate]:
        """When nothing qualifies: the candidates missing the least, smallest first."""
        fewest = min((len(c.problems) for c in self.ranking), default=0)
        return [c for c in self.ranking if len(c.problems) == fewest]

    def as_json(self) -> dict[str, Any]:
        return {"chosen": self.chosen.as_json() if self.chosen else None, "order": ORDER, "core": self.core,
                "ranking": [c.as_json() for c in self.ranking],
                "nearest": [c.label for c in self.nearest] if self.chosen is None else []}


def parse_requirements(texts: list[str]) -> list[str]:
    """The `--requires` strings, each checked as PEP 508 (a bad one is a usage error, exit 2)."""
    for text in texts:
        try:
            Requirement(text)
        except InvalidRequirement as err:
            raise SpecError(f"--requires {text!r} is not a PEP 508 requirement: {str(err).splitlines()[0]}",
                            hint="e.g. --requires 'pandas>=2.2' 'pyarrow'") from None
    return list(texts)


def shared_core(workspace: matrix.Workspace) -> list[str]:
    """The py_layers (bottom first) that every environment of the workspace has."""
    stacks = [env.stack for env in workspace.environments.values()]
    if not stacks:
        return []
    return [label for label in stacks[0] if all(label in s for s in stacks[1:])]


def image_reference(env: matrix.EnvironmentView, workspace_root: Any) -> str:
    """Where the environment's image is pushed (`push`), else the tag `graphbuild run` loads it as."""
    if env.attrs.push:
        try:
            return str(reference.destination(env.attrs.push, workspace_root).reference)
        except (reference.InvalidReference, AttributeError):
            return env.attrs.push
    label = Label.parse(env.label)
    return f"graphbuild/{label.package}/{label.name}:latest".replace("//", "/")


@dataclass
class Plan:
    workspace: matrix.Workspace
    environments: list[str]
    requires: list[str]
    library: str | None
    imports: dict[str, int]  # module -> line of the script
    core: list[str]
    modules_nodes: dict[str, str]  # environment -> its modules index node
    cells: matrix.Plan | None
    nodes: list[Any]  # declared after analysis: to add to it
    workspace_root: Any

    @property
    def wanted(self) -> list[str]:
        return [*self.modules_nodes.values(), *(self.cells.test_nodes if self.cells else [])]


def plan(analysis: Any, workspace: matrix.Workspace, context_for: Callable[[Label], RuleContext], *,
         requires: list[str], library: str | None = None, imports: Mapping[str, int] | None = None,
         workspace_root: Any = None) -> Plan:
    """Declare what `pick` must run: the module index of every environment with an image,
    and, for `library`, its matrix cells."""
    envs = sorted(workspace.environments)
    declared: list[Any] = []
    modules: dict[str, str] = {}
    for label in envs:
        env = workspace.environments[label]
        if env.image is None:
            continue
        ctx = context_for(Label.parse(label))
        handle = ctx.action("modules", executor=index_modules, outputs=["modules.json"], kind="python.modules",
                            inputs={"layers": list(env.info.layers)},
                            description=f"index of the modules {label} installs")
        declared.extend(ctx.nodes[-1:])
        modules[label] = handle.id
    cells = None
    if library is not None:
        cells = matrix.plan(analysis, workspace, [e for e in envs if e in modules], [library], context_for)
        declared.extend(cells.nodes)
    return Plan(workspace, envs, list(requires), library, dict(imports or {}), shared_core(workspace), modules,
                cells, declared, workspace_root)


def finish(plan: Plan, outcomes: Mapping[str, Any], read_output: Callable[[str, str], bytes]) -> Choice:
    """Rank the environments from the executed nodes' outcomes; `read_output(node, name)`
    returns an output's bytes."""
    indexes: dict[str, dict[str, Any]] = {}
    for env, node in plan.modules_nodes.items():
        outcome = outcomes.get(node)
        if outcome is not None and outcome.ok:
            indexes[env] = json.loads(read_output(node, "modules.json"))
    known: dict[str, str] = {}  # module -> a distribution some environment installs it from
    for index in indexes.values():
        for module, dists in index["modules"].items():
            known.setdefault(module, canonicalize_name(dists[0]))
    cells = {c.environment: c for c in matrix.finish(plan.cells, outcomes)} if plan.cells else {}
    candidates = []
    for label in plan.environments:
        env = plan.workspace.environments[label]
        above = len([layer for layer in env.stack if layer not in plan.core])
        candidate = Candidate(label, image_reference(env, plan.workspace_root), above)
        candidates.append(candidate)
        if label not in plan.modules_nodes:
            candidate.problems.append("builds no image (it has no base)")
            continue
        index = indexes.get(label)
        if index is None:
            outcome = outcomes.get(plan.modules_nodes[label])
            candidate.problems.append(f"its layers could not be built: {getattr(outcome, 'message', '') or '?'}")
            continue
        candidate.installed_bytes = int(index["installed_bytes"])
        candidate.problems.extend(compat.check_requirements(plan.requires, env.holdings))
        for module, line in plan.imports.items():
            dists = index["modules"].get(module)
            if dists:
                candidate.provides[module] = canonicalize_name(dists[0])
            elif module in known:
                candidate.problems.append(f"missing package {known[module]} (for `import {module}`, line {line})")
            else:
                candidate.problems.append(f"no package provides module {module} (`import {module}`, line {line}; "
                                          "no environment of the workspace has it)")
        cell = cells.get(label)
        if cell is not None and cell.status != matrix.PASS:
            lib = short(cell.library)
            what = {matrix.FAIL: f"the tests of {lib} fail here ({cell.reason})",
                    matrix.INCOMPATIBLE: f"{lib}: {cell.reason}",
                    matrix.NOT_APPLICABLE: f"{lib} does not apply: {cell.reason}"}
            candidate.problems.append(what.get(cell.status, f"{lib}: {cell.status}: {cell.reason}"))
    ranking = sorted(candidates, key=Candidate.sort_key)
    chosen = next((c for c in ranking if c.qualifies), None)
    return Choice(chosen, ranking, plan.core)


def render(choice: Choice) -> str:
    lines = []
    if choice.chosen:
        lines.append(f"picked {choice.chosen.label}: image {choice.chosen.reference}")
    else:
        lines.append("no environment qualifies")
    lines.append(f"ranking ({ORDER}; shared core: {', '.join(choice.core) or 'none'}):")
    width = max((len(c.label) for c in choice.ranking), default=0)
    for number, candidate in enumerate(choice.ranking, 1):
        size = f"{candidate.installed_bytes / 1e6:.1f} MB" if candidate.installed_bytes is not None else "? MB"
        layers = f"{candidate.layers_above_core} layer{'s' if candidate.layers_above_core != 1 else ''} above core"
        if candidate is choice.chosen:
            verdict = "chosen"
        elif candidate.qualifies:
            verdict = "qualifies (larger)"
        else:
            verdict = "rejected: " + "; ".join(candidate.problems)
        lines.append(f"  {number}. {candidate.label.ljust(width)}  {layers}, {size:>9}  {verdict}")
    if choice.chosen is None:
        lines.append("nearest (what a fork of one would have to add):")
        lines.extend(f"  {c.label}: {'; '.join(c.problems)}" for c in choice.nearest)
    return "\n".join(lines)
