"""The per-environment PEP 751 lock file (`pylock.<env>.toml`) and its freshness check.

Besides the standard `[[packages]]` (pins, wheel URLs, hashes, and each package's
`dependencies`), `[tool.graphbuild]` records the spec the lock was made from and which
packages belong to which layer.  A build compares that spec with the current one: if they
differ, the lock is stale and the build stops before doing anything.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from typing import Any

import tomli_w

LOCK_FORMAT = 1
HEADER = "# Written by `graphbuild lock`; do not edit. Rebuilt from the BUILD.envs spec.\n"


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
        """`names` and everything they depend on, per the lock, sorted."""
        seen: set[str] = set()
        stack = list(names)
        while stack:
            name = stack.pop()
            if name in seen or name not in self.packages:
                continue
            seen.add(name)
            stack.extend(self.dependencies(name))
        return sorted(seen)


def parse(text: str) -> Lock:
    data = tomllib.loads(text)
    tool = data.get("tool", {}).get("graphbuild", {})
    if tool.get("format") != LOCK_FORMAT:
        raise ValueError(f"not a graphbuild lock of format {LOCK_FORMAT}")
    packages = {p["name"]: p for p in data.get("packages", []) if "vcs" not in p}
    return Lock(packages, tool.get("spec", {}), tool.get("layers", []),
                {lib["label"]: lib for lib in tool.get("libraries", [])})


def render(uv_lock: dict[str, Any], *, spec: dict[str, Any], layers: list[dict[str, Any]],
           libraries: list[dict[str, Any]], dependencies: dict[str, list[str]], python: str) -> bytes:
    packages = []
    for entry in sorted(uv_lock.get("packages", []), key=lambda p: p["name"]):
        entry = dict(entry)
        deps = dependencies.get(entry["name"], [])
        if deps:
            entry["dependencies"] = [{"name": d} for d in sorted(deps)]
        packages.append(entry)
    for lib in libraries:
        if lib.get("git"):
            git = lib["git"]
            packages.append({
                "name": lib["name"],
                "vcs": {"type": "git", "url": git["url"], "requested-revision": git["ref"],
                        "commit-id": lib["commit"], **({"subdirectory": git["subdir"]} if git["subdir"] else {})},
            })
    document = {
        "lock-version": "1.0",
        "created-by": "graphbuild",
        "requires-python": f"=={python}.*",
        "packages": packages,
        "tool": {"graphbuild": {"format": LOCK_FORMAT, "spec": spec, "layers": layers,
                                "libraries": [{k: v for k, v in lib.items() if v is not None} for lib in libraries]}},
    }
    return (HEADER + tomli_w.dumps(document)).encode()


def spec_changes(locked: dict[str, Any], current: dict[str, Any], where: dict[str, str]) -> list[str]:
    """What differs between the spec a lock was made from and the current one, for people.

    `where` maps a requirement ("label|requirement") to its BUILD.envs location."""
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
        old, new = set(old_layers[label]["requirements"]), set(new_layers[label]["requirements"])
        for req in sorted(new - old):
            changes.append(f"{label}: requirement {req!r} added ({where.get(f'{label}|{req}', '?')})")
        for req in sorted(old - new):
            changes.append(f"{label}: requirement {req!r} removed")
    old_libs = {lib["label"]: lib for lib in locked.get("libraries", [])}
    new_libs = {lib["label"]: lib for lib in current.get("libraries", [])}
    for label in sorted(set(old_libs) | set(new_libs)):
        if old_libs.get(label) != new_libs.get(label):
            state = "added" if label not in old_libs else "removed" if label not in new_libs else "changed"
            changes.append(f"library {label} {state}")
    if not changes and locked != current:
        changes.append("the spec's layer order changed")
    return changes
