"""Evaluate BUILD.envs files in a restricted namespace and record the targets they declare."""

from __future__ import annotations

import ast
import difflib
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from graphbuild.errors import GraphbuildError, Location, SpecError, did_you_mean, raise_collected
from graphbuild.labels import Label, LabelError, Pattern
from graphbuild.loading.sandbox import call_sites, parse_restricted, restricted_builtins
from graphbuild.loading.workspace import BUILD_FILE, Workspace
from graphbuild.rule import Attrs, LazyRule, RuleDef, current_package, is_rule

RULE_FILE_SUFFIX = ".envs"


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


class _PackageEvaluation:
    """Receives the rule calls of one BUILD.envs file while it is evaluated."""

    def __init__(self, package: Package, abs_path: str, tree: ast.Module):
        self.package = package
        self.abs_path = abs_path
        self.calls = call_sites(tree)
        self.errors: list[GraphbuildError] = []

    def _call_site(self) -> tuple[Location, ast.Call | None]:
        frame = sys._getframe(2)
        while frame is not None and frame.f_code.co_filename != self.abs_path:
            frame = frame.f_back
        if frame is None:
            return Location(self.package.build_file), None
        positions = list(frame.f_code.co_positions())[frame.f_lasti // 2]
        line, _, col, _ = positions
        call = self.calls.get((line or frame.f_lineno, col or 0))
        return Location(self.package.build_file, line or frame.f_lineno, (col or 0) + 1), call

    def declare(self, rule: RuleDef, args: tuple, kwargs: dict[str, Any]) -> None:
        location, call = self._call_site()
        attr_locations: dict[str, Location] = {}
        for kw in call.keywords if call else ():
            if kw.arg:
                attr_locations[kw.arg] = Location(location.path, kw.value.lineno)
                # each item of a literal list has its own line: `why` points at the one that changed
                if isinstance(kw.value, ast.List | ast.Tuple):
                    for index, item in enumerate(kw.value.elts):
                        attr_locations[f"{kw.arg}[{index}]"] = Location(location.path, item.lineno)
        if args:
            self.errors.append(SpecError(f"rule '{rule.name}' takes keyword arguments only", location=location,
                                         hint=f'write {rule.name}(name = "...", ...)'))
            return
        name = kwargs.get("name")
        if not isinstance(name, str) or not name:
            self.errors.append(SpecError(f"rule '{rule.name}' needs a 'name' (a non-empty string)", location=location))
            return
        fields = rule.attrs.model_fields
        unknown = [k for k in kwargs if k not in fields]
        for key in unknown:
            hint = did_you_mean(key, list(fields)) or ""
            valid = ", ".join(sorted(fields))
            self.errors.append(SpecError(
                f"rule '{rule.name}' has no attribute '{key}'",
                location=attr_locations.get(key, location),
                hint=(hint + " " if hint else "") + f"valid attributes: {valid}",
            ))
        if unknown:
            return
        try:
            attrs = rule.attrs.model_validate(kwargs, context={"package": self.package.name})
        except ValidationError as err:
            for problem in err.errors():
                field_path = ".".join(str(p) for p in problem["loc"]) or "(attributes)"
                top = str(problem["loc"][0]) if problem["loc"] else ""
                self.errors.append(SpecError(
                    f"rule '{rule.name}' target '{name}': {field_path}: {problem['msg']}",
                    location=Location(location.path, attr_locations.get(top, location).line),
                ))
            return
        if name in self.package.targets:
            first = self.package.targets[name].location
            self.errors.append(SpecError(
                f"duplicate target '{name}' in package //{self.package.name} (first declared at {first})",
                location=location, hint="give each target of a package its own name",
            ))
            return
        self.package.targets[name] = Target(Label(self.package.name, name), rule, attrs, location, attr_locations)


class Loader:
    """Loads packages on demand and caches them; one per command."""

    def __init__(self, workspace: Workspace, rules: Mapping[str, RuleDef | LazyRule], rule_api: Mapping[str, Any]):
        self.workspace = workspace
        self.rules = dict(rules)
        self.rule_api = dict(rule_api)  # what rule files see besides the rules
        self._packages: dict[str, Package] = {}
        self._rule_files: dict[str, dict[str, Any]] = {}
        self._loading: list[str] = []

    # -- packages and targets ---------------------------------------------------------------

    def package(self, name: str) -> Package:
        if name not in self._packages:
            self._packages[name] = self._evaluate_build_file(name)
        return self._packages[name]

    def has_package(self, name: str) -> bool:
        return self.workspace.build_file(name).is_file()

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

    def _read(self, path: Path) -> str:
        try:
            return path.read_text()
        except (OSError, UnicodeDecodeError) as err:
            raise SpecError(f"cannot read: {err}", location=Location(self.workspace.rel(path))) from None

    def _evaluate_build_file(self, name: str) -> Package:
        path = self.workspace.build_file(name)
        rel = self.workspace.rel(path)
        source = self._read(path)
        tree = parse_restricted(source, rel, allow_classes=False)
        package = Package(name, rel)
        evaluation = _PackageEvaluation(package, str(path), tree)
        namespace = self._namespace(rel, name, for_rule_file=False)
        token = current_package.set(evaluation)
        try:
            self._exec(tree, str(path), rel, namespace)
        finally:
            current_package.reset(token)
        raise_collected(evaluation.errors)
        return package

    def _namespace(self, rel: str, package: str, *, for_rule_file: bool) -> dict[str, Any]:
        namespace: dict[str, Any] = {"__builtins__": restricted_builtins(allow_classes=for_rule_file)}
        namespace.update(self.rules)
        namespace.update(self._helpers(rel, package))
        if for_rule_file:
            namespace.update(self.rule_api)
            namespace["__name__"] = "graphbuild_workspace." + rel.replace("/", ".").removesuffix(RULE_FILE_SUFFIX)
        return namespace

    def _helpers(self, rel: str, package: str) -> dict[str, Any]:
        loader = self

        def load(label: str, *symbols: str, **aliases: str) -> None:
            frame = sys._getframe(1)
            location = Location(rel, frame.f_lineno)
            exported = loader._load_rule_file(label, package, location)
            for local, symbol in [*((s, s) for s in symbols), *aliases.items()]:
                if symbol not in exported:
                    hint = did_you_mean(symbol, [k for k in exported if not k.startswith("_")])
                    raise SpecError(f"load: {label} has no symbol '{symbol}'", location=location, hint=hint)
                if symbol.startswith("_"):
                    raise SpecError(f"load: '{symbol}' is private to {label}", location=location)
                frame.f_globals[local] = exported[symbol]

        def glob(include: list[str], exclude: list[str] | None = None, allow_empty: bool = True) -> list[str]:
            frame = sys._getframe(1)
            result = loader._glob(package, include, exclude or [])
            if not result and not allow_empty:
                raise SpecError(f"glob({include!r}) matches no files", location=Location(rel, frame.f_lineno))
            return result

        def fail(message: str) -> None:
            frame = sys._getframe(1)
            raise SpecError(str(message), location=Location(rel, frame.f_lineno))

        def package_name() -> str:
            return package

        def print_(*values: Any) -> None:
            frame = sys._getframe(1)
            sys.stderr.write(f"{rel}:{frame.f_lineno}: " + " ".join(str(v) for v in values) + "\n")

        return {"load": load, "glob": glob, "fail": fail, "package_name": package_name, "print": print_}

    def _exec(self, tree: ast.Module, abs_path: str, rel: str, namespace: dict[str, Any]) -> None:
        # dont_inherit: this module's `from __future__ import annotations` must not turn the
        # user's annotations into strings (pydantic could not resolve them in a rule file)
        code = compile(tree, abs_path, "exec", dont_inherit=True)
        try:
            exec(code, namespace)
        except GraphbuildError:
            raise
        except RecursionError:
            raise SpecError("recursion is too deep", location=Location(rel)) from None
        except Exception as err:  # any error of the user's code becomes a located spec error
            raise self._spec_error_from(err, namespace) from None

    def _spec_error_from(self, err: Exception, namespace: dict[str, Any]) -> SpecError:
        location = None
        tb = err.__traceback__
        root = str(self.workspace.root)
        while tb is not None:
            filename = tb.tb_frame.f_code.co_filename
            if filename.startswith(root):
                location = Location(self.workspace.rel(filename), tb.tb_lineno)
            tb = tb.tb_next
        if isinstance(err, NameError) and getattr(err, "name", None):
            name = err.name
            choices = [k for k in namespace if not k.startswith("_")]
            what = "name" if is_rule(namespace.get(name)) else "rule or name"
            hint = did_you_mean(name, choices)
            if not hint:
                hint = "rules in scope: " + ", ".join(sorted(k for k, v in namespace.items() if is_rule(v)))
            return SpecError(f"unknown {what} '{name}'", location=location, hint=hint)
        return SpecError(f"{type(err).__name__}: {err}", location=location)

    def _load_rule_file(self, label_text: str, package: str, at: Location) -> dict[str, Any]:
        try:
            label = Label.parse(label_text, package=package)
        except LabelError as err:
            raise SpecError(f"load: {err.message}", location=at) from None
        rel = f"{label.package}/{label.name}".lstrip("/")
        if not label.name.endswith(RULE_FILE_SUFFIX) or label.name == BUILD_FILE:
            raise SpecError(f"load: {label_text} is not a rule file", location=at,
                            hint=f"rule files end in '{RULE_FILE_SUFFIX}' (and are not {BUILD_FILE})")
        if rel in self._rule_files:
            return self._rule_files[rel]
        if rel in self._loading:
            cycle = " -> ".join([*self._loading[self._loading.index(rel):], rel])
            raise SpecError(f"load cycle: {cycle}", location=at)
        path = self.workspace.root / rel
        if not path.is_file():
            raise SpecError(f"load: no file {rel} for {label_text}", location=at)
        self._loading.append(rel)
        try:
            tree = parse_restricted(self._read(path), rel, allow_classes=True)
            namespace = self._namespace(rel, label.package, for_rule_file=True)
            self._exec(tree, str(path), rel, namespace)
        finally:
            self._loading.pop()
        exported = {k: v for k, v in namespace.items() if k != "__builtins__"}
        self._rule_files[rel] = exported
        return exported

    def _glob(self, package: str, include: list[str], exclude: list[str]) -> list[str]:
        pkg_dir = self.workspace.package_dir(package)
        matched: set[Path] = set()
        for pattern in include:
            matched.update(p for p in pkg_dir.glob(pattern) if p.is_file())
        for pattern in exclude:
            matched.difference_update(pkg_dir.glob(pattern))
        result = []
        for path in matched:
            rel = path.relative_to(pkg_dir)
            parts = rel.parts
            if any(p.startswith(".") or p == "__pycache__" for p in parts):
                continue
            # a subdirectory with its own BUILD.envs is another package
            if any((pkg_dir.joinpath(*parts[:i]) / BUILD_FILE).is_file() for i in range(1, len(parts))):
                continue
            result.append(rel.as_posix())
        return sorted(result)
