"""The lock node: resolve an environment layer by layer with uv and write its pylock file.

Each layer's requirements are resolved over the layers under it, pinned to what those
already resolved to; so a lower layer's packages are the same in every environment built
over it, and a layer that needs another version of a package a lower layer provides is
reported as a conflict between those two layers instead of silently changing the lower one.

A relock costs what changed: the layers whose spec is unchanged from the bottom keep their
pins (no uv call), each changed layer (and each one over it) is one `uv pip compile` of that
layer's requirements alone over the pins under it (uv reads the index for that layer's
closure only), preferring the versions the previous lock had. A package's entry (files,
hashes, URLs) is the previous lock's when its version is; the entries of new versions come
from one more call, offline (uv's cache holds what it just read), for those versions alone.

The environment's libraries are built from their sources, and each is the one copy of its
distribution in the environment: a package that depends on a library (pytest on a
`git_library` of pluggy) gets the library's own build, never the index's release beside it.
If the library's version does not satisfy that package's requirement, the lock fails naming
both.
"""

from __future__ import annotations

import re
import shutil
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from graphbuild.api import ActionFailed, ExecContext, Location, executor
from graphbuild.rules.python import gitsource, lockfile
from graphbuild.rules.python.fork import pins_digest, plan_steps
from graphbuild.rules.python.lockfile import LIBRARIES_GROUP, TEST_RUNNER_GROUP
from graphbuild.rules.python.requirements import name_of
from graphbuild.rules.python.resolve import Resolution, ResolutionError, pylock, resolve
from graphbuild.rules.python.sources import library_files
from graphbuild.rules.python.wheels import built_metadata


@dataclass
class _Build:
    """A library of the environment as a distribution: built from `source`, at `version`."""

    label: str
    name: str
    version: str | None  # None: dynamic and not built at lock time (an in-repo library)
    source: Path | None  # a project directory uv may read (and build metadata in)


class _Builds:
    """The environment's libraries by distribution name, and what uv needs to use them."""

    def __init__(self, ctx: ExecContext, libraries: list[dict[str, Any]]):
        self._ctx = ctx
        self.by_name: dict[str, _Build] = {}
        for lib in libraries:
            source = lib.pop("_source", None)
            self.by_name[lib["name"]] = _Build(lib["label"], lib["name"], lib.get("version"), source)
        self.env: dict[str, str] = {}
        for lib in libraries:
            if lib.get("version") and lib.get("_dynamic"):
                self.env.update(gitsource.pretend_version_env(lib["name"], lib["version"]))

    def sources(self, names: set[str]) -> dict[str, Path]:
        return {name: self._source(name) for name in sorted(names)}

    def _source(self, name: str) -> Path:
        build = self.by_name[name]
        if build.source is None:  # an in-repo library: a copy, so uv writes nothing into the workspace
            package = build.label.split(":")[0].removeprefix("//")
            root = self._ctx.workspace_root / package
            copy = self._ctx.scratch / f"lib-{name}"
            for path in library_files(self._ctx.workspace_root, package):
                dest = copy / path.relative_to(root)
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(path, dest)
            build.source = copy
        return build.source


@executor("python.lock", version=6, cacheable=False)
def lock_environment(ctx: ExecContext) -> dict[str, Any]:
    spec: dict[str, Any] = ctx.inputs["spec"]
    where: dict[str, str] = ctx.unkeyed.get("where", {})
    python, platform = spec["python"], spec["platform"]
    libraries = [_resolve_library(ctx, lib, where) for lib in spec["libraries"]]
    seen: dict[str, str] = {}
    for lib in libraries:
        if lib["name"] in seen:
            raise ActionFailed(f"one version per distribution: libraries {seen[lib['name']]} and {lib['label']} "
                               f"both build {lib['name']}", bad_input=True, location=_location(where.get(lib["label"])),
                               details="hint: keep one of them in the environment's libraries")
        seen[lib["name"]] = lib["label"]
    builds = _Builds(ctx, libraries)
    steps = [(layer["label"], layer["requirements"]) for layer in spec["layers"]]
    lib_requirements = lockfile.requirement_set([r for lib in libraries for r in lib["requirements"]])
    if lib_requirements:
        steps.append((LIBRARIES_GROUP, lib_requirements))
    if spec.get("test_runner"):
        steps.append((TEST_RUNNER_GROUP, list(spec["test_runner"])))
    # a requirement naming a library of the environment (another library's, or a layer's) is
    # met by the library's build: checked here, with the requirement's own line
    used = _check_named_libraries(steps, builds, where)
    name = ctx.inputs["lock_name"]
    upgraded: set[str] = set()
    if spec.get("fork"):
        # a fork: its parent's lock, with the upgraded packages moved (see fork.py)
        parent = _parent_lock(ctx, spec["fork"])
        spec = {**spec, "fork": {**spec["fork"], "parent_pins": pins_digest(parent)}}
        steps, first_moved, upgraded = plan_steps(parent, steps, spec["fork"]["upgrade"])
        previous = None if ctx.options.get("upgrade") else parent
        kept = min(_unchanged_steps(previous, steps), first_moved) if previous else 0
    else:
        previous = None if ctx.options.get("upgrade") else _previous_lock(ctx, name, python, platform)
        kept = _unchanged_steps(previous, steps) if previous else 0
    if previous is not None:
        used |= {lib["name"] for lib in previous.libraries.values()
                 if lib.get("required_by") and lib.get("name") in builds.by_name}
    # what a layer whose spec changed resolves to keeps the previous lock's versions where its
    # requirements still allow them (as `uv pip compile -o` keeps an existing output's pins):
    # adding a requirement moves no unrelated pin
    preferences = {n: p["version"] for n, p in previous.packages.items()
                   if p.get("version") and n not in upgraded} if previous else {}
    groups: dict[str, list[str]] = {}
    pins: dict[str, str] = {}
    parents: dict[str, set[str]] = {}
    layers: list[dict[str, Any]] = []
    provided_by: dict[str, str] = {}
    resolved: dict[str, list[str]] = {}  # the steps resolved now (the others kept their pins)
    for index, (label, requirements) in enumerate(steps):
        groups[label] = requirements
        if index < kept and previous is not None:
            # this step and all under it are as locked before: keep their pins (as uv lock
            # keeps existing versions), so a change up the stack never moves what is below it
            added = list(previous.layers[index]["packages"])
            pins.update({n: previous.packages[n]["version"] for n in added})
        else:
            # only this step's requirements, the layers under it pinned: uv reads the index for
            # this layer's closure alone (what is under it is consistent already, and pins
            # constrain without adding to what is resolved)
            result = _resolve_step(ctx, {label: requirements}, index, label, groups, pins, provided_by, where,
                                   python, platform, builds, used, preferences)
            added = sorted(set(result.pins) - set(pins))
            pins.update({n: result.pins[n] for n in added})
            for child, sources in result.parents.items():
                parents.setdefault(child, set()).update(sources)
            resolved[label] = requirements
        layers.append({"label": label, "packages": added})
        provided_by.update(dict.fromkeys(added, label))
    if not resolved and previous is not None and groups and _moved(libraries, used, previous):
        # every pin kept, but a library the others depend on moved (a branch followed to a
        # new commit, a new version): check the kept pins still accept its build
        _resolve_step(ctx, groups, 0, steps[-1][0], groups, pins, provided_by, where, python, platform, builds,
                      used, {})
    kept_packages = {n for layer in layers[:kept] for n in layer["packages"]}
    dependencies: dict[str, set[str]] = {n: set(previous.dependencies(n)) for n in kept_packages} if previous else {}
    for child, sources in parents.items():
        for parent in sources:
            if not parent.startswith("-"):
                dependencies.setdefault(parent, set()).add(child)
    # a package's lock entry (its files, hashes, URLs) is the previous lock's when its version
    # is; uv writes the entries of the versions that are new, from its cache of what it just read
    entries = {n: {k: v for k, v in previous.packages[n].items() if k != "dependencies"}
               for n, v in pins.items() if previous.packages.get(n, {}).get("version") == v} if previous else {}
    new = {n: v for n, v in pins.items() if n not in entries}
    if new:
        try:
            document = pylock(new, python=python, platform=platform, workdir=ctx.scratch, env=builds.env,
                              offline=bool(resolved))
        except ResolutionError as err:  # resolved a moment ago: the index or network failed us
            raise ActionFailed("uv could not write the lock", details=err.explanation) from None
        for entry in tomllib.loads(document).get("packages", []):
            if entry.get("name") in new and entry.get("version") == new[entry["name"]]:
                entries[entry["name"]] = entry
    missing = sorted(set(pins) - set(entries))
    if missing:
        raise ActionFailed(f"uv wrote no lock entry for {', '.join(missing)}")
    uv_lock = {"packages": [entries[n] for n in sorted(pins)]}
    for lib in libraries:
        lib["required_by"] = _required_by(lib, steps, libraries, dependencies, pins)
        lib.pop("_dynamic", None)
    old = {n: p.get("version", "") for n, p in previous.packages.items()} if previous else _old_versions(ctx, name)
    ctx.write_source(name, lockfile.render(uv_lock, spec=spec, layers=layers, libraries=libraries,
                                           dependencies={n: sorted(d) for n, d in dependencies.items()},
                                           python=python, lock_package=ctx.node.label.package))
    changed = {n: [old.get(n), v] for n, v in sorted(pins.items()) if old.get(n) != v}
    changed.update({n: [v, None] for n, v in old.items() if n not in pins})
    ctx.log(f"locked {len(pins)} packages into {name}")
    ctx.summarize(moved_summary(name, len(pins), changed))
    return {"lock": name, "packages": len(pins), "changed": changed}


def moved_summary(name: str, count: int, changed: dict[str, list]) -> str:
    """What `graphbuild lock` says of one lock: the packages that moved, old -> new."""
    if not changed:
        return f"{name}: {count} packages, none moved"
    moves = [f"{n} {old or '(new)'} -> {new or '(removed)'}" for n, (old, new) in sorted(changed.items())]
    return f"{name}: {count} packages, {len(moves)} moved: " + ", ".join(moves)


def _moved(libraries: list[dict[str, Any]], used: set[str], previous: lockfile.Lock) -> bool:
    """Whether a library some package depends on is not what the previous lock checked."""
    for lib in libraries:
        before = previous.libraries.get(lib["label"], {})
        if lib["name"] in used and (before.get("version"), before.get("commit")) != (lib.get("version"), lib["commit"]):
            return True
    return False


def _required_by(lib: dict[str, Any], steps: list[tuple[str, list[str]]], libraries: list[dict[str, Any]],
                 dependencies: dict[str, set[str]], pins: dict[str, str]) -> list[str]:
    """Who needs a library, as people read it: the locked packages depending on it, the layers
    whose requirements name it, and the libraries whose requirements name it."""
    name = lib["name"]
    who = {package for package, deps in dependencies.items() if name in deps and package in pins}
    for label, requirements in steps:
        if not any(_names(r, name) for r in requirements):
            continue
        if label != LIBRARIES_GROUP:
            who.add(label)
            continue
        who.update(other["label"] for other in libraries if any(_names(r, name) for r in other["requirements"]))
    return sorted(who)


def _names(requirement: str, name: str) -> bool:
    try:
        return canonicalize_name(Requirement(requirement).name) == name
    except InvalidRequirement:
        return False


def _parent_lock(ctx: ExecContext, fork: dict[str, Any]) -> lockfile.Lock:
    try:
        return lockfile.parse((ctx.workspace_root / fork["lock"]).read_text())
    except (OSError, lockfile.LockInvalid) as err:
        raise ActionFailed(f"cannot read the lock of {fork['of']} ({fork['lock']}), which this environment forks: "
                           f"{err}", bad_input=True,
                           details=f"hint: run 'graphbuild lock {fork['of']}' first") from None


def _previous_lock(ctx: ExecContext, name: str, python: str, platform: str) -> lockfile.Lock | None:
    path = ctx.workspace_root / ctx.node.label.package / name
    try:
        previous = lockfile.parse(path.read_text())
    except (OSError, ValueError, KeyError):
        return None
    if previous.spec.get("python") != python or previous.spec.get("platform") != platform:
        return None
    return previous


def _unchanged_steps(previous: lockfile.Lock, steps: list[tuple[str, list[str]]]) -> int:
    """How many resolution steps, from the bottom, are exactly as the previous lock made them."""
    spec = lockfile.normalise_spec(previous.spec)
    before = {layer["label"]: layer["requirements"] for layer in spec.get("layers", [])}
    before[LIBRARIES_GROUP] = lockfile.requirement_set(
        [r for lib in previous.libraries.values() for r in lib.get("requirements", [])])
    before[TEST_RUNNER_GROUP] = list(spec.get("test_runner", []))
    count = 0
    for index, (label, requirements) in enumerate(steps):
        if (index >= len(previous.layers) or previous.layers[index]["label"] != label
                or before.get(label) != lockfile.requirement_set(requirements)):
            break
        count += 1
    return count


def _resolve_library(ctx: ExecContext, lib: dict[str, Any], where: dict[str, str]) -> dict[str, Any]:
    """A library as the lock records it: its distribution name, version and requirements (and
    for a git library the commit its ref names now)."""
    package = lib["label"].split(":")[0].removeprefix("//")
    if not lib.get("git"):
        project = _local_project(ctx.workspace_root / package)
        version = project.get("version") if "version" not in project.get("dynamic", []) else None
        return {**lib, "name": canonicalize_name(lib["name"]), "commit": None,
                "version": str(version) if version else None}
    git = lib["git"]
    url = gitsource.absolute_url(git["url"], ctx.workspace_root, package)
    commit = gitsource.resolve_ref(url, git["ref_kind"], git["ref"])
    location = _location(where.get(lib["label"]))
    if commit is None:
        raise ActionFailed(f"{lib['label']}: {git['ref_kind']} {git['ref']!r} not found in {git['url']}",
                           bad_input=True, location=location)
    tree = gitsource.checkout(url, commit, ctx.scratch / f"git-{canonicalize_name(lib['label'])}")
    source = tree / git["subdir"] if git["subdir"] else tree
    project = gitsource.project_table(tree, git["subdir"])
    dynamic = set(project.get("dynamic", []))
    name, version = project.get("name"), project.get("version")
    requirements = list(project.get("dependencies", []))
    if not name or not version or {"version", "dependencies"} & dynamic:
        # the build backend decides (a version from git tags: setuptools-scm, hatch-vcs...;
        # metadata in setup.py): asked once here, with the repository's history and tags at
        # hand, and recorded, so that every later build of this commit gets the same version
        try:
            name, version, built_requirements = built_metadata(source, ctx.scratch)
        except ActionFailed as err:
            raise ActionFailed(f"{lib['label']} at {commit[:12]}: {err.message}", details=err.details,
                               location=location) from None
        if "dependencies" in dynamic or not project.get("name"):
            requirements = built_requirements
    return {**lib, "name": canonicalize_name(name), "commit": commit, "requirements": requirements,
            "version": str(version), "_dynamic": "version" in dynamic or not project.get("version"),
            "_source": source}


def _local_project(root: Path) -> dict[str, Any]:
    try:
        return tomllib.loads((root / "pyproject.toml").read_text()).get("project", {})
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _check_named_libraries(steps: list[tuple[str, list[str]]], builds: _Builds, where: dict[str, str]) -> set[str]:
    """The libraries some requirement names directly; each must accept the library's version."""
    named: set[str] = set()
    for label, requirements in steps:
        for text in requirements:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue  # uv says what is wrong with it
            build = builds.by_name.get(canonicalize_name(requirement.name))
            if build is None:
                continue
            named.add(build.name)
            if build.version and not _accepts(str(requirement.specifier), build.version):
                owner = "a library of the environment" if label == LIBRARIES_GROUP else label
                raise ActionFailed(
                    f"one version per distribution: {owner} requires {text!r}, but library {build.label} "
                    f"builds {build.name} {build.version}",
                    bad_input=True, location=_location(where.get(f"{label}|{text}") or where.get(build.label)),
                    details=f"hint: change the requirement, or take a version of {build.label} it accepts")
    return named


def _accepts(specifier: str, version: str) -> bool:
    try:
        return SpecifierSet(specifier).contains(Version(version), prereleases=True)
    except (InvalidSpecifier, InvalidVersion):
        return True  # not ours to judge: uv resolves it


def _resolve_step(ctx: ExecContext, request: dict[str, list[str]], first: int, label: str,
                  groups: dict[str, list[str]], pins: dict[str, str], provided_by: dict[str, str],
                  where: dict[str, str], python: str, platform: str, builds: _Builds, used: set[str],
                  preferences: dict[str, str]) -> Resolution:
    """Resolve `request` (groups numbered from `first`) over `pins`, the libraries' builds
    standing in for their distributions; `groups` are all the steps so far, for explaining a
    failure in the spec's terms.

    A library only some package needs is found by resolving without it first (uv takes the
    index's release): then it is resolved again with the library's own build, which must
    satisfy that package. `used` grows by the libraries found."""
    common: dict[str, Any] = {"python": python, "platform": platform, "workdir": ctx.scratch}
    index_resolution: Resolution | None = None
    while True:
        try:
            result = resolve(request, pins, sources=builds.sources(used), env=builds.env, preferences=preferences,
                             first_group=first, **common)
        except ResolutionError as err:
            if index_resolution is None and used:
                try:  # what the index alone would give: who wants which version of a library
                    index_resolution = resolve(request, pins, first_group=first, **common)
                except ResolutionError:
                    pass
            if index_resolution is not None:
                _raise_library_conflict(index_resolution, err.explanation, builds, pins, provided_by, label, where)
            _explain_failure(label, err.explanation, groups, pins, provided_by, where,
                             {**common, "sources": builds.sources(used), "env": builds.env})
            raise  # unreachable: the helpers raise
        found = sorted((set(result.pins) & set(builds.by_name)) - used)
        if not found:
            return result
        used.update(found)
        index_resolution = result


def _explain_failure(label: str, explanation: str, groups: dict[str, list[str]], pins: dict[str, str],
                     provided_by: dict[str, str], where: dict[str, str], common: dict[str, Any]) -> None:
    """A failed resolution in the spec's terms: a conflict between two layers, or requirements
    nothing satisfies."""
    if pins:
        try:
            free = resolve(groups, {}, **common)
        except ResolutionError:
            # the layers' requirements clash outright (a lower layer pins what this one
            # pins otherwise): if this layer resolves on its own, it is still a conflict
            # between this layer and the one under it
            try:
                alone = resolve({label: groups[label]}, {}, **common)
            except ResolutionError:
                pass
            else:
                _raise_conflict(label, alone, pins, provided_by, groups, where)
        else:
            _raise_conflict(label, free, pins, provided_by, groups, where)
    _raise_unsatisfiable(label, explanation, groups, where)


def _raise_library_conflict(index: Resolution, explanation: str, builds: _Builds, pins: dict[str, str],
                            provided_by: dict[str, str], label: str, where: dict[str, str]) -> None:
    """A package needs another version of a distribution a library of the environment builds
    (`index` is the resolution that took the index's release instead): raised naming both."""
    for name in sorted(set(index.pins) & set(builds.by_name)):
        build = builds.by_name[name]
        requirers = []
        for parent in sorted(index.parents.get(name, set())):
            if parent.startswith("-"):
                continue
            version = index.pins.get(parent) or pins.get(parent, "?")
            layer = provided_by.get(parent, label)
            specifier = _specifier_from_uv(explanation, parent, version, name)
            if build.version and specifier and _accepts(specifier, build.version):
                continue  # this one is content with the library's build
            needs = f"{name}{specifier}" if specifier else f"another version of {name} ({index.pins[name]})"
            requirers.append(f"{parent} {version} (in {layer}) requires {needs}")
        if not requirers:
            continue
        raise ActionFailed(
            f"one version per distribution: library {build.label} builds {name} "
            f"{build.version or '(version decided by its build backend)'}, but " + "; ".join(requirers),
            bad_input=True, location=_location(where.get(build.label)),
            details="uv says:\n" + explanation + f"\nhint: take a version of {build.label} they accept, or pin "
                    f"{', '.join(sorted({r.split()[0] for r in requirers}))} to a version that accepts "
                    f"{name} {build.version or ''}".rstrip(),
        )


def _specifier_from_uv(explanation: str, parent: str, version: str, name: str) -> str:
    """What `parent` at `version` requires of `name`, as uv's explanation states it
    (`pytest>=9.2.0 depends on pluggy>=1.6,<2`); empty when uv does not say."""
    def pattern(project: str) -> str:
        return r"[-_.]".join(re.escape(part) for part in re.split(r"[-_.]+", project))

    spec = r"((?:[<>=!~]=?[^\s,]+)(?:,\s*[<>=!~]=?[^\s,]+)*)"
    found = re.findall(rf"(?<![\w.-]){pattern(parent)}((?:[<>=!~]=?[^\s,]+)(?:,[<>=!~]=?[^\s,]+)*)?"
                       rf" depends on {pattern(name)}{spec}", explanation, flags=re.IGNORECASE)
    for versions, specifier in found:
        if not versions or _accepts(versions, version):
            return specifier.rstrip(",")
    return found[-1][1].rstrip(",") if found else ""


def _raise_conflict(label: str, free: Resolution, pins: dict[str, str], provided_by: dict[str, str],
                    groups: dict[str, list[str]], where: dict[str, str]) -> None:
    moved = sorted(n for n, v in pins.items() if free.pins.get(n, v) != v)
    if not moved:
        return
    package = moved[0]
    lower = provided_by.get(package, "a lower layer")
    own = [r for r in groups[label] if name_of(r) == package]
    culprit = own[0] if own else None
    location = where.get(f"{label}|{culprit}") if culprit else where.get(f"{label}|{groups[label][0]}")
    needs = f"{package} {free.pins[package]}" + (f" (requirement {culprit!r})" if culprit else
                                                 " (through its dependencies)")
    raise ActionFailed(
        f"version conflict: {label} needs {needs}, but {lower} under it provides {package} {pins[package]}",
        bad_input=True, location=_location(location),
        details=f"other packages that would move: {', '.join(moved[1:]) or 'none'}\n"
                f"hint: change the requirement in one of the two layers, or move {package} up into {label}",
    )


def _raise_unsatisfiable(label: str, explanation: str, groups: dict[str, list[str]], where: dict[str, str]) -> None:
    text = explanation.lower()
    involved = []
    for group, requirements in groups.items():
        for requirement in requirements:
            if re.search(rf"(?<![a-z0-9_.-]){re.escape(name_of(requirement))}(?![a-z0-9_.-])",
                         text.replace("_", "-")):
                involved.append((where.get(f"{group}|{requirement}", group), requirement, group))
    lines = [f"  {loc}: {req!r} ({group})" for loc, req, group in involved]
    first = involved[0][0] if involved else where.get(f"{label}|{groups[label][0]}") if groups[label] else None
    raise ActionFailed(
        f"cannot resolve {label}: " + (explanation.splitlines()[-1].strip().removeprefix("cause: ")
                                         if explanation else "no solution"),
        bad_input=True, location=_location(first),
        details="uv says:\n" + explanation + ("\nrequirements involved:\n" + "\n".join(lines) if lines else ""),
    )


def _old_versions(ctx: ExecContext, name: str) -> dict[str, str]:
    path = ctx.workspace_root / ctx.node.label.package / name
    try:
        return {p["name"]: p.get("version", "") for p in tomllib.loads(path.read_text()).get("packages", [])
                if "version" in p}
    except (OSError, tomllib.TOMLDecodeError):
        return {}


def _location(text: str | None) -> Location | None:
    if not text:
        return None
    path, _, line = text.partition(":")
    return Location(path, int(line.split(":")[0]) if line and line.split(":")[0].isdigit() else 0)


__all__ = ["LIBRARIES_GROUP", "TEST_RUNNER_GROUP", "lock_environment"]
