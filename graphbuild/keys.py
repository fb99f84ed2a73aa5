"""Node keys: a pure function of named input components.

Each component is encoded canonically (JSON, sorted keys, no whitespace) and hashed with
xxh3-128; the key hashes the sorted (name, component digest) pairs.  The components are kept,
by name, as the node's manifest: `graphbuild why` diffs manifests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import xxhash

from graphbuild.errors import Location

#: Bump when the key layout itself changes: every key changes with it.
KEY_FORMAT = 2
# How much of an input's value a manifest keeps for `why` (a whole image `Env`, say); `why`
# narrows a change down to the entries that differ when it prints.
_DISPLAY_LIMIT = 4000


def canonical(value: Any) -> bytes:
    """Type-tagged bytes. The common shapes (a string, None, a list of strings) get cheap
    encodings, since every node of every run is keyed; anything else is sorted, compact JSON."""
    kind = type(value)
    if kind is str:
        return b"s" + value.encode()
    if value is None:
        return b"n"
    if kind is bool:
        return b"jtrue" if value else b"jfalse"
    if kind is int or (kind is float and value == value and abs(value) != float("inf")):
        return b"j" + repr(value).encode()  # what JSON writes for them
    if kind is list and all(type(item) is str and "\0" not in item for item in value):
        return b"l" + "\0".join(value).encode() if value else b"l0"
    return b"j" + json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def digest(value: Any) -> str:
    return xxhash.xxh3_128_hexdigest(canonical(value))


@dataclass(frozen=True, slots=True)
class Component:
    """One named input of a node: its digest, its value (or how to show it) and where it was
    written. Only the digest is keyed; the value is rendered for `why` when a manifest is stored."""

    digest: str
    value: Any = field(compare=False)
    location: str | None = None

    @property
    def display(self) -> str:
        text = self.value if isinstance(self.value, str) else json.dumps(self.value, sort_keys=True,
                                                                         ensure_ascii=False, default=str)
        return text if len(text) <= _DISPLAY_LIMIT else text[: _DISPLAY_LIMIT - 1] + "…"

    def to_json(self) -> list:
        return [self.digest, self.display, self.location]

    @staticmethod
    def from_json(data: list) -> Component:
        return Component(data[0], data[1], data[2])


Manifest = dict[str, Component]


def component(value: Any, location: Location | None = None) -> Component:
    return Component(xxhash.xxh3_128_hexdigest(canonical(value)), value, str(location) if location else None)


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
