"""Node keys: a pure function of named input components.

Each component is encoded canonically (JSON, sorted keys, no whitespace) and hashed with
xxh3-128; the key hashes the sorted (name, component digest) pairs.  The components are kept,
by name, as the node's manifest: `graphbuild why` diffs manifests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import xxhash

from graphbuild.errors import Location

#: Bump when the key layout itself changes: every key changes with it.
KEY_FORMAT = 1
_DISPLAY_LIMIT = 160


def canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(value: Any) -> str:
    return xxhash.xxh3_128_hexdigest(canonical(value))


def display(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= _DISPLAY_LIMIT else text[: _DISPLAY_LIMIT - 1] + "…"


@dataclass(frozen=True, slots=True)
class Component:
    """One named input of a node: its digest, a short display value and where it was written."""

    digest: str
    display: str
    location: str | None = None

    def to_json(self) -> list:
        return [self.digest, self.display, self.location]

    @staticmethod
    def from_json(data: list) -> Component:
        return Component(data[0], data[1], data[2])


Manifest = dict[str, Component]


def component(value: Any, location: Location | None = None) -> Component:
    return Component(digest(value), display(value), str(location) if location else None)


def key_of(manifest: Mapping[str, Component]) -> str:
    pairs = [[KEY_FORMAT]] + [[name, manifest[name].digest] for name in sorted(manifest)]
    return xxhash.xxh3_128_hexdigest(canonical(pairs))


@dataclass(frozen=True, slots=True)
class Change:
    name: str
    old: str | None  # None: the component is new
    new: str | None  # None: the component is gone
    location: str | None


def diff(old: Mapping[str, Component], new: Mapping[str, Component]) -> list[Change]:
    """The components that differ between two manifests, by name."""
    changes = []
    for name in sorted(set(old) | set(new)):
        before, after = old.get(name), new.get(name)
        if before is not None and after is not None and before.digest == after.digest:
            continue
        changes.append(Change(
            name,
            before.display if before else None,
            after.display if after else None,
            (after or before).location,
        ))
    return changes
