"""The locks the layer plan is made from: every environment of the workspace (issue 12).

An environment's image layers are planned with those of every other environment, so that a
package shared by environments of different packages lands in the same layer, under the same
chain, in all their images. Which environments: the `environment` targets declared in the
packages `//...` names (the engine's `workspace_targets`, so the directories graphbuild.toml
ignores are left out, and a package whose BUILD.envs does not load is left out too). Each one's
lock is `pylock.<name>.toml` in its package, read through `file(..., within="workspace")`
(keyed by content, never outside the workspace). A `pylock.*.toml` no environment declares is
not read; a declared environment with no lock yet, or a lock that does not parse, is left out
of the plan (its own analysis reports it), never an error of another environment.

Parsed locks are kept by content digest and plans by what they are made from (each
environment's label, lock digest and cap): the environments of one workspace all plan from
the same input, so one analysis parses each lock once and makes the plan once.
"""

from __future__ import annotations

import os
import posixpath
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from graphbuild.api import RuleContext, SpecError
from graphbuild.rules.python import lockfile
from graphbuild.rules.python.layer_plan import DEFAULT_MAX_LAYERS, Plan

#: The rule whose targets are environments.
ENVIRONMENT_RULE = "environment"

#: Parsed locks by content digest (None: it does not parse).
_PARSED: dict[str, lockfile.Lock | None] = {}
#: Plans by their input (see `PlanInput.key`), the most recent few.
_PLANS: OrderedDict[tuple, Plan] = OrderedDict()
_PLANS_KEPT = 8


@dataclass(frozen=True)
class EnvironmentLock:
    """One environment's lock as the plan sees it."""

    label: str  # "//envs:prod": environments of two packages may share a name
    path: str  # workspace-relative
    digest: str
    lock: lockfile.Lock
    max_layers: int

    @property
    def reserved(self) -> int:
        """Layers its image has besides its packages': the venv skeleton and one per library."""
        return 1 + len(self.lock.spec.get("libraries", []))


def lock_path(label: str) -> str:
    """Where the environment `//pkg:name` keeps its lock, workspace-relative."""
    package, _, name = label.removeprefix("//").partition(":")
    return posixpath.join(package, lockfile.lock_name(name)) if package else lockfile.lock_name(name)


def workspace_locks(ctx: RuleContext, own: EnvironmentLock) -> list[EnvironmentLock]:
    """`own` (this environment, its lock as analysis read it) and the lock of every other
    environment of the workspace that has a readable one, sorted by label."""
    declared = {str(t.label): t.attrs for t in ctx.workspace_targets(ENVIRONMENT_RULE)}
    found = {own.label: own}
    for label in sorted(declared):
        if label in found:
            continue
        path = lock_path(label)
        if not os.path.lexists(ctx.workspace_root / path):
            continue  # not locked yet (the common case, asked before the costlier checks)
        try:
            ref = ctx.file(posixpath.relpath(path, ctx.package or "."), within="workspace")
        except SpecError:  # not a regular file, or a link out of the workspace
            continue
        lock = parsed(ref.digest, (ctx.workspace_root / ref.path).read_text)
        if lock is not None:
            found[label] = EnvironmentLock(label, ref.path, ref.digest, lock, cap_of(label, declared, own))
    return [found[label] for label in sorted(found)]


def parsed(digest: str, read: Callable[[], str]) -> lockfile.Lock | None:
    """The lock whose content has `digest`, parsed once (None if it does not parse)."""
    if digest not in _PARSED:
        try:
            _PARSED[digest] = lockfile.parse(read())
        except (lockfile.LockInvalid, OSError, UnicodeDecodeError, ValueError):
            _PARSED[digest] = None
    return _PARSED[digest]


def cap_of(label: str, declared: dict[str, Any], own: EnvironmentLock) -> int:
    """An environment's `max_layers`: its own, else (a fork that does not set it) the one of the
    environment it forks, as the environment rule resolves it."""
    seen: set[str] = set()
    while label not in seen:
        seen.add(label)
        if label == own.label:
            return own.max_layers
        attrs = declared.get(label)
        if attrs is None:
            break
        if "max_layers" in attrs.model_fields_set or getattr(attrs, "fork", None) is None:
            return int(attrs.max_layers)
        label = str(attrs.fork)
    return DEFAULT_MAX_LAYERS


def plan_key(locks: Iterable[EnvironmentLock]) -> tuple:
    return tuple((entry.label, entry.digest, entry.max_layers) for entry in locks)


def cached_plan(locks: list[EnvironmentLock], make: Callable[[list[EnvironmentLock]], Plan]) -> Plan:
    """The plan of `locks`, made once for every environment that plans from the same locks."""
    key = plan_key(locks)
    plan = _PLANS.get(key)
    if plan is None:
        plan = _PLANS[key] = make(locks)
        while len(_PLANS) > _PLANS_KEPT:
            _PLANS.popitem(last=False)
    else:
        _PLANS.move_to_end(key)
    return plan
