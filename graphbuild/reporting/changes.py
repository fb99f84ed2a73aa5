"""A changed input, told as the parts that changed: shared by `why`'s text and its picture."""

from __future__ import annotations

import json
from typing import Any


def narrowed(name: str, old: str, new: str) -> list[tuple[str, str, str]]:
    """A change of a mapping or list (an `env`, an image's runtime) as the entries that
    changed, each on its own line: `env: {"A": "1", "B": "2"} -> {...}` reads as
    `env[B]: "2" -> "3"`; a list as the items it lost and gained."""
    try:
        before, after = json.loads(old), json.loads(new)
    except ValueError:
        return [(name, old, new)]
    return narrow(name, before, after) or [(name, old, new)]


def narrow(name: str, before: Any, after: Any) -> list[tuple[str, str, str]]:
    if isinstance(before, dict) and isinstance(after, dict):
        shown = []
        for key in sorted(set(before) | set(after)):
            if key not in before or key not in after:
                shown.append((f"{name}[{key}]", json.dumps(before[key]) if key in before else "(unset)",
                              json.dumps(after[key]) if key in after else "(unset)"))
            elif before[key] != after[key]:
                shown.extend(narrow(f"{name}[{key}]", before[key], after[key]))
        return shown
    if isinstance(before, list) and isinstance(after, list) and before and after:
        lost = [item for item in before if item not in after]
        gained = [item for item in after if item not in before]
        if lost or gained:
            return [(name, " ".join(json.dumps(i) for i in lost) or "(nothing)",
                     " ".join(json.dumps(i) for i in gained) or "(nothing)")]
        return [(name, "(order) " + json.dumps(before), json.dumps(after))]
    return [(name, json.dumps(before), json.dumps(after))]
