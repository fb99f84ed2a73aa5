"""The lock node: resolve an environment layer by layer with uv and write its pylock file.

Each layer is resolved together with the layers under it, pinned to what those already
resolved to; so a lower layer's packages are the same in every environment built over it,
and a layer that needs another version of a package a lower layer provides is reported as
a conflict between those two layers instead of silently changing the lower one.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from packaging.utils import canonicalize_name

from graphbuild.api import ActionFailed, ExecContext, Location, executor
from graphbuild.rules.python import gitsource, lockfile
from graphbuild.rules.python.requirements import name_of
from graphbuild.rules.python.resolve import Resolution, ResolutionError, pylock, resolve

LIBRARIES_GROUP = "libraries"
#: Packages the tests need but the image does not ship (pytest...): a layer of the test image only.
TEST_RUNNER_GROUP = "testrunner"


@executor("python.lock", version=1, cacheable=False)
def lock_environment(ctx: ExecContext) -> dict[str, Any]:
    spec: dict[str, Any] = ctx.inputs["spec"]
    where: dict[str, str] = ctx.inputs["where"]
    python, platform = spec["python"], spec["platform"]
    libraries = [_resolve_library(ctx, lib, where) for lib in spec["libraries"]]
    # A library may require another library of the environment: that one is built from its
    # source, not looked up on the index.
    in_env = {canonicalize_name(lib["name"]) for lib in libraries}
    for lib in libraries:
        lib["requirements"] = [r for r in lib["requirements"] if name_of(r) not in in_env]
    groups: dict[str, list[str]] = {}
    pins: dict[str, str] = {}
    parents: dict[str, set[str]] = {}
    layers: list[dict[str, Any]] = []
    provided_by: dict[str, str] = {}
    steps = [(layer["label"], layer["requirements"]) for layer in spec["layers"]]
    lib_requirements = [r for lib in libraries for r in lib["requirements"]]
    if lib_requirements:
        steps.append((LIBRARIES_GROUP, lib_requirements))
    if spec.get("test_runner"):
        steps.append((TEST_RUNNER_GROUP, list(spec["test_runner"])))
    name = ctx.inputs["lock_name"]
    previous = None if ctx.options.get("upgrade") else _previous_lock(ctx, name, python, platform)
    kept = _unchanged_steps(previous, steps) if previous else 0
    resolved = False
    for index, (label, requirements) in enumerate(steps):
        groups[label] = requirements
        if index < kept and previous is not None:
            # this step and all under it are as locked before: keep their pins (as uv lock
            # keeps existing versions), so a change up the stack never moves what is below it
            added = list(previous.layers[index]["packages"])
            pins.update({n: previous.packages[n]["version"] for n in added})
        else:
            result = _resolve_step(ctx, label, groups, pins, provided_by, where, python, platform)
            added = sorted(set(result.pins) - set(pins))
            pins = result.pins
            parents = result.parents
            resolved = True
        layers.append({"label": label, "packages": added})
        provided_by.update(dict.fromkeys(added, label))
    dependencies: dict[str, list[str]] = {}
    if resolved:
        try:
            document = pylock(groups, pins, python=python, platform=platform, workdir=ctx.scratch)
        except ResolutionError as err:  # resolved a moment ago: the index or network failed us
            raise ActionFailed("uv could not write the lock", details=err.explanation) from None
        uv_lock = tomllib.loads(document)
        for child, sources in parents.items():
            for parent in sources:
                if not parent.startswith("-r"):
                    dependencies.setdefault(parent, []).append(child)
    else:  # nothing to resolve: the packages are exactly the previous lock's
        assert previous is not None or not groups
        uv_lock = {"packages": [dict(p) for p in previous.packages.values()]} if previous else {}
        uv_lock["packages"] = [{k: v for k, v in p.items() if k != "dependencies"} for p in uv_lock.get("packages", [])]
        dependencies = {n: previous.dependencies(n) for n in previous.packages} if previous else {}
    old = {n: p.get("version", "") for n, p in previous.packages.items()} if previous else _old_versions(ctx, name)
    ctx.write_source(name, lockfile.render(uv_lock, spec=spec, layers=layers, libraries=libraries,
                                           dependencies=dependencies, python=python))
    changed = {n: [old.get(n), v] for n, v in sorted(pins.items()) if old.get(n) != v}
    changed.update({n: [v, None] for n, v in old.items() if n not in pins})
    ctx.log(f"locked {len(pins)} packages into {name}")
    return {"lock": name, "packages": len(pins), "changed": changed}


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
    before = {layer["label"]: layer["requirements"] for layer in previous.spec.get("layers", [])}
    before[LIBRARIES_GROUP] = [r for lib in previous.libraries.values() for r in lib.get("requirements", [])]
    before[TEST_RUNNER_GROUP] = list(previous.spec.get("test_runner", []))
    count = 0
    for index, (label, requirements) in enumerate(steps):
        if (index >= len(previous.layers) or previous.layers[index]["label"] != label
                or before.get(label) != requirements):
            break
        count += 1
    return count


def _resolve_library(ctx: ExecContext, lib: dict[str, Any], where: dict[str, str]) -> dict[str, Any]:
    if not lib.get("git"):
        return {**lib, "commit": None}
    git = lib["git"]
    url = gitsource.absolute_url(git["url"], ctx.workspace_root, lib["label"].split(":")[0].removeprefix("//"))
    commit = gitsource.resolve_ref(url, git["ref_kind"], git["ref"])
    location = where.get(lib["label"])
    if commit is None:
        raise ActionFailed(f"{lib['label']}: {git['ref_kind']} {git['ref']!r} not found in {git['url']}",
                           bad_input=True, location=_location(location))
    tree = gitsource.checkout(url, commit, ctx.scratch / f"git-{canonicalize_name(lib['label'])}")
    project = gitsource.project_table(tree, git["subdir"])
    if "name" not in project:
        raise ActionFailed(f"{lib['label']}: pyproject.toml at {commit[:12]} has no [project] name",
                           bad_input=True, location=_location(location))
    requirements = list(project.get("dependencies", []))
    return {**lib, "name": canonicalize_name(project["name"]), "commit": commit, "requirements": requirements}


def _resolve_step(ctx: ExecContext, label: str, groups: dict[str, list[str]], pins: dict[str, str],
                  provided_by: dict[str, str], where: dict[str, str], python: str, platform: str) -> Resolution:
    workdir = ctx.scratch
    try:
        return resolve(groups, pins, python=python, platform=platform, workdir=workdir)
    except ResolutionError as constrained:
        if pins:
            try:
                free = resolve(groups, {}, python=python, platform=platform, workdir=workdir)
            except ResolutionError:
                # the layers' requirements clash outright (a lower layer pins what this one
                # pins otherwise): if this layer resolves on its own, it is still a conflict
                # between this layer and the one under it
                try:
                    alone = resolve({label: groups[label]}, {}, python=python, platform=platform, workdir=workdir)
                except ResolutionError:
                    pass
                else:
                    _raise_conflict(label, alone, pins, provided_by, groups, where)
            else:
                _raise_conflict(label, free, pins, provided_by, groups, where)
        _raise_unsatisfiable(label, constrained.explanation, groups, where)
        raise  # unreachable: the helpers raise


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


__all__ = ["lock_environment"]
