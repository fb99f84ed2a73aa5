"""Targets -> nodes: call each rule implementation once, dependencies first."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from graphbuild.analysis.context import DeclaredTarget, RuleContext, _TargetKind
from graphbuild.errors import GraphbuildError, SpecError, raise_collected
from graphbuild.graph import DiGraph
from graphbuild.labels import Label
from graphbuild.loading.closure import load_closure
from graphbuild.loading.loader import Loader, Target
from graphbuild.nodes import LOCK_PHASE, PHASES, Node, OutputRef
from graphbuild.rule import DefaultInfo, Provider


@dataclass
class Analysis:
    """The analysed closure of some targets."""

    requested: list[Label]
    targets: dict[Label, Target]
    target_graph: DiGraph  # label str -> dependency label str; edges carry attr and location
    nodes: dict[str, Node]
    action_graph: DiGraph  # node id -> node id it depends on
    target_nodes: dict[Label, list[str]]
    providers: dict[Label, dict[type, Provider]] = field(default_factory=dict)

    def closure(self, labels: Iterable[Label], phase: str) -> list[str]:
        """Node ids needed to take `labels` through `phase`: their nodes of that phase or an
        earlier one, plus every node those depend on; in a deterministic topological order."""
        allowed = (LOCK_PHASE,) if phase == LOCK_PHASE else PHASES[: PHASES.index(phase) + 1]
        stack = [nid for lab in labels for nid in self.target_nodes.get(lab, ())
                 if self.nodes[nid].phase in allowed]
        wanted: set[str] = set()
        while stack:  # one walk from every root at once
            nid = stack.pop()
            if nid not in wanted:
                wanted.add(nid)
                stack.extend(self.nodes[nid].deps)
        return list(reversed(self.action_graph.topological_order(wanted)))


class Analyzer:
    def __init__(self, loader: Loader, digest_file: Callable[[Path], str], *, locking: bool = False,
                 linked_roots: Iterable[Path] = ()):
        """`linked_roots`: directories outside the workspace its files may resolve into (only
        `affected`'s checkout of an old revision, whose ignored files link to the working tree)."""
        self.loader = loader
        self.digest_file = digest_file
        self.locking = locking
        self.real_roots = (loader.workspace.root.resolve(), *(p.resolve() for p in linked_roots))
        self.real_dirs: dict[str, str] = {}
        self._declared: dict[str, tuple[DeclaredTarget, ...]] = {}

    def analyze(self, requested: list[Label]) -> Analysis:
        targets, graph = load_closure(self.loader, requested)
        # loading order is deterministic, so is the order over it
        order = list(reversed(graph.topological_order()))
        analysis = Analysis(requested, targets, graph, {}, DiGraph(), {})
        errors: list[GraphbuildError] = []
        failed: set[str] = set()
        for label_text in order:
            target = targets[_label(label_text)]
            if any(dep in failed for dep in graph.successors(label_text)):
                failed.add(label_text)  # its dependency's error is already reported
                continue
            try:
                self._analyze_target(target, analysis)
            except GraphbuildError as err:
                err.target = err.target or target.label
                errors.append(err)
                failed.add(label_text)
        raise_collected(errors)
        _check_output_names(analysis)
        for node in analysis.nodes.values():
            analysis.action_graph.add_node(node.id)
            for dep in node.deps:
                if dep not in analysis.nodes:
                    raise SpecError(f"node {node.id} depends on unknown node {dep}", location=node.locations.get(dep))
                analysis.action_graph.add_edge(node.id, dep)
        if cycle := analysis.action_graph.find_cycle():  # a rule wired its own nodes in a loop
            raise SpecError("action cycle: " + " -> ".join(a for a, _ in cycle) + f" -> {cycle[0][0]}")
        return analysis

    def _analyze_target(self, target: Target, analysis: Analysis) -> None:
        ctx = RuleContext(target, analysis.providers, self.loader.workspace.root, self.digest_file,
                          locking=self.locking, real_roots=self.real_roots, real_dirs=self.real_dirs,
                          declared=self.declared)
        try:
            returned = target.rule.implementation(ctx, target.attrs)
        except GraphbuildError:
            raise
        except Exception as err:  # a bug in a rule: say which rule and target, keep the cause
            raise SpecError(f"rule '{target.rule.name}' failed while analysing {target.label}: "
                            f"{type(err).__name__}: {err}", location=target.location) from err
        providers: dict[type, Provider] = {_TargetKind: _TargetKind(rule=target.rule.name)}
        for provider in _as_list(returned):
            if not isinstance(provider, Provider):
                raise SpecError(f"rule '{target.rule.name}' returned {type(provider).__name__}, not a Provider",
                                location=target.location)
            providers[type(provider)] = provider
        providers.setdefault(DefaultInfo, DefaultInfo())
        analysis.providers[target.label] = providers
        analysis.target_nodes[target.label] = [n.id for n in ctx.nodes]
        for node in ctx.nodes:
            analysis.nodes[node.id] = node


    def declared(self, rule: str) -> tuple[DeclaredTarget, ...]:
        """`RuleContext.workspace_targets`: the workspace's packages are loaded once per analysis
        (together, as `//...` loads them), whichever target asks first."""
        if rule not in self._declared:
            packages = self.loader.packages_that_load(self.loader.workspace.packages_under(""))
            found = [DeclaredTarget(t.label, t.attrs, t.location) for package in packages
                     for t in package.targets.values() if t.rule.name == rule]
            self._declared[rule] = tuple(sorted(found, key=lambda t: str(t.label)))
        return self._declared[rule]


def _check_output_names(analysis: Analysis) -> None:
    """Two targets of a package may not both produce a file of the same name: they would
    overwrite each other in graphbuild-out/<package>/."""
    owners: dict[tuple[str, str], Label] = {}
    errors: list[GraphbuildError] = []
    for label, providers in analysis.providers.items():
        for ref in providers[DefaultInfo].files:
            if not isinstance(ref, OutputRef) or not ref.node_id.startswith(f"{label}#"):
                continue  # files passed on from another target belong to that target
            slot = (label.package, ref.name)
            first = owners.setdefault(slot, label)
            if first != label:
                errors.append(SpecError(
                    f"{label} and {first} both produce '{ref.name}' in package //{label.package}",
                    location=analysis.targets[label].location, hint="give one of the outputs another name"))
    raise_collected(errors)


def _as_list(returned: object) -> list:
    if returned is None:
        return []
    if isinstance(returned, Provider):
        return [returned]
    return list(returned)  # type: ignore[call-overload]


def _label(text: str) -> Label:
    return Label.parse(text)


def _split_location(text: str) -> tuple[str, int]:
    path, _, line = text.partition(":")
    return path, int(line.split(":")[0]) if line else 0
