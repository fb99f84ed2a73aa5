"""Evaluate BUILD.envs files (Starlark, in the evaluator process) into validated targets."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from graphbuild.errors import GraphbuildError, Location, SpecError, did_you_mean, raise_collected
from graphbuild.labels import Label, Pattern
from graphbuild.loading.evaluator import Evaluator, Limits, RuleCall
from graphbuild.loading.plugins import Plugin, load_plugins
from graphbuild.loading.workspace import BUILD_FILE, Workspace
from graphbuild.rule import Attrs, LazyRule, RuleDef


@dataclass(frozen=True)
class Target:
    """A rule instantiated in a BUILD.envs file, its attributes validated."""

    label: Label
    rule: RuleDef
    attrs: Attrs
    location: Location
    attr_locations: Mapping[str, Location] = field(default_factory=dict)

    def attr_location(self, attr: str) -> Location:
        return self.attr_locations.get(attr, self.location)


@dataclass
class Package:
    name: str
    build_file: str  # workspace-relative
    targets: dict[str, Target] = field(default_factory=dict)


class Loader:
    """Loads packages on demand and caches them; one per command (and per revision)."""

    def __init__(self, workspace: Workspace, rules: Mapping[str, RuleDef | LazyRule], *,
                 linked_roots: Iterable[Path] = ()):
        """`linked_roots`: directories outside the workspace that its links may point into
        (`affected` links the working tree's ignored files into a checkout of another revision)."""
        self.workspace = workspace
        self.builtin_rules = dict(rules)
        self._plugins: list[Plugin] | None = None
        self._packages: dict[str, Package] = {}
        #: packages `packages_that_load` found broken (not evaluated again by it)
        self._broken: set[str] = set()
        loading = workspace.settings.loading
        self._evaluator = Evaluator(workspace.root, BUILD_FILE,
                                    Limits(loading.max_steps, loading.timeout, loading.max_memory_mb),
                                    tuple(linked_roots))

    @property
    def plugins(self) -> list[Plugin]:
        if self._plugins is None:
            self._plugins = load_plugins(self.workspace, self.builtin_rules)
        return self._plugins

    @property
    def rules(self) -> dict[str, RuleDef | LazyRule]:
        """Every rule a BUILD file can call: the built-in ones and the plugins'."""
        found: dict[str, RuleDef | LazyRule] = dict(self.builtin_rules)
        for plugin in self.plugins:
            found.update(plugin.rules)
        return found

    def close(self) -> None:
        self._evaluator.close()

    # -- packages and targets ---------------------------------------------------------------

    def package(self, name: str) -> Package:
        if name not in self._packages:
            self._packages[name] = self._evaluate_build_file(name)
        return self._packages[name]

    def has_package(self, name: str) -> bool:
        """A BUILD.envs is there (of whatever kind: the evaluator says if it cannot be read)."""
        try:
            return os.path.lexists(self.workspace.build_file(name))
        except (OSError, ValueError):  # a name too long for the file system, say: no such package
            return False

    def packages_that_load(self, names: list[str]) -> list[Package]:
        """The packages among `names` whose BUILD.envs loads, evaluated together; one that does
        not is left out (its error is reported wherever that package is asked for)."""
        wanted = [name for name in names if name not in self._packages and self.has_package(name)]
        if len(wanted) > 1:
            self._evaluator.prefetch(wanted, list(self.rules))
        found = []
        for name in names:
            if name not in self._packages and name not in self._broken and self.has_package(name):
                try:
                    self.package(name)
                except GraphbuildError:
                    self._broken.add(name)
            if name in self._packages:
                found.append(self._packages[name])
        return found

    def target(self, label: Label, *, referenced_at: Location | None = None) -> Target:
        if not self.has_package(label.package):
            known = self.workspace.packages_under("")
            hint = did_you_mean(label.package, known, prefix="did you mean package")
            raise SpecError(f"no package '//{label.package}' for label {label}: there is no "
                            f"{(label.package + '/' if label.package else '')}{BUILD_FILE}",
                            location=referenced_at, hint=hint)
        package = self.package(label.package)
        if label.name not in package.targets:
            # compare names, not whole labels: the shared '//pkg:' would make any name look close
            close = difflib.get_close_matches(label.name, sorted(package.targets), n=3, cutoff=0.6)
            hint = ("did you mean " + " or ".join(repr(str(Label(label.package, n))) for n in close) + "?"
                    if close else None)
            raise SpecError(f"no target '{label.name}' in package //{label.package} ({package.build_file})",
                            location=referenced_at, hint=hint)
        return package.targets[label.name]

    def expand(self, pattern: Pattern) -> list[Label]:
        """The labels a pattern names; a pattern matching nothing is an error."""
        if pattern.name is not None:
            self.target(Label(pattern.package, pattern.name))
            return [Label(pattern.package, pattern.name)]
        packages = self.workspace.packages_under(pattern.package) if pattern.recursive else [pattern.package]
        wanted = [pkg for pkg in packages if pkg not in self._packages and self.has_package(pkg)]
        if len(wanted) > 1:
            self._evaluator.prefetch(wanted, list(self.rules))
        labels: list[Label] = []
        errors: list[GraphbuildError] = []
        for pkg in packages:
            if not self.has_package(pkg):
                continue
            try:
                labels.extend(Label(pkg, n) for n in self.package(pkg).targets)
            except GraphbuildError as err:
                errors.append(err)
        raise_collected(errors)
        if not labels:
            raise SpecError(f"pattern {pattern} matches no targets",
                            hint=f"is there a {BUILD_FILE} under //{pattern.package}?")
        return labels

    # -- evaluation -------------------------------------------------------------------------

    def _evaluate_build_file(self, name: str) -> Package:
        rules = self.rules
        rel = f"{name}/{BUILD_FILE}".lstrip("/")
        evaluated = self._evaluator.evaluate(name, list(rules))
        package = Package(name, rel)
        errors: list[GraphbuildError] = []
        for call in evaluated.calls:
            rule = rules[call.rule]
            target = _target(package, rule.resolve() if isinstance(rule, LazyRule) else rule, call, errors)
            if target is not None:
                package.targets[target.label.name] = target
        raise_collected(errors)
        return package


def _target(package: Package, rule: RuleDef, call: RuleCall, errors: list[GraphbuildError]) -> Target | None:
    """The target a rule call declares, validated; None (and `errors` extended) if it is wrong."""
    location = Location(package.build_file, call.line, call.col)
    attr_locations = {attr: Location(package.build_file, line) for attr, line in call.attr_lines.items()}
    kwargs = call.kwargs
    if call.positional:
        errors.append(SpecError(f"rule '{rule.name}' takes keyword arguments only", location=location,
                                hint=f'write {rule.name}(name = "...", ...)'))
        return None
    name = kwargs.get("name")
    if not isinstance(name, str) or not name:
        errors.append(SpecError(f"rule '{rule.name}' needs a 'name' (a non-empty string)", location=location))
        return None
    fields = rule.attrs.model_fields
    unknown = [k for k in kwargs if k not in fields]
    for key in unknown:
        hint = did_you_mean(key, list(fields)) or ""
        valid = ", ".join(sorted(fields))
        errors.append(SpecError(
            f"rule '{rule.name}' has no attribute '{key}'",
            location=attr_locations.get(key, location),
            hint=(hint + " " if hint else "") + f"valid attributes: {valid}",
        ))
    if unknown:
        return None
    try:
        attrs = rule.attrs.model_validate(kwargs, context={"package": package.name})
    except ValidationError as err:
        for problem in err.errors():
            field_path = ".".join(str(p) for p in problem["loc"]) or "(attributes)"
            top = str(problem["loc"][0]) if problem["loc"] else ""
            errors.append(SpecError(
                f"rule '{rule.name}' target '{name}': {field_path}: {problem['msg']}",
                location=Location(location.path, attr_locations.get(top, location).line),
            ))
        return None
    if name in package.targets:
        first = package.targets[name].location
        errors.append(SpecError(
            f"duplicate target '{name}' in package //{package.name} (first declared at {first})",
            location=location, hint="give each target of a package its own name",
        ))
        return None
    return Target(Label(package.name, name), rule, attrs, location, attr_locations)
