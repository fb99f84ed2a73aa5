"""Node keys: a pure function of named input components.

Each component is encoded canonically (`canonical`: tagged and length-prefixed, so distinct
values never share bytes) and hashed with xxh3-128; the key hashes the sorted (name, component
digest) pairs.  The components are kept, by name, as the node's manifest: `graphbuild why`
diffs manifests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import xxhash

from graphbuild.errors import Location

#: Bump when the key layout itself changes: every key changes with it.
KEY_FORMAT = 3
# How much of an input's value a manifest keeps for `why` (a whole image `Env`, say); `why`
# narrows a change down to the entries that differ when it prints.
_DISPLAY_LIMIT = 4000
_ITEM_LIMIT = 400  # one entry of a mapping or list too long to show whole
_STRUCTURED_LIMIT = 32_000


def canonical(value: Any) -> bytes:
    """Bytes that stand for `value` and for no other value: an injective, self-delimiting encoding.

    Every value starts with a type tag; strings and containers carry their length (in bytes,
    in items), numbers end with a terminator, so no encoding is a prefix of another and a
    concatenation of encodings splits one way only. The domain is what manifests hold: str,
    None, bool, int, float, and lists and dicts of them (dict keys of any of those types; a
    tuple is the list of its items). A list of strings only (the commonest shape, with the
    string) has a form of its own, written without a loop over its items when they are ASCII,
    since every node of every run is keyed.
    """
    kind = type(value)
    if kind is str:
        return _str(value)
    if kind is list and all(type(item) is str for item in value):
        return _strings(value)
    parts: list[bytes] = []
    _encode(value, parts)
    return b"".join(parts)


def _str(value: str) -> bytes:
    if value.isascii():
        return f"s{len(value)}:{value}".encode()
    data = value.encode("utf-8", "surrogatepass")
    return b"s%d:" % len(data) + data


def _strings(value: list[str] | tuple[str, ...]) -> bytes:
    """`L<count>:<byte length>,<byte length>...:<the strings' bytes, one after the other>`."""
    joined = "".join(value)
    if joined.isascii():
        return f"L{len(value)}:{','.join(map(str, map(len, value)))}:{joined}".encode()
    items = [item.encode("utf-8", "surrogatepass") for item in value]
    return b"L%d:%s:%s" % (len(items), b",".join(b"%d" % len(item) for item in items), b"".join(items))


def _encode(value: Any, parts: list[bytes]) -> None:
    kind = type(value)
    if kind is str:
        parts.append(_str(value))
    elif value is None:
        parts.append(b"n")
    elif kind is bool:
        parts.append(b"t" if value else b"f")
    elif kind is int:
        parts.append(b"i%d;" % value)
    elif kind is float:
        # repr round-trips every float and tells -0.0, inf and nan apart
        parts.append(b"d" + repr(value).encode() + b";")
    elif kind is list or kind is tuple:
        if all(type(item) is str for item in value):
            parts.append(_strings(value))
            return
        parts.append(b"l%d:" % len(value))
        for item in value:
            _encode(item, parts)
    elif kind is dict:
        # entries in the order of their encoded keys: the same mapping gives the same bytes
        # whatever the insertion order, and keys of different types never mix up ({1: x}, {"1": x})
        entries = []
        for key, item in value.items():
            encoded: list[bytes] = []
            _encode(key, encoded)
            entries.append((b"".join(encoded), item))
        entries.sort(key=lambda entry: entry[0])
        parts.append(b"m%d:" % len(entries))
        for encoded_key, item in entries:
            parts.append(encoded_key)
            _encode(item, parts)
    else:
        _encode(_plain(value), parts)


def _plain(value: Any) -> Any:
    """Subclasses of the plain types (an IntEnum, a StrEnum, a MappingProxy...) as their base value."""
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    if isinstance(value, list | tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"cannot key a value of type {type(value).__name__}: {value!r:.80}")


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
        if isinstance(self.value, _Shown):
            return self.value
        if isinstance(self.value, str):
            return _clip(self.value, _DISPLAY_LIMIT)
        text = _json(self.value)
        if len(text) <= _DISPLAY_LIMIT:
            return text
        # a long mapping or list keeps its shape with each entry cut on its own, so that `why`
        # can still name the entries that changed (a package added to an SBOM's 50 components)
        if isinstance(self.value, Mapping):
            text = _json({str(k): _clipped_entry(v) for k, v in self.value.items()})
        elif isinstance(self.value, list | tuple):
            text = _json([_clipped_entry(v) for v in self.value])
        return text if len(text) <= _STRUCTURED_LIMIT else _clip(text, _DISPLAY_LIMIT)

    def to_json(self) -> list:
        return [self.digest, self.display, self.location]

    @staticmethod
    def from_json(data: list) -> Component:
        return Component(data[0], _Shown(data[1]), data[2])


class _Shown(str):
    """A value's display text read back from a stored manifest: shown as it was stored."""


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _clipped_entry(value: Any) -> Any:
    """An entry as itself when short, else its JSON text cut (shown as a string)."""
    text = value if isinstance(value, str) else _json(value)
    return value if len(text) <= _ITEM_LIMIT else _clip(text, _ITEM_LIMIT)


Manifest = dict[str, Component]


def component(value: Any, location: Location | None = None) -> Component:
    return Component(xxhash.xxh3_128_hexdigest(canonical(value)), value, str(location) if location else None)


def key_of(manifest: Mapping[str, Component]) -> str:
    """The key: the key format, then the components' names and digests in name order, as one
    list of strings `[name, digest, name, digest...]` (an even count: it splits into pairs one
    way only)."""
    flat = []
    for name in sorted(manifest):
        flat.append(name)
        flat.append(manifest[name].digest)
    return xxhash.xxh3_128_hexdigest(b"k%d;" % KEY_FORMAT + _strings(flat))


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
