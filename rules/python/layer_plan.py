"""Image layers planned across environments: which packages share a layer, in which order.

Pure logic, no I/O: the environment rule feeds it the locks of every environment of the
workspace, each by its label (see `workspace_locks.py`), and reads back its own layers.

The plan, step by step:

1. A *package* here is one locked wheel (name and sha256): environments that lock the same
   wheel hold the same package; two versions of numpy are two packages.
2. Packages are grouped by the set of environments that contain them. A group's packages are
   in the images of exactly those environments, so a layer never brings an environment
   something it did not lock.
3. Each group gets as many layers as the cap allows (`max_layers` per image, less the layers
   the environment needs anyway: the venv skeleton and one per library). Within a group,
   packages take a layer of their own in this order: big ones first (when the lock records
   wheel sizes), then those a requirement names directly (what users re-pin: the proxy for
   change frequency, since a lock has no history), then by name; the rest share the group's
   last layer. An environment over the cap shrinks its least shared groups first (those cost
   the fewest other images), one layer at a time; when every group is down to one layer, it
   stops using its least shared groups and takes their packages into a layer of its own.
4. Each image lists its layers most shared first (then by the set of environments, then
   layers of transitive packages before those a requirement names, then by name), as Nixery
   does: Docker reuses a layer only under the same chain of layers, and the most shared
   layers come first in every image that has them.

The same locks give the same plan (everything is sorted; no hash order, no clock). A pin
change in one environment moves that package out of the groups it was in: the layers that
change in other environments are at most the group layers that held the old version.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

#: The default cap of an image's own layers (the base's are not counted): well under the
#: 127 layers overlayfs stacks, leaving room for images built FROM it.
DEFAULT_MAX_LAYERS = 40
#: A package whose wheel is at least this big gets a layer of its own first (when the lock
#: records wheel sizes).
BIG_WHEEL = 8 * 1024 * 1024


@dataclass(frozen=True)
class Package:
    """One locked wheel in one environment."""

    name: str
    wheel: str  # the wheel's sha256 (or any id of what is installed)
    size: int | None = None  # the wheel's size, when the lock records it
    direct: bool = False  # named by a requirement of the environment

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.wheel}"


@dataclass(frozen=True)
class PlannedLayer:
    """One image layer of the plan."""

    name: str
    packages: tuple[str, ...]  # package names, sorted
    idents: tuple[str, ...]  # Package.ident of each, in the same order
    environments: tuple[str, ...]  # the environments whose images hold this layer, sorted
    reason: str
    size: int | None = None  # sum of the wheels' sizes, when all are known
    direct: bool = False  # holds a package a requirement names (likelier to be re-pinned)

    def as_json(self) -> dict:
        return {"name": self.name, "packages": list(self.packages), "environments": list(self.environments),
                "shared_by": len(self.environments), "wheel_size": self.size, "why": self.reason}


@dataclass
class Plan:
    max_layers: int
    layers: dict[str, list[PlannedLayer]] = field(default_factory=dict)  # environment -> its layers, in order

    def of(self, environment: str) -> list[PlannedLayer]:
        return self.layers[environment]

    def chain_is_shared(self, environment: str, layer: PlannedLayer) -> bool:
        """Whether the layers under `layer` are the same in every image that has it (so that an
        engine reuses it in all of them)."""
        def under(env: str) -> list[tuple[str, ...]]:
            chain = []
            for other in self.layers[env]:
                if other.idents == layer.idents:
                    return chain
                chain.append(other.idents)
            return chain

        mine = under(environment)
        return all(under(env) == mine for env in layer.environments if env in self.layers)


@dataclass
class _Group:
    key: tuple[str, ...]  # the environments containing its packages (the group's identity)
    users: set[str]  # the environments whose images use its layers
    packages: list[Package]
    count: int = 0  # how many layers it gets


def plan_layers(environments: Mapping[str, Mapping[str, Package]], *, max_layers: int = DEFAULT_MAX_LAYERS,
                reserved: Mapping[str, int] | None = None, caps: Mapping[str, int] | None = None) -> Plan:
    """The plan for `environments` (id -> package name -> Package; an id is the environment's
    label, or any name in tests). `reserved`: layers each environment's image has besides its
    packages' (the venv skeleton, libraries), counted against its cap; `caps`: an
    environment's own `max_layers` where it is not `max_layers`."""
    reserved = reserved or {}
    caps = caps or {}
    budget = {env: max(1, caps.get(env, max_layers) - reserved.get(env, 0)) for env in environments}
    holders: dict[str, set[str]] = {}
    found: dict[str, Package] = {}
    for env, packages in environments.items():
        for package in packages.values():
            holders.setdefault(package.ident, set()).add(env)
            previous = found.get(package.ident)
            # one wheel, seen from several environments: direct if any names it
            if previous is None or (package.direct and not previous.direct):
                found[package.ident] = package
    by_key: dict[tuple[str, ...], _Group] = {}
    for ident in sorted(found):
        key = tuple(sorted(holders[ident]))
        group = by_key.setdefault(key, _Group(key, set(key), []))
        group.packages.append(found[ident])
    groups = [by_key[k] for k in sorted(by_key, key=lambda k: (-len(k), k))]
    for group in groups:
        group.packages.sort(key=_priority)
        group.count = len(group.packages)
    _fit(groups, budget)
    plan = Plan(max_layers=max_layers)
    layers_of: dict[str, list[PlannedLayer]] = {env: [] for env in environments}
    names = _group_names([group.key for group in groups])
    for group in groups:
        if not group.users:
            continue
        for layer in _split(group, len(environments), names[group.key]):
            for env in layer.environments:
                layers_of[env].append(layer)
    for env, layers in layers_of.items():
        # a changed layer changes the chain of every layer above it (an engine that has those
        # layers under the old chain extracts them again): among equally shared layers, those
        # holding a directly named package (the likelier to be re-pinned) come last
        plan.layers[env] = sorted(layers, key=lambda layer: (-len(layer.environments), layer.environments,
                                                             layer.direct, layer.name))
    return plan


def _priority(package: Package) -> tuple:
    big = package.size is not None and package.size >= BIG_WHEEL
    return (not big, -(package.size or 0) if big else 0, not package.direct, package.name, package.wheel)


def _fit(groups: list[_Group], budget: Mapping[str, int]) -> None:
    """Lower the groups' layer counts (and, at the end, detach environments from shared groups)
    until every environment is within its budget. Counts only go down (an environment's own
    group, made by a detach, touches no other), so one pass over the environments, by name, is
    enough; deterministic."""
    used: dict[str, int] = dict.fromkeys(budget, 0)
    member: dict[str, list[_Group]] = {env: [] for env in budget}
    for group in groups:
        for env in group.users:
            used[env] += group.count
            member[env].append(group)
    for env in sorted(budget):
        while used[env] > budget[env]:
            mine = [g for g in member[env] if env in g.users]
            shrinkable = [g for g in mine if g.count > 1]
            if shrinkable:
                # the least shared group gives up a layer (it costs the fewest other images
                # their separate layers), the one with the most layers among those
                target = min(shrinkable, key=lambda g: (len(g.users), -g.count, g.key))
                target.count -= 1
                for user in target.users:
                    used[user] -= 1
                continue
            own = _detach(groups, env, mine)
            if own not in member[env]:
                member[env].append(own)
            used[env] = sum(g.count for g in member[env] if env in g.users)


def _detach(groups: list[_Group], env: str, mine: list[_Group]) -> _Group:
    """`env` stops using its least shared group; that group's packages go into env's own group."""
    own_key = (env,)
    own = next((g for g in groups if g.key == own_key), None)
    candidates = [g for g in mine if g is not own]
    victim = min(candidates, key=lambda g: (len(g.users), len(g.packages), g.key))
    victim.users.discard(env)
    if own is None:
        own = _Group(own_key, {env}, [], 0)
        groups.append(own)
    own.packages = sorted([*own.packages, *victim.packages], key=_priority)
    own.count = 1
    return own


def _split(group: _Group, total_envs: int, short: str) -> list[PlannedLayer]:
    environments = tuple(sorted(group.users))
    sharing = _sharing(group, total_envs)
    own_count = group.count if group.count >= len(group.packages) else group.count - 1
    layers = []
    for package in group.packages[:own_count]:
        big = package.size is not None and package.size >= BIG_WHEEL
        why = ("a big wheel" if big else "named by a requirement" if package.direct else "room under the cap")
        layers.append(PlannedLayer(
            name=f"pkg.{package.name}" + ("" if group.users == set(group.key) else f".{short}"),
            packages=(package.name,), idents=(package.ident,), environments=environments,
            reason=f"its own layer ({why}); in {sharing}", size=package.size, direct=package.direct))
    rest = group.packages[own_count:]
    if rest:
        rest = sorted(rest, key=lambda p: (p.name, p.wheel))
        sizes = [p.size for p in rest]
        folded = group.users != set(group.key)
        reason = (f"the {len(rest)} packages of {sharing} without a layer of their own share one, to keep every "
                  "image under max_layers") if not folded else (
                  f"packages {environments[0]} shares with others, taken into its own layer to stay under "
                  "max_layers")
        layers.append(PlannedLayer(
            name=f"pkgs.{short}", packages=tuple(p.name for p in rest),
            idents=tuple(p.ident for p in rest), environments=environments, reason=reason,
            size=None if None in sizes else sum(s or 0 for s in sizes), direct=any(p.direct for p in rest)))
    return layers


def _sharing(group: _Group, total_envs: int) -> str:
    count = len(group.users)
    if count == 1:
        return f"{next(iter(group.users))} alone"
    if count == total_envs:
        return f"all {count} environments"
    return f"{count} environments ({', '.join(sorted(group.users))})"


#: A group named by its environments is named so only up to this many characters.
_READABLE_NAME = 80


def _group_names(keys: list[tuple[str, ...]]) -> dict[tuple[str, ...], str]:
    """A readable, stable, distinct name for each set of environments (a layer's name is part
    of its node's name and of the image's config): `dev+prod` for one or two, else a count and
    a digest of the set; a readable name two sets would share is replaced by the digest form."""
    readable = {key: "+".join(_tag(env) for env in key) for key in keys}
    taken: dict[str, int] = {}
    for name in readable.values():
        taken[name] = taken.get(name, 0) + 1
    names = {}
    for key, name in readable.items():
        if len(key) <= 2 and len(name) <= _READABLE_NAME and taken[name] == 1:
            names[key] = name
        else:
            digest = hashlib.sha256(chr(0).join(key).encode()).hexdigest()[:8]
            names[key] = f"{len(key)}envs-{digest}"
    return names


def _tag(env: str) -> str:
    """An environment's id as a name part: the label `//team/ml:prod` is `team.ml.prod`, `//:ci`
    is `ci` (`//a:b.c` and `//a.b:c` give the same tag: `_group_names` then uses its digest form)."""
    if not env.startswith("//"):
        return env
    package, _, name = env[2:].partition(":")
    return f"{package.replace('/', '.')}.{name}" if package else name
