"""A built-in executor whose code changes must bump its version (see executor_fingerprints.py)."""

from __future__ import annotations

import json

from executor_fingerprints import GOLDEN, builtin_executors, current, fingerprint

FIX = "then run `.venv/bin/python tests/executor_fingerprints.py --write` and commit tests/golden/executors.json"


def test_every_builtin_executor_is_recorded_with_its_code() -> None:
    recorded = json.loads(GOLDEN.read_text())
    problems = []
    for ident, now in current().items():
        name = ident.rsplit("@", 1)[0]
        if ident not in recorded:
            older = sorted(k for k in recorded if k.rsplit("@", 1)[0] == name)
            problems.append(f"{ident} is not recorded (recorded: {', '.join(older) or 'none'})")
        elif recorded[ident] != now:
            problems.append(f"{ident}: its code changed but its version did not: bump `version=` of "
                            f"@executor({name!r}) so results stored by the old code are not reused")
    assert not problems, "\n".join(problems) + "\n" + FIX


def test_a_helper_change_changes_the_fingerprint() -> None:
    """The check sees through helpers: an executor's fingerprint covers the functions it calls."""
    executors = builtin_executors()
    layer = executors[next(k for k in executors if k.startswith("python.layer@"))]
    before = fingerprint(layer.fn)
    import graphbuild.rules.python.layers as layers

    original = layers._strip_host_state
    try:
        def _strip_host_state(site):  # same name, other body
            return None

        _strip_host_state.__module__ = layers.__name__
        _strip_host_state.__qualname__ = "_strip_host_state"
        layers._strip_host_state = _strip_host_state
        assert fingerprint(layer.fn) != before
    finally:
        layers._strip_host_state = original
    assert fingerprint(layer.fn) == before
