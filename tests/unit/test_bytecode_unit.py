"""Bytecode of a package node is the same bytes whether a compile worker or a process of its own
compiled it, names the image's paths, skips test suites, and survives a worker that died."""

from __future__ import annotations

import marshal
import sys
import types
from pathlib import Path

from graphbuild.rules.python import bytecode

PYTHON = f"{sys.version_info[0]}.{sys.version_info[1]}"
SITE = f"opt/env/lib/python{PYTHON}/site-packages"


def _tree(root: Path) -> Path:
    package = root / SITE / "pkg"
    (package / "tests").mkdir(parents=True)
    (package / "__init__.py").write_text('NAMES = {"alpha", "beta", "gamma", "delta"}\nFROZEN = frozenset(NAMES)\n')
    (package / "broken.py").write_text("def f(:\n")  # does not compile: left without bytecode
    (package / "tests" / "test_pkg.py").write_text("def test(): pass\n")
    return root


def _pycs(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*.pyc"))}


def _ctx() -> types.SimpleNamespace:
    return types.SimpleNamespace(log=lambda message: None)


def test_worker_and_process_write_the_same_pyc_files_for_the_image_paths(tmp_path, monkeypatch):
    by_worker, by_process = _tree(tmp_path / "a"), _tree(tmp_path / "b")
    bytecode.compile_tree(_ctx(), by_worker, PYTHON)
    assert bytecode._idle, "a small tree goes to a worker"
    monkeypatch.setattr(bytecode, "_BIG_TREE", 0)  # every tree is big: a compileall process
    bytecode.compile_tree(_ctx(), by_process, PYTHON)
    assert _pycs(by_worker) == _pycs(by_process)
    names = sorted(_pycs(by_worker))
    assert names == [f"{SITE}/pkg/__pycache__/__init__.{sys.implementation.cache_tag}.pyc"]
    code = marshal.loads(_pycs(by_worker)[names[0]][16:])
    assert code.co_filename == f"/{SITE}/pkg/__init__.py"


def test_a_worker_that_died_is_replaced(tmp_path):
    bytecode.compile_tree(_ctx(), _tree(tmp_path / "warm"), PYTHON)
    for worker in bytecode._idle:
        worker.kill()
        worker.wait()
    again = _tree(tmp_path / "again")
    bytecode.compile_tree(_ctx(), again, PYTHON)
    assert len(_pycs(again)) == 1
    assert all(worker.poll() is None for worker in bytecode._idle)
