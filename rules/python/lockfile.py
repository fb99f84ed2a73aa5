"""The per-environment PEP 751 lock file (`pylock.<env>.toml`): writing, validating, freshness.

The standard part is for any installer: `uv pip install -r envs/pylock.prod.toml` installs
exactly what the image ships (the layers' pins, each in-repo library as a `directory` entry,
each git library as a `vcs` entry at its commit); the test runner's packages, which only the
test image has, are in the dependency group `test` (`marker = "'test' in dependency_groups"`),
installed with `--group test`. Besides that, `[tool.graphbuild]` records the spec the lock
was made from and which packages belong to which layer.  A build compares that spec with the current one: if they
differ, the lock is stale and the build stops before doing anything.

A lock is checked when read (it is a checked-in file people edit, merge and break): every
problem is collected with its line, and the build stops on them (exit 2) instead of
building something else than the lock says.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomli_w
from packaging.pylock import Pylock, PylockValidationError
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

LOCK_FORMAT = 1
HEADER = "# Written by `graphbuild lock`; do not edit. Rebuilt from the BUILD.envs spec.\n"
#: Resolution steps that are not py_layer targets (their labels in `[tool.graphbuild.layers]`).
LIBRARIES_GROUP = "libraries"
#: Packages the tests need but the image does not ship (pytest...): a layer of the test image only.
TEST_RUNNER_GROUP = "testrunner"
#: The PEP 751 dependency group of the test runner's packages (not installed by default).
TEST_DEPENDENCY_GROUP = "test"
TEST_MARKER = f"'{TEST_DEPENDENCY_GROUP}' in dependency_groups"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def lock_name(env_name: str) -> str:
    return f"pylock.{env_name}.toml"


@dataclass
class Lock:
    packages: dict[str, dict[str, Any]]  # canonical name -> [[packages]] entry
    spec: dict[str, Any]
    layers: list[dict[str, Any]]  # {label, packages: [names]} bottom first, then the libraries' deps
    libraries: dict[str, dict[str, Any]] = field(default_factory=dict)  # label -> {name, commit...}

    def dependencies(self, name: str) -> list[str]:
        return [d["name"] for d in self.packages.get(name, {}).get("dependencies", [])]

    def closure(self, names: list[str]) -> list[str]:
        """`names` and everything they depend on, per the lock, sorted (libraries excluded:
        they are built from their sources, not locked as packages)."""
        seen: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in seen or name not in self.packages:
                continue
            seen.add(name)
            stack.extend(self.dependencies(name))
        return sorted(seen)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a lock file: what, and the line it is on (0: the file as a whole)."""

    line: int
    message: str


class LockInvalid(ValueError):
    """A lock file that cannot be trusted; `problems` holds every problem found, in file order."""

    def __init__(self, problems: list[Problem]):
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("; ".join(p.message for p in self.problems))


# -- the spec a lock is made from ----------------------------------------------------------------


def _requirement_order(text: str) -> tuple[str, str]:
    try:
        return canonicalize_name(Requirement(text).name), text
    except InvalidRequirement:
        return "", text


def requirement_set(requirements: list[str]) -> list[str]:
    """A requirement list as the set it is: sorted by package name, duplicates dropped."""
    return sorted(set(requirements), key=_requirement_order)


def normalise_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with what has no order made orderless: requirements of a layer, of a library and
    of the test runner are sets, and so are an environment's libraries (each is its own layer,
    the lock does not depend on their order).  The layer stack keeps its order: which layer is
    under which decides what each one holds."""
    out = dict(spec)
    out["layers"] = [{**layer, "requirements": requirement_set(list(layer.get("requirements", [])))}
                     for layer in spec.get("layers", [])]
    out["libraries"] = sorted(
        ({**lib, "requirements": requirement_set(list(lib.get("requirements", [])))}
         for lib in spec.get("libraries", [])), key=lambda lib: str(lib.get("label", "")))
    out["test_runner"] = requirement_set(list(spec.get("test_runner", [])))
    return out


def spec_changes(locked: dict[str, Any], current: dict[str, Any], where: dict[str, str]) -> list[str]:
    """What differs between the spec a lock was made from and the current one, for people.

    `where` maps a requirement ("label|requirement") and a library label to its BUILD.envs
    location.  Both specs are compared as normalised (order of a set is no change)."""
    locked, current = normalise_spec(locked), normalise_spec(current)
    changes = []
    for key in ("python", "platform"):
        if locked.get(key) != current.get(key):
            changes.append(f"{key} {locked.get(key)} -> {current.get(key)}")
    old_layers = {layer["label"]: layer for layer in locked.get("layers", [])}
    new_layers = {layer["label"]: layer for layer in current.get("layers", [])}
    for label in sorted(set(old_layers) | set(new_layers)):
        if label not in old_layers:
            changes.append(f"layer {label} added")
            continue
        if label not in new_layers:
            changes.append(f"layer {label} removed")
            continue
        changes += _requirement_changes(label, old_layers[label]["requirements"],
                                        new_layers[label]["requirements"], where, label)
    old_order = [label for label in old_layers if label in new_layers]
    new_order = [label for label in new_layers if label in old_layers]
    if old_order != new_order:
        changes.append(f"the layer stack changed order (bottom first): {', '.join(old_order)} -> "
                       f"{', '.join(new_order)}")
    old_libs = {lib["label"]: lib for lib in locked.get("libraries", [])}
    new_libs = {lib["label"]: lib for lib in current.get("libraries", [])}
    for label in sorted(set(old_libs) | set(new_libs)):
        old, new = old_libs.get(label), new_libs.get(label)
        if old == new:
            continue
        if old is None or new is None:
            at = f" ({where[label]})" if label in where and new is not None else ""
            changes.append(f"library {label} {'added' if old is None else 'removed'}{at}")
            continue
        changes += _requirement_changes(f"library {label}", old.get("requirements", []),
                                        new.get("requirements", []), where, LIBRARIES_GROUP)
        for key in sorted(set(old) | set(new)):
            if key != "requirements" and old.get(key) != new.get(key):
                changes.append(f"library {label}: {key} {_short(old.get(key))} -> {_short(new.get(key))}"
                               + (f" ({where[label]})" if label in where else ""))
    changes += _requirement_changes("test_runner", locked.get("test_runner", []), current.get("test_runner", []),
                                    where, TEST_RUNNER_GROUP)
    old_fork, new_fork = locked.get("fork") or {}, current.get("fork") or {}
    if old_fork.get("of") != new_fork.get("of"):
        changes.append(f"fork {old_fork.get('of') or '(none)'} -> {new_fork.get('of') or '(none)'}")
    elif old_fork.get("upgrade") != new_fork.get("upgrade"):
        changes.append(f"upgrade {old_fork.get('upgrade')} -> {new_fork.get('upgrade')}")
    elif old_fork.get("parent_pins") != new_fork.get("parent_pins"):
        changes.append(f"the lock of {new_fork.get('of')}, which it forks, changed since")
    if not changes and locked != current:
        changes.append("the spec differs from the one the lock was made from")
    return changes


def _requirement_changes(owner: str, old: list[str], new: list[str], where: dict[str, str], group: str) -> list[str]:
    changes = []
    for req in requirement_set([r for r in new if r not in old]):
        changes.append(f"{owner}: requirement {req!r} added ({where.get(f'{group}|{req}', '?')})")
    for req in requirement_set([r for r in old if r not in new]):
        changes.append(f"{owner}: requirement {req!r} removed")
    return changes


def _short(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()) if v)
    return repr(value)


# -- reading ----------------------------------------------------------------------------------------


def parse(text: str) -> Lock:
    """The lock in `text`, checked; raises `LockInvalid` listing every problem with its line."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        match = re.search(r"at line (\d+)", str(err))
        raise LockInvalid([Problem(int(match.group(1)) if match else 0, f"not valid TOML: {err}")]) from None
    lines = _Lines(text)
    problems: list[Problem] = []
    tool = data.get("tool", {}).get("graphbuild") if isinstance(data.get("tool"), dict) else None
    if not isinstance(tool, dict):
        raise LockInvalid([Problem(0, "no [tool.graphbuild] table: not written by graphbuild lock")])
    if tool.get("format") != LOCK_FORMAT:
        raise LockInvalid([Problem(lines.find("format ="), f"[tool.graphbuild] format is {tool.get('format')!r}, "
                                                          f"this graphbuild reads format {LOCK_FORMAT}")])
    standard = _check_standard(data, lines)
    packages = _check_packages(data.get("packages"), lines, problems)
    spec = _check_spec(tool.get("spec"), lines, problems)
    libraries = _check_libraries(tool.get("libraries", []), lines, problems)
    layers = _check_layers(tool.get("layers"), packages, lines, problems)
    known = set(packages) | {lib["name"] for lib in libraries.values() if isinstance(lib.get("name"), str)}
    for name, entry in packages.items():
        for dep in entry.get("dependencies", []):
            dep_name = dep.get("name") if isinstance(dep, dict) else None
            if not isinstance(dep_name, str):
                problems.append(Problem(lines.package(name), f"package {name}: a dependency without a name"))
            elif dep_name not in known:
                problems.append(Problem(lines.package(name), f"package {name} depends on {dep_name}, "
                                                             f"which the lock does not hold"))
    if standard is not None:
        # packaging stops at the first problem; ours are listed all at once, with their line:
        # the standard's is kept unless one of ours already names that entry
        problem, name = standard
        if name is None or not any(p.message.startswith(f"package {name}") for p in problems):
            problems.append(problem)
    if problems:
        raise LockInvalid(problems)
    return Lock(packages, spec, layers, libraries)


class _Lines:
    """Line numbers of a lock's entries, for messages (best effort: 0 when not found)."""

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self._packages: dict[str, int] = {}
        in_package = False
        for number, line in enumerate(self.lines, 1):
            stripped = line.strip()
            if stripped.startswith("["):
                in_package = stripped == "[[packages]]"
            elif in_package and (match := re.match(r'name\s*=\s*"([^"]+)"', stripped)):
                self._packages.setdefault(match.group(1), number)
                in_package = False

    def package(self, name: str) -> int:
        return self._packages.get(name, 0)

    def find(self, needle: str, start: int = 0) -> int:
        for number, line in enumerate(self.lines[start:], start + 1):
            if needle in line:
                return number
        return 0

    def after(self, first: int, needle: str) -> int:
        """The first line at or after line `first` containing `needle` (or `first`)."""
        return self.find(needle, max(first - 1, 0)) or first


def _check_standard(data: dict[str, Any], lines: _Lines) -> tuple[Problem, str | None] | None:
    """What PEP 751 requires of any lock, checked by `packaging.pylock` (names normalised,
    versions, file names against versions, markers, one source per package...): the first
    problem, and the name of the [[packages]] entry it is in (if it is in one)."""
    try:
        Pylock.from_dict(data)
    except PylockValidationError as err:
        context = getattr(err, "context", None) or ""
        message = getattr(err, "message", None) or str(err)
        line, name = 0, None
        if match := re.match(r"packages\[(\d+)\]", context):
            entries = data.get("packages")
            index = int(match.group(1))
            if isinstance(entries, list) and index < len(entries) and isinstance(entries[index], dict):
                name = str(entries[index].get("name"))
                line = lines.package(name)
        elif context:
            line = lines.find(context.split(".")[0].split("[")[0] + " =")
        where = f" (at {context})" if context else ""
        return Problem(line, f"not a valid PEP 751 lock: {message}{where}"), name
    return None


def _check_packages(raw: Any, lines: _Lines, problems: list[Problem]) -> dict[str, dict[str, Any]]:
    packages: dict[str, dict[str, Any]] = {}
    if raw is None:
        return packages
    if not isinstance(raw, list):
        problems.append(Problem(lines.find("packages"), "`packages` must be an array of tables"))
        return packages
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            problems.append(Problem(lines.find("[[packages]]"), "a [[packages]] entry without a name"))
            continue
        name = entry["name"]
        line = lines.package(name)
        if "vcs" in entry or "directory" in entry:
            continue  # a library, for other installers: graphbuild builds it from [tool.graphbuild] libraries
        if canonicalize_name(name) != name:
            continue  # said by the standard's check
        if name in packages:
            problems.append(Problem(line, f"package {name} is listed twice"))
            continue
        packages[name] = entry
        version = entry.get("version")
        try:
            parsed = Version(version) if isinstance(version, str) else None
        except InvalidVersion:
            parsed = None
        if parsed is None and version is None:  # (an invalid one is said by the standard's check)
            problems.append(Problem(line, f"package {name}: no version"))
        if not entry.get("wheels") and not entry.get("sdist"):
            problems.append(Problem(line, f"package {name}: neither wheels nor an sdist"))
        for wheel in entry.get("wheels", []) if isinstance(entry.get("wheels"), list) else [None]:
            _check_file(name, parsed, wheel, "wheel", lines, line, problems)
        if entry.get("sdist") is not None:
            _check_file(name, parsed, entry["sdist"], "sdist", lines, line, problems)
    return packages


def _check_file(name: str, version: Version | None, entry: Any, kind: str, lines: _Lines, line: int,
                problems: list[Problem]) -> None:
    if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
        problems.append(Problem(line, f"package {name}: a {kind} without a url"))
        return
    url = entry["url"]
    at = lines.after(line, url.rsplit("/", 1)[-1]) if line else lines.find(url)
    filename = entry.get("name") if isinstance(entry.get("name"), str) else url.rsplit("/", 1)[-1]
    try:
        if kind == "wheel":
            file_name, file_version, _, _ = parse_wheel_filename(filename)
        else:
            file_name, file_version = parse_sdist_filename(filename)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as err:
        problems.append(Problem(at, f"package {name}: {kind} {filename!r} is not a valid {kind} file name ({err})"))
        return
    if file_name != name:
        problems.append(Problem(at, f"package {name}: its {kind} {filename} is of {file_name}"))
    elif version is not None and file_version != version:
        problems.append(Problem(at, f"package {name}: version {version} but its {kind} {filename} is "
                                    f"version {file_version}"))
    sha = entry.get("hashes", {}).get("sha256") if isinstance(entry.get("hashes"), dict) else None
    if not isinstance(sha, str) or not _SHA256.match(sha):
        problems.append(Problem(lines.after(at, "sha256") if at else line,
                                f"package {name}: {kind} {filename} has no valid sha256 hash ({sha!r})"))


def _check_spec(raw: Any, lines: _Lines, problems: list[Problem]) -> dict[str, Any]:
    line = lines.find("[tool.graphbuild.spec]")
    if not isinstance(raw, dict):
        problems.append(Problem(line, "[tool.graphbuild.spec] is missing or not a table"))
        return {}
    for key in ("python", "platform"):
        if not isinstance(raw.get(key), str):
            problems.append(Problem(line, f"[tool.graphbuild.spec] {key} must be a string"))
    for layer in raw.get("layers", []) if isinstance(raw.get("layers", []), list) else [None]:
        if not (isinstance(layer, dict) and isinstance(layer.get("label"), str)
                and _strings(layer.get("requirements"))):
            problems.append(Problem(lines.find("[[tool.graphbuild.spec.layers]]") or line,
                                    f"[tool.graphbuild.spec] layer {layer!r} needs a label and a list of requirements"))
    for lib in raw.get("libraries", []) if isinstance(raw.get("libraries", []), list) else [None]:
        if not (isinstance(lib, dict) and isinstance(lib.get("label"), str) and _strings(lib.get("requirements"))):
            problems.append(Problem(lines.find("[[tool.graphbuild.spec.libraries]]") or line,
                                    f"[tool.graphbuild.spec] library {lib!r} needs a label and a list of "
                                    "requirements"))
    if not _strings(raw.get("test_runner", [])):
        problems.append(Problem(line, "[tool.graphbuild.spec] test_runner must be a list of strings"))
    return raw


def _check_libraries(raw: Any, lines: _Lines, problems: list[Problem]) -> dict[str, dict[str, Any]]:
    libraries: dict[str, dict[str, Any]] = {}
    if not isinstance(raw, list):
        problems.append(Problem(lines.find("[[tool.graphbuild.libraries]]"),
                                "[tool.graphbuild] libraries must be an array of tables"))
        return libraries
    for lib in raw:
        label = lib.get("label") if isinstance(lib, dict) else None
        line = lines.find(f'label = "{label}"', lines.find("[[tool.graphbuild.libraries]]")) if label else 0
        if not isinstance(label, str) or not isinstance(lib.get("name"), str) or not _strings(lib.get("requirements")):
            problems.append(Problem(line or lines.find("[[tool.graphbuild.libraries]]"),
                                    f"[tool.graphbuild] library {lib!r} needs a label, a name and requirements"))
            continue
        if lib.get("git") and not (isinstance(lib.get("commit"), str) and _COMMIT.match(lib["commit"])):
            problems.append(Problem(lines.after(line, "commit") if line else 0,
                                    f"library {label}: git library without a valid commit ({lib.get('commit')!r})"))
        libraries[label] = lib
    return libraries


def _check_layers(raw: Any, packages: dict[str, dict[str, Any]], lines: _Lines,
                  problems: list[Problem]) -> list[dict[str, Any]]:
    start = lines.find("[[tool.graphbuild.layers]]")
    if not isinstance(raw, list):
        problems.append(Problem(start, "[tool.graphbuild] layers must be an array of tables"))
        return []
    layers = []
    placed: dict[str, str] = {}
    for layer in raw:
        label = layer.get("label") if isinstance(layer, dict) else None
        line = lines.find(f'label = "{label}"', max(start - 1, 0)) if label else start
        if not isinstance(label, str) or not _strings(layer.get("packages")):
            problems.append(Problem(line, f"[tool.graphbuild] layer {layer!r} needs a label and a list of packages"))
            continue
        for name in layer["packages"]:
            if name not in packages:
                problems.append(Problem(lines.after(line, f'"{name}"'), f"layer {label} holds {name}, which has "
                                                                        "no [[packages]] entry"))
            elif name in placed:
                problems.append(Problem(lines.after(line, f'"{name}"'), f"package {name} is in two layers: "
                                                                        f"{placed[name]} and {label}"))
            else:
                placed[name] = label
        layers.append(layer)
    for name in packages:
        if name not in placed:
            problems.append(Problem(lines.package(name), f"package {name} is in no layer of [tool.graphbuild] layers"))
    return layers


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)


# -- writing ----------------------------------------------------------------------------------------


def render(uv_lock: dict[str, Any], *, spec: dict[str, Any], layers: list[dict[str, Any]],
           libraries: list[dict[str, Any]], dependencies: dict[str, list[str]], python: str,
           lock_package: str = "") -> bytes:
    """The lock file's bytes; `lock_package` is the workspace package (directory) it is written
    in, which the paths of in-repo libraries and of git repositories named by a relative path
    are relative to (as PEP 751 wants them)."""
    test_only = {name for layer in layers if layer["label"] == TEST_RUNNER_GROUP for name in layer["packages"]}
    packages = []
    for entry in sorted(uv_lock.get("packages", []), key=lambda p: p["name"]):
        entry = dict(entry)
        deps = dependencies.get(entry["name"], [])
        if deps:
            entry["dependencies"] = [{"name": d} for d in sorted(deps)]
        if entry["name"] in test_only:
            marker = _without_test_marker(entry.get("marker"))
            entry["marker"] = f"({marker}) and {TEST_MARKER}" if marker else TEST_MARKER
        elif entry.get("marker"):  # an entry carried over from a lock where it was the runner's only
            marker = _without_test_marker(entry["marker"])
            entry.pop("marker")
            if marker:
                entry["marker"] = marker
        packages.append(entry)
    for lib in sorted(libraries, key=lambda lib: lib["name"]):
        packages.append(_library_entry(lib, lock_package))
    document = {
        "lock-version": "1.0",
        "created-by": "graphbuild",
        "requires-python": f"=={python}.*",
        **({"dependency-groups": [TEST_DEPENDENCY_GROUP]} if test_only else {}),
        "packages": packages,
        "tool": {"graphbuild": {"format": LOCK_FORMAT, "spec": normalise_spec(spec), "layers": layers,
                                "libraries": [{k: v for k, v in lib.items() if (v is not None and v != [])
                                               or k == "requirements"} for lib in libraries]}},
    }
    Pylock.from_dict(document)  # what we write is a valid PEP 751 lock (a failure here is our bug)
    return (HEADER + tomli_w.dumps(document)).encode()


def _library_entry(lib: dict[str, Any], lock_package: str) -> dict[str, Any]:
    """A library as PEP 751 has it: a `vcs` entry at its commit (a repository named by a relative
    path is a `path` from the lock's directory, as PEP 751 resolves them), or for an in-repo
    library a `directory` entry."""
    package = lib["label"].split(":")[0].removeprefix("//")
    version = {"version": lib["version"]} if lib.get("version") else {}
    git = lib.get("git")
    if not git:
        return {"name": lib["name"], **version, "directory": {"path": _relative(package, lock_package)}}
    url = git["url"]
    where = ({"path": _relative(os.path.normpath(os.path.join(package, url)), lock_package)}
             if url.startswith(("./", "../")) else {"url": url})
    return {"name": lib["name"], **version,
            "vcs": {"type": "git", **where, "requested-revision": git["ref"], "commit-id": lib["commit"],
                    **({"subdirectory": git["subdir"]} if git.get("subdir") else {})}}


def _relative(path: str, start: str) -> str:
    relative = os.path.relpath(path or ".", start or ".")
    return relative if relative.startswith("..") or relative == "." else f"./{relative}"


def _without_test_marker(marker: str | None) -> str | None:
    """`marker` less the test group's clause this module adds (an entry of the previous lock,
    carried into the next, already has it: it is added once)."""
    while marker:
        if marker == TEST_MARKER:
            return None
        suffix = f" and {TEST_MARKER}"
        if marker.endswith(suffix) and marker.startswith("(") and marker[:-len(suffix)].endswith(")"):
            marker = marker[1:-len(suffix) - 1]
            continue
        return marker
    return marker
