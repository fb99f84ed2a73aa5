"""What `why` can tell of a changed input too long to store whole: the entries that changed."""

from __future__ import annotations

import json

from graphbuild.keys import Component, component
from graphbuild.reporting.changes import narrowed


def _components(count: int) -> list[dict]:
    return [{"name": f"pkg{i}", "sha256": f"{i:064x}", "version": "1.0", "depends_on": ["dep"] * (i % 7)}
            for i in range(count)]


def test_a_long_list_is_stored_entry_by_entry_so_an_added_entry_is_named():
    before, after = component(_components(51)), component([*_components(51), {"name": "six", "version": "1.17.0"}])
    assert len(before.display) > 4000 and json.loads(before.display)[0]["name"] == "pkg0"
    assert narrowed("components", before.display, after.display) == [
        ("components", "(nothing)", '{"name": "six", "version": "1.17.0"}')]


def test_a_long_mapping_names_the_key_whose_value_changed():
    files = {f"src/mod{i}.py": f"{i:032x}" for i in range(200)}
    changed = {**files, "src/mod7.py": "f" * 32}
    assert narrowed("srcs", component(files).display, component(changed).display) == [
        ("srcs[src/mod7.py]", json.dumps(files["src/mod7.py"]), json.dumps("f" * 32))]


def test_an_entry_too_long_is_cut_and_a_value_too_long_to_keep_its_shape_is_cut_whole():
    huge = [{"blob": "x" * 1000}] * 5
    shown = json.loads(component(huge).display)
    assert all(isinstance(entry, str) and entry.endswith("…") and len(entry) <= 400 for entry in shown)
    enormous = component(["y" * 200] * 1000).display
    assert len(enormous) == 4000 and enormous.endswith("…")


def test_a_display_read_back_from_a_stored_manifest_is_shown_as_stored():
    stored = component(_components(51)).to_json()
    assert Component.from_json(json.loads(json.dumps(stored))).display == stored[1]
