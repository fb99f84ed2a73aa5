"""Can an environment's lock satisfy a library (or a workload)? Decided from the lock alone.

PEP 508/440 semantics through `packaging`: markers are evaluated for the environment's
Python and platform (a requirement whose marker is false does not apply there), versions are
checked with the specifier (pre-releases accepted when the lock pinned one). Nothing is
built and nothing is resolved: the lock already says what the environment holds.

The answer is one of:
  not_applicable  the library's `requires-python` excludes the environment's Python
  incompatible    a requirement names a package the environment does not have, or pins it
                  at a version the requirement refuses (the reason says which)
  ok              every requirement is met (by a locked package, or by an in-repo library
                  the environment lists or that a probe can add, itself compatible)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

OK = "ok"
INCOMPATIBLE = "incompatible"
NOT_APPLICABLE = "not_applicable"


def marker_environment(python: str, platform: str) -> dict[str, str]:
    """PEP 508 marker variables of a CPython `python` (MAJOR.MINOR) image on a
    `ARCH-manylinux_2_N` platform. The patch version is unknown from the spec: `.0` is used."""
    env = dict(default_environment())
    arch = platform.split("-", 1)[0]
    env.update({
        "implementation_name": "cpython", "implementation_version": f"{python}.0",
        "platform_python_implementation": "CPython", "python_version": python,
        "python_full_version": f"{python}.0", "os_name": "posix", "sys_platform": "linux",
        "platform_system": "Linux", "platform_machine": arch, "platform_release": "", "platform_version": "",
    })
    return env


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str = ""
    #: for `ok`: in-repo libraries (labels) the environment does not list but the library needs,
    #: to be installed with it (bottom first)
    adds: tuple[str, ...] = ()
    #: every problem found (the reason is the first)
    problems: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Need:
    """What a library asks of an environment."""

    label: str
    name: str  # canonical distribution name
    requirements: tuple[str, ...]
    requires_python: str = ""
    deps: tuple[str, ...] = ()  # labels of in-repo libraries it needs


@dataclass(frozen=True)
class Holdings:
    """What an environment holds: its Python and platform, the packages its shipped image
    installs (canonical name -> version), the packages only its test runner adds, and the
    libraries it lists (canonical name -> label)."""

    python: str
    platform: str
    packages: Mapping[str, str]
    test_only: frozenset[str] = frozenset()
    libraries: Mapping[str, str] = field(default_factory=dict)


def applies(requires_python: str, python: str) -> str | None:
    """None when `requires_python` admits `python` (MAJOR.MINOR), else the reason it does not."""
    if not requires_python:
        return None
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return None  # py_library checked it when loading; a git library's text is not ours to judge
    # any patch release of the minor version counts ("3.11" meets ">=3.11.2" in some release)
    if any(spec.contains(f"{python}.{patch}", prereleases=True) for patch in range(0, 40)):
        return None
    return f"requires Python {requires_python}, the environment has {python}"


def check_requirement(text: str, holdings: Holdings) -> str | None:
    """None when the environment meets one PEP 508 requirement, else what is wrong."""
    requirement = Requirement(text)
    if requirement.marker is not None and not requirement.marker.evaluate(
            marker_environment(holdings.python, holdings.platform)):
        return None
    name = canonicalize_name(requirement.name)
    if name in holdings.libraries:
        return None  # an in-repo library the environment lists: its own check is the matrix's
    version = holdings.packages.get(name)
    if version is None:
        if name in holdings.test_only:
            return f"missing package {name} (only its test runner has it)"
        return f"missing package {name}"
    if requirement.specifier and not _contains(requirement.specifier, version):
        return f"needs {name}{requirement.specifier}, the environment pins {version}"
    return None


def _contains(specifier: SpecifierSet, version: str) -> bool:
    try:
        return specifier.contains(Version(version), prereleases=True)
    except InvalidVersion:
        return False


def check(need: Need, holdings: Holdings, workspace: Mapping[str, Need] | None = None) -> Verdict:
    """Whether `holdings` can run `need`: see the module's docstring. `workspace` (canonical
    name -> Need) lets a requirement naming another in-repo library be met by adding it."""
    why_not = applies(need.requires_python, holdings.python)
    if why_not:
        return Verdict(NOT_APPLICABLE, why_not, problems=(why_not,))
    adds: list[str] = []
    problems = _problems(need, holdings, workspace or {}, adds, seen={need.name})
    if problems:
        return Verdict(INCOMPATIBLE, problems[0], problems=tuple(problems))
    return Verdict(OK, adds=tuple(adds))


def _problems(need: Need, holdings: Holdings, workspace: Mapping[str, Need], adds: list[str],
              seen: set[str]) -> list[str]:
    problems: list[str] = []
    by_label = {n.label: n for n in workspace.values()}
    wanted = [by_label[d].name for d in need.deps if d in by_label]
    for text in need.requirements:
        try:
            name = canonicalize_name(Requirement(text).name)
        except InvalidRequirement:
            problems.append(f"invalid requirement {text!r}")
            continue
        if name in workspace and name not in holdings.libraries and name not in holdings.packages:
            wanted.append(name)
            continue
        problem = check_requirement(text, holdings)
        if problem:
            problems.append(problem)
    for name in dict.fromkeys(wanted):
        if name in holdings.libraries or name in seen:
            continue
        seen.add(name)
        dep = workspace[name]
        if applies(dep.requires_python, holdings.python):
            problems.append(f"needs library {dep.label}, which {applies(dep.requires_python, holdings.python)}")
            continue
        inner = _problems(dep, holdings, workspace, adds, seen)
        if inner:
            problems.extend(f"{p} (for {dep.label})" for p in inner)
        elif dep.label not in adds:
            adds.append(dep.label)
    return problems


def check_requirements(texts: Iterable[str], holdings: Holdings) -> list[str]:
    """Every problem `holdings` has with a list of PEP 508 requirements (a workload's)."""
    found = []
    for text in texts:
        problem = check_requirement(text, holdings)
        if problem:
            found.append(problem)
    return found
