"""`graphbuild/keys.py`: the canonical encoding is injective (property-based: a decoder gives
every value back, and distinct values give distinct bytes), keys are pure functions of the
named components, and `diff` names what changed."""

from __future__ import annotations

import json
import math
from enum import IntEnum, StrEnum
from types import MappingProxyType
from typing import Any

import pytest
from conftest import examples
from hypothesis import given, settings
from hypothesis import strategies as st

from graphbuild.keys import KEY_FORMAT, Component, _encode, canonical, component, diff, digest, key_of

# -- a decoder: the left inverse that proves the encoding injective ---------------------------


def decode(data: bytes) -> Any:
    value, end = _decode(data, 0)
    assert end == len(data), f"{len(data) - end} bytes left over"
    return value


def _count(data: bytes, at: int) -> tuple[int, int]:
    colon = data.index(b":", at)
    return int(data[at:colon]), colon + 1


def _decode(data: bytes, at: int) -> tuple[Any, int]:
    tag = data[at:at + 1]
    at += 1
    if tag == b"s":
        size, at = _count(data, at)
        return data[at:at + size].decode("utf-8", "surrogatepass"), at + size
    if tag == b"n":
        return None, at
    if tag in (b"t", b"f"):
        return tag == b"t", at
    if tag in (b"i", b"d"):
        end = data.index(b";", at)
        text = data[at:end].decode()
        return (int(text) if tag == b"i" else float(text)), end + 1
    if tag == b"L":
        count, at = _count(data, at)
        colon = data.index(b":", at)
        sizes = [int(size) for size in data[at:colon].split(b",")] if count else []
        assert len(sizes) == count
        at = colon + 1
        items = []
        for size in sizes:
            items.append(data[at:at + size].decode("utf-8", "surrogatepass"))
            at += size
        return items, at
    if tag == b"l":
        count, at = _count(data, at)
        items = []
        for _ in range(count):
            item, at = _decode(data, at)
            items.append(item)
        return items, at
    if tag == b"m":
        count, at = _count(data, at)
        mapping = {}
        for _ in range(count):
            key, at = _decode(data, at)
            mapping[key], at = _decode(data, at)
        return mapping, at
    raise AssertionError(f"unknown tag {tag!r} at {at - 1}")


def same(a: Any, b: Any) -> bool:
    """Equality that tells 1, 1.0 and True apart, -0.0 from 0.0, and finds nan equal to itself."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        if len(a) != len(b):
            return False
        keys_b = list(b)
        for key, value in a.items():
            match = [k for k in keys_b if same(k, key)]
            if not match or not same(value, b[match[0]]):
                return False
        return True
    return a == b


# the shapes manifests hold: strings (with NULs, "0", empty, any unicode), None, bools, ints,
# floats (nan, infinities, -0.0), nested lists and dicts (keys of scalar types)
_TEXT = st.one_of(st.text(), st.sampled_from(["", "0", "\0", "a\0b", "l0", "s1:", "[]", "null", "true", "1"]))
_SCALARS = st.one_of(_TEXT, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True))
_KEYS = st.one_of(_TEXT, st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False))
VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.lists(_TEXT, max_size=5),
                            st.dictionaries(_KEYS, inner, max_size=5)),
    max_leaves=25,
)


@settings(max_examples=examples(300))
@given(VALUES)
def test_every_value_decodes_back_from_its_encoding(value):
    assert same(decode(canonical(value)), value)


@settings(max_examples=examples(300))
@given(VALUES, VALUES)
def test_distinct_values_give_distinct_bytes(a, b):
    assert (canonical(a) == canonical(b)) == same(a, b)


@settings(max_examples=examples(300))
@given(st.lists(_TEXT, max_size=8))
def test_the_list_of_strings_fast_path_writes_what_the_general_encoder_writes(items):
    parts: list[bytes] = []
    _encode(items, parts)
    assert canonical(items) == b"".join(parts)
    # and a list of strings never meets the encoding of a list holding anything else
    assert canonical(items) != canonical([*items, None])


@settings(max_examples=examples(300))
@given(st.dictionaries(_KEYS, _SCALARS, max_size=6), st.randoms())
def test_a_dict_encodes_the_same_whatever_its_insertion_order(mapping, rnd):
    entries = list(mapping.items())
    rnd.shuffle(entries)
    assert canonical(dict(entries)) == canonical(mapping)


@pytest.mark.parametrize(("a", "b"), [
    ([], ["0"]),           # the collision of KEY_FORMAT 2
    ([], [""]),
    ([""], ["", ""]),
    (["a\0b"], ["a", "b"]),
    (["a", "b"], ["a\0b"]),
    ({1: "a"}, {"1": "a"}),
    ({None: 1}, {"null": 1}),
    (1, 1.0),
    (1, True),
    (0, False),
    (0.0, -0.0),
    ("", None),
    ("1", 1),
    ("null", None),
    ([[]], [[], []]),
    ([["a"], "b"], [["a", "b"]]),
    ({"a": ["b"]}, {"a": "b"}),
    (["s1:a"], ["a"]),
])
def test_known_near_misses_stay_apart(a, b):
    assert canonical(a) != canonical(b)
    assert digest(a) != digest(b)


def test_a_tuple_keys_as_the_list_of_its_items_and_plain_subclasses_as_their_base():
    class Color(StrEnum):
        RED = "red"

    class Level(IntEnum):
        HIGH = 3

    assert canonical(("a", 1)) == canonical(["a", 1])
    assert canonical(Color.RED) == canonical("red")
    assert canonical(Level.HIGH) == canonical(3)
    assert canonical(MappingProxyType({"a": 1})) == canonical({"a": 1})


def test_a_value_of_another_type_is_refused_not_keyed_by_its_repr():
    with pytest.raises(TypeError, match="cannot key a value of type set"):
        canonical({"a": {1, 2}})


def test_lone_surrogates_are_keyed_not_a_crash():
    assert canonical("\ud800") != canonical("\ud801")


# -- keys of manifests ------------------------------------------------------------------------


def _manifest(**values: Any) -> dict[str, Component]:
    return {name: component(value) for name, value in values.items()}


def test_a_key_does_not_depend_on_the_order_of_components_or_on_display_and_location():
    one = _manifest(cmd="echo a", srcs=["x", "y"], env={"A": "1"})
    other = dict(reversed(list(one.items())))
    assert key_of(one) == key_of(other)
    shown = {name: Component(comp.digest, f"shown differently {name}", "BUILD.envs:99") for name, comp in one.items()}
    assert key_of(shown) == key_of(one)


def test_a_key_changes_with_any_name_or_value():
    base = _manifest(cmd="echo a", srcs=["x"])
    assert key_of(base) != key_of(_manifest(cmd="echo b", srcs=["x"]))
    assert key_of(base) != key_of(_manifest(cmd="echo a", srcs=["x", ""]))
    assert key_of(base) != key_of(_manifest(command="echo a", srcs=["x"]))
    assert key_of(base) != key_of(_manifest(cmd="echo a"))
    # a name and a digest cannot trade characters
    assert key_of({"ab": Component("c" * 32, None)}) != key_of({"a": Component("b" + "c" * 31, None)})


def test_key_format_is_part_of_every_key(monkeypatch):
    manifest = _manifest(cmd="x")
    before = key_of(manifest)
    monkeypatch.setattr("graphbuild.keys.KEY_FORMAT", KEY_FORMAT + 1)
    assert key_of(manifest) != before


def test_component_display_is_truncated_and_round_trips_through_json():
    from graphbuild.keys import _DISPLAY_LIMIT

    comp = component("x" * (_DISPLAY_LIMIT + 500), None)
    assert len(comp.display) == _DISPLAY_LIMIT and comp.display.endswith("…")
    again = Component.from_json(comp.to_json())
    assert again.digest == comp.digest and again.display == comp.display
    # a mapping keeps its keys; only the value too long to show is cut
    mapping = component({"long": "x" * (_DISPLAY_LIMIT + 500), "short": "y"}, None)
    shown = json.loads(mapping.display)
    assert shown["short"] == "y" and shown["long"].endswith("…") and len(shown["long"]) < 500
    assert Component.from_json(mapping.to_json()).display == mapping.display


def test_diff_names_changed_new_and_gone_components_with_their_location():
    old = {"cmd": Component(digest("a"), "a", "BUILD.envs:3"), "gone": component("g"), "same": component("s")}
    new = {"cmd": Component(digest("b"), "b", "BUILD.envs:4"), "added": component("n"), "same": component("s")}
    changes = {c.name: c for c in diff(old, new)}
    assert set(changes) == {"cmd", "gone", "added"}
    assert (changes["cmd"].old, changes["cmd"].new, changes["cmd"].location) == ("a", "b", "BUILD.envs:4")
    assert changes["gone"].new is None and changes["added"].old is None
