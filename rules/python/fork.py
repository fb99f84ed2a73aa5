"""Forks of an environment: the same stack with some packages moved forward.

`environment(name = "prod-next", fork = ":prod", upgrade = ["numpy"])` takes every attribute of
prod it does not set itself (never `push`: a fork does not overwrite its parent's image), and
its lock is prod's lock with the upgraded packages moved: the layers under the first one that
holds an upgraded package keep prod's pins (same wheels, so the same layer nodes, shared), that
layer and those over it are resolved again preferring prod's versions, so only what the
upgrade drags along moves. `graphbuild try` declares such a fork for one question
(`//envs:prod.candidate`) and compares its tests with prod's.

An upgrade is a requirement: `numpy` (the newest numpy the rest of the stack allows: the
parent's own bound on numpy is lifted) or `pandas>=2.2` (replacing the parent's requirement on
pandas); `*` takes every package to the newest version the spec allows (what `lock --upgrade`
would take). Only packages the parent's lock holds can be upgraded; libraries are built from their
sources and move with them.

The fork's lock records which parent lock it was made from (a digest of its pins): relocking
the parent makes the fork's lock stale, so a fork follows its parent.
"""

from __future__ import annotations

import posixpath
from typing import Any

import xxhash
from packaging.requirements import InvalidRequirement, Requirement

from graphbuild.api import Field, Provider, RuleContext, SpecError
from graphbuild.rules.python import lockfile
from graphbuild.rules.python.requirements import canonicalize_name

#: Attributes a fork never takes from its parent.
NOT_INHERITED = frozenset({"name", "push", "fork", "upgrade"})
CANDIDATE_SUFFIX = ".candidate"


class ForkableInfo(Provider):
    """What a fork needs of the environment it forks (given even while locking)."""

    label: str
    attrs: dict[str, Any] = Field(description="the environment's effective attributes")
    lock: str = Field(description="workspace path of its lock file")


def pins_digest(lock: lockfile.Lock) -> str:
    """The parent lock a fork was made from, as the fork's spec records it: its pins."""
    text = "\n".join(f"{n}=={p.get('version', '')}" for n, p in sorted(lock.packages.items()))
    text += "\n" + "\n".join(f"{label}@{lib.get('commit') or lib.get('version') or ''}"
                             for label, lib in sorted(lock.libraries.items()))
    return xxhash.xxh3_128_hexdigest(text.encode())


#: `upgrade = ["*"]`: every package to the newest version the spec allows (`lock --upgrade`)
EVERYTHING = "*"


def check_upgrade(text: str) -> str:
    """A field validator's check: a PEP 508 requirement without markers or URL, or "*"."""
    if text == EVERYTHING:
        return text
    try:
        requirement = Requirement(text)
    except InvalidRequirement as err:
        raise ValueError(f"invalid requirement {text!r}: {str(err).splitlines()[0]} (PEP 508, e.g. 'numpy' "
                         f"or 'pandas>=2.2')") from None
    if requirement.url or requirement.marker:
        raise ValueError(f"{text!r}: an upgrade is a name and a version range, without URL or marker")
    return text


def inherit(ctx: RuleContext, attrs: Any) -> tuple[Any, dict[str, Any] | None]:
    """The attributes a fork builds with (its own, else its parent's) and the `fork` entry of
    its spec; an environment that forks nothing is returned as it is."""
    if attrs.fork is None:
        if attrs.upgrade:
            raise ctx.error("upgrade needs fork: the environment whose lock is upgraded", attr="upgrade",
                            hint='environment(name = "prod-next", fork = ":prod", upgrade = ["numpy"])')
        return attrs, None
    parent = ctx.provider(attrs.fork, ForkableInfo, attr="fork")
    taken = {k: v for k, v in parent.attrs.items() if k not in NOT_INHERITED and k not in attrs.model_fields_set}
    merged = attrs.model_copy(update=taken)
    parent_lock = read_parent_lock(ctx, parent)
    upgrades = lockfile.requirement_set(list(attrs.upgrade))
    libraries = {lib.get("name") for lib in parent_lock.libraries.values()}
    for text in upgrades:
        if text == EVERYTHING:
            continue
        name = canonicalize_name(Requirement(text).name)
        if name in libraries:
            raise ctx.error(f"upgrade {text!r}: {name} is a library of {parent.label}, built from its sources",
                            attr="upgrade", hint="a library moves with its sources (or its git branch)")
        if name not in parent_lock.packages:
            raise ctx.error(f"upgrade {text!r}: {parent.label} has no package {name}", attr="upgrade",
                            hint="upgrade a package its lock holds: " + _some(sorted(parent_lock.packages)))
    if merged.base is None:
        raise ctx.error(f"fork {parent.label} has no base: there is nothing to test a fork in", attr="fork")
    fork = {"of": parent.label, "lock": parent.lock, "upgrade": upgrades, "parent_pins": pins_digest(parent_lock)}
    return merged, fork


def read_parent_lock(ctx: RuleContext, parent: ForkableInfo) -> lockfile.Lock:
    relative = posixpath.relpath(parent.lock, ctx.package or ".")
    hint = f"run 'graphbuild lock {parent.label}' first: a fork is locked from its parent's lock"
    try:
        ctx.file(relative, attr="fork", within="workspace")
    except SpecError:
        raise ctx.error(f"the environment it forks, {parent.label}, has no lock file {parent.lock}", attr="fork",
                        hint=hint) from None
    try:
        return lockfile.parse((ctx.workspace_root / parent.lock).read_text())
    except lockfile.LockInvalid:
        raise ctx.error(f"the lock of {parent.label} ({parent.lock}) is not valid", attr="fork", hint=hint) from None


def _some(names: list[str]) -> str:
    return ", ".join(names[:8]) + (f" ... ({len(names)} in all)" if len(names) > 8 else "")


def plan_steps(parent: lockfile.Lock, steps: list[tuple[str, list[str]]], upgrades: list[str]
               ) -> tuple[list[tuple[str, list[str]]], int, set[str]]:
    """The candidate's resolution steps (each upgrade put into the step holding its package,
    replacing that step's own requirement on it), how many steps from the bottom keep the
    parent's pins at most, and the upgraded names (never preferred at the parent's version)."""
    holder = {name: index for index, layer in enumerate(parent.layers) for name in layer["packages"]}
    steps = [(label, list(reqs)) for label, reqs in steps]
    first = len(steps)
    names: set[str] = set()
    for text in upgrades:
        if text == EVERYTHING:  # nothing kept, nothing preferred: resolved afresh
            names.update(n for layer in parent.layers for n in layer["packages"])
            first = 0
            continue
        name = canonicalize_name(Requirement(text).name)
        names.add(name)
        index = holder.get(name)
        if index is None or index >= len(steps) or steps[index][0] != parent.layers[index]["label"]:
            index = len(steps) - 1  # the stack changed under it: the top step takes it
        label, reqs = steps[index]
        steps[index] = (label, [*(r for r in reqs if _name(r) != name), text])
        first = min(first, index)
    return steps, first, names


def _name(text: str) -> str:
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return ""
