"""Rule-owned state (`graphbuild.cache.state`, `ExecContext.state_dir`): names stay inside the
state directory, entries record their blobs, gc's sweep takes exactly the entries whose blobs
are gone, and the push-location file takes concurrent writers from several processes."""

from __future__ import annotations

import json
import multiprocessing
from pathlib import Path
from types import MappingProxyType

import pytest

from graphbuild.cache.state import BLOBS_FILE, StateError, state_dir, state_entry, sweep
from graphbuild.execution.context import ExecContext
from graphbuild.labels import Label
from graphbuild.nodes import ActionFailed, Executor, Node

A, B, C = "a" * 64, "b" * 64, "c" * 64


@pytest.mark.parametrize("name", ["", ".", "..", "../up", "a/b", "/abs", "x\0y", "-flag", "a" * 200])
def test_a_state_name_is_one_plain_path_component(tmp_path, name):
    with pytest.raises(StateError):
        state_dir(tmp_path, name)
    with pytest.raises(StateError):
        state_entry(tmp_path, "ok", name, [])
    assert [p for p in tmp_path.rglob("*") if p.name != "ok"] == []


def test_an_entry_records_its_blobs_and_refuses_what_is_not_a_sha256(tmp_path):
    entry = state_entry(tmp_path, "images", "one", [f"sha256:{B}", A, B])
    assert entry == tmp_path / "images" / "one"
    assert (entry / BLOBS_FILE).read_text().split() == [A, B]
    with pytest.raises(StateError):
        state_entry(tmp_path, "images", "two", ["../../etc/passwd"])


def test_the_sweep_takes_the_entries_whose_blobs_are_gone_and_nothing_else(tmp_path):
    whole = state_entry(tmp_path, "images", "whole", [A, B])
    broken = state_entry(tmp_path, "images", "broken", [A, C])
    plain = state_dir(tmp_path, "push") / "locations.json"  # refers to no blob: never swept
    plain.write_text("{}")
    unrecorded = state_dir(tmp_path, "push") / "notes"
    unrecorded.mkdir()
    damaged = state_entry(tmp_path, "images", "damaged", [A])
    (damaged / BLOBS_FILE).write_text("not a digest\n")
    removed = sweep(tmp_path, lambda sha: sha in (A, B))
    assert sorted(removed) == sorted([broken, damaged])
    assert whole.is_dir() and plain.is_file() and unrecorded.is_dir()
    assert not broken.exists() and not damaged.exists()
    assert sweep(tmp_path / "images" / "missing", lambda sha: True) == []


def test_the_sweep_deletes_what_older_versions_kept_beside_the_blob_store(tmp_path):
    """`<cache>/images/<digest>/` (layouts linking the blob store) and `push-locations.json`."""
    cache = tmp_path / "cache"
    old_layout = cache / "images" / A
    old_layout.mkdir(parents=True)
    (old_layout / "index.json").write_text("{}")
    (old_layout / "oci-layout").write_text("{}")
    (cache / "push-locations.json").write_text("{}")
    kept = state_entry(cache / "state", "oci-images", B, [B])
    removed = sweep(cache / "state", lambda sha: True)
    assert sorted(removed) == [cache / "images", cache / "push-locations.json"]
    assert sorted(p.name for p in cache.iterdir()) == ["state"] and kept.is_dir()
    (cache / "images" / "holiday").mkdir(parents=True)  # not graphbuild's: left alone
    assert sweep(cache / "state", lambda sha: True) == []
    assert (cache / "images" / "holiday").is_dir()


def _context(tmp_path: Path, state_root: Path | None, work: str = "work") -> ExecContext:
    node = Node(id="//p:t#x", label=Label.parse("//p:t"), kind="k", rule="r", rule_version=1,
                executor=Executor(name="x", version=1, fn=lambda ctx: None), inputs=MappingProxyType({}),
                outputs=(), deps=())
    return ExecContext(node, tmp_path, tmp_path / work, lambda ref: tmp_path, state_root=state_root)


def test_exec_context_state_dir_is_inside_the_state_root(tmp_path):
    ctx = _context(tmp_path, tmp_path / "state")
    assert ctx.state_dir("oci-push") == tmp_path / "state" / "oci-push"
    assert ctx.state_entry("oci-images", "x", blobs=[A]) == tmp_path / "state" / "oci-images" / "x"
    with pytest.raises(StateError):
        ctx.state_dir("../blobs")
    with pytest.raises(ActionFailed):
        _context(tmp_path / "other", None).state_dir("oci-push")


def _add_locations(state: str, worker: int) -> None:
    import time

    from graphbuild.rules.oci import push

    write = push.write_atomic

    def slow_write(path: Path, data: bytes) -> None:  # widen the read-modify-write window
        time.sleep(0.005)
        write(path, data)

    push.write_atomic = slow_write
    _LOCATIONS = push._LOCATIONS
    ctx = _context(Path(state).parent, Path(state), work=f"work{worker}")
    for round_ in range(15):
        _LOCATIONS.add(ctx, "registry.test", f"repo{worker}", [f"sha256:{worker:02d}{round_:02d}"])


def test_push_locations_written_by_several_processes_at_once_all_land(tmp_path):
    """A read-modify-write of one file by four processes: without the file lock, one's update
    is lost when another replaces the file with what it read before."""
    state = tmp_path / "state"
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_add_locations, args=(str(state), n)) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    found = json.loads((state / "oci-push" / "locations.json").read_text())["registry.test"]
    assert found == {f"sha256:{n:02d}{r:02d}": f"repo{n}" for n in range(4) for r in range(15)}
