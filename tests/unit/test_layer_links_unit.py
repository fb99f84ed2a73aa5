"""A package node installs with hard links into uv's cache: what it edits afterwards (console
scripts' first line and mode, RECORD) must be new files, or every later install from that
cache would get the edited bytes."""

from __future__ import annotations

import os
from pathlib import Path

from graphbuild.rules.python import layers


def _linked(cache: Path, tree: Path, name: str, data: bytes, mode: int) -> Path:
    original = cache / name.replace("/", "_")
    original.write_bytes(data)
    os.chmod(original, mode)
    linked = tree / name
    linked.parent.mkdir(parents=True, exist_ok=True)
    os.link(original, linked)
    return original


def test_edits_after_a_hard_linked_install_leave_uv_cache_untouched(tmp_path):
    cache, tree = tmp_path / "uv-cache", tmp_path / "staging"
    cache.mkdir()
    script = _linked(cache, tree, "bin/tool", b"#!/tmp/scratch/python\nprint('hi')\n", 0o644)
    plain = _linked(cache, tree, "bin/data.txt", b"not a script\n", 0o644)
    record = _linked(cache, tree, "site/pkg-1.0.dist-info/RECORD",
                     b"pkg/__init__.py,sha256=x,0\npkg-1.0.dist-info/uv_cache.json,,\n", 0o644)
    _linked(cache, tree, "site/pkg-1.0.dist-info/uv_cache.json", b"{}", 0o644)
    before = {p: (p.read_bytes(), p.stat().st_mode) for p in cache.iterdir()}

    layers._fix_scripts(tree / "bin", "/opt/env/bin/python")
    layers._strip_host_state(tree / "site")

    assert {p: (p.read_bytes(), p.stat().st_mode) for p in cache.iterdir()} == before
    assert (tree / "bin/tool").read_bytes() == b"#!/opt/env/bin/python\nprint('hi')\n"
    assert (tree / "bin/tool").stat().st_mode & 0o777 == 0o755
    assert (tree / "bin/data.txt").stat().st_mode & 0o777 == 0o755
    assert (tree / "site/pkg-1.0.dist-info/RECORD").read_bytes() == b"pkg/__init__.py,sha256=x,0\n"
    assert not (tree / "site/pkg-1.0.dist-info/uv_cache.json").exists()
    for edited in ("bin/tool", "bin/data.txt", "site/pkg-1.0.dist-info/RECORD"):
        assert (tree / edited).stat().st_nlink == 1, edited
    assert script.stat().st_nlink == plain.stat().st_nlink == record.stat().st_nlink == 1
