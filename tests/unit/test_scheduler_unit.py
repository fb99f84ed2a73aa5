"""The scheduler over in-memory stores (the `ActionStore` and `RemoteCache` protocols): which
nodes run, which are reused and from where, what is stored. No workspace, no CLI, no Docker."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from graphbuild.cache.blobs import BlobStore
from graphbuild.cache.stores import RemoteCacheError
from graphbuild.execution.events import NodeOutcome
from graphbuild.execution.scheduler import Scheduler
from graphbuild.labels import Label
from graphbuild.nodes import ActionFailed, Executor, Node, OutputRef
from graphbuild.records import ActionResult, Status


class MemoryActions:
    """An `ActionStore` in a dict."""

    def __init__(self) -> None:
        self.results: dict[str, ActionResult] = {}
        self.manifests: dict[str, dict[str, list]] = {}
        self.used: list[str] = []

    def get(self, key: str) -> ActionResult | None:
        return self.results.get(key)

    def put(self, key: str, result: ActionResult) -> None:
        self.results[key] = result

    def delete(self, key: str) -> None:
        self.results.pop(key, None)

    def put_manifest(self, key: str, manifest: dict[str, list]) -> None:
        self.manifests[key] = manifest

    def mark_used(self, keys: Iterable[str]) -> None:
        self.used.extend(keys)


class MemoryRemote:
    """A `RemoteCache` in a dict; `broken` makes every lookup fail like an unreachable registry."""

    def __init__(self, *, writable: bool = True, broken: bool = False) -> None:
        self.entries: dict[str, ActionResult] = {}
        self.writable = writable
        self.broken = broken
        self.lookups: list[str] = []

    def lookup(self, key: str) -> ActionResult | None:
        self.lookups.append(key)
        if self.broken:
            raise RemoteCacheError("connection refused")
        return self.entries.get(key)

    def store(self, key: str, result: ActionResult, inputs: Mapping[str, list]) -> None:
        self.entries[key] = result


class Events:
    """A `Reporter` that keeps what it was told."""

    def __init__(self) -> None:
        self.started: list[tuple[int, str]] = []
        self.finished: dict[str, str] = {}
        self.warnings: list[str] = []

    def run_started(self, total: int, phase: str) -> None:
        self.started.append((total, phase))

    def node_started(self, node: Node) -> None:
        pass

    def node_finished(self, node: Node, outcome: NodeOutcome) -> None:
        self.finished[node.id] = outcome.status

    def warning(self, text: str) -> None:
        self.warnings.append(text)


class Graph:
    """Nodes whose executors write a text output computed from their inputs, counting calls."""

    def __init__(self) -> None:
        self.nodes: dict[str, Node] = {}
        self.calls: list[str] = []

    def add(self, name: str, *, text: str = "", deps: tuple[str, ...] = (), fail: str = "",
            deterministic: bool = True, summary: str = "", cacheable: bool = True,
            metadata: Mapping[str, Any] | None = None, after: tuple[str, ...] = ()) -> str:
        nid = f"//pkg:{name}#gen"

        def run(ctx: Any) -> dict[str, Any]:
            self.calls.append(nid)
            if fail:
                raise ActionFailed(fail, deterministic=deterministic)
            body = ctx.inputs["text"] + "".join(Path(p).read_text() for p in ctx.inputs["srcs"])
            ctx.out("out.txt").write_text(body)
            if summary:
                ctx.summarize(summary)
            return dict(metadata or {})

        executor = Executor(name=f"test.{name}", version=1, fn=run, cacheable=cacheable)
        self.nodes[nid] = Node(id=nid, label=Label.parse(f"//pkg:{name}"), kind="test", rule="test", rule_version=1,
                               executor=executor,
                               inputs=MappingProxyType({"text": text or name,
                                                        "srcs": [OutputRef(d, "out.txt") for d in deps],
                                                        **{f"after:{a}": a for a in after}}),
                               outputs=("out.txt",), deps=(*deps, *after))
        return nid

    @property
    def order(self) -> list[str]:
        return list(self.nodes)  # added dependencies first


@pytest.fixture
def stores(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "tmp").mkdir()
    (tmp_path / "blobs" / "sha256").mkdir(parents=True)
    return {"actions": MemoryActions(), "blobs": BlobStore(tmp_path / "blobs", tmp_path / "tmp"), "root": tmp_path}


def run(stores: dict[str, Any], graph: Graph, *, remote: MemoryRemote | None = None, phase: str = "build",
        events: Events | None = None) -> dict[str, NodeOutcome]:
    scheduler = Scheduler(actions=stores["actions"], blobs=stores["blobs"], workspace_root=stores["root"],
                          tmp_dir=stores["root"] / "tmp", reporter=events or Events(), jobs=2, remote=remote,
                          phase=phase)
    return scheduler.run(graph.nodes, graph.order)


def statuses(outcomes: Mapping[str, NodeOutcome]) -> dict[str, str]:
    return {nid: o.status for nid, o in outcomes.items()}


def diamond(graph: Graph, top_text: str = "top") -> list[str]:
    a = graph.add("a")
    b = graph.add("b", deps=(a,))
    c = graph.add("c", deps=(a,))
    d = graph.add("d", text=top_text, deps=(b, c))
    return [a, b, c, d]


def test_a_second_run_reuses_every_result_and_runs_nothing(stores):
    graph = Graph()
    ids = diamond(graph)
    events = Events()
    first = run(stores, graph, events=events, phase="test")
    assert set(statuses(first).values()) == {"ran"} and sorted(graph.calls) == sorted(ids)
    assert events.started == [(4, "test")]  # the reporter is told the real phase
    graph.calls.clear()
    second = run(stores, graph)
    assert set(statuses(second).values()) == {"cached"} and graph.calls == []
    assert {o.source for o in second.values()} == {"local"}
    assert sorted(set(stores["actions"].used)) == sorted(o.key for o in second.values())


def test_a_changed_node_reruns_and_an_unchanged_output_stops_the_rerun_there(stores):
    graph = Graph()
    a, b, c, d = diamond(graph)
    run(stores, graph)
    graph.calls.clear()
    changed = Graph()
    changed.nodes = dict(graph.nodes)
    changed.calls = graph.calls
    changed.add("d", text="other top", deps=(b, c))
    outcomes = run(stores, changed)
    assert statuses(outcomes) == {a: "cached", b: "cached", c: "cached", d: "ran"}
    assert graph.calls == [d]


def test_a_summary_is_stored_and_shown_but_is_not_what_dependents_key_on(stores):
    one, other = Graph(), Graph()
    for graph, summary in ((one, "pushed 3 MB"), (other, "pushed 0 MB")):
        up = graph.add("up", summary=summary)
        graph.add("down", after=(up,))  # keys on the result of `up`, not only on its files
    first = run(stores, one)
    assert first["//pkg:up#gen"].summary == "pushed 3 MB"
    stored = stores["actions"].get(first["//pkg:up#gen"].key)
    assert stored.summary == "pushed 3 MB" and "summary" not in stored.metadata
    stores["actions"].results.clear()
    second = run(stores, other)
    assert second["//pkg:down#gen"].key == first["//pkg:down#gen"].key


def test_a_node_run_after_another_keys_on_its_key_not_its_result(stores):
    """A test that passed again under the same key (other timings, other counts in its report)
    is the same fact: what runs after it keeps its key; another key is another fact."""
    one, other, changed = Graph(), Graph(), Graph()
    for graph, tests, text in ((one, 3, "up"), (other, 4, "up"), (changed, 3, "up again")):
        up = graph.add("up", metadata={"tests": tests}, text=text)
        graph.add("down", after=(up,))
    first = run(stores, one)
    stores["actions"].results.clear()
    second = run(stores, other)
    assert first["//pkg:up#gen"].key == second["//pkg:up#gen"].key  # the same executor and inputs
    assert first["//pkg:down#gen"].key == second["//pkg:down#gen"].key
    stores["actions"].results.clear()
    third = run(stores, changed)
    assert third["//pkg:up#gen"].key != first["//pkg:up#gen"].key
    assert third["//pkg:down#gen"].key != first["//pkg:down#gen"].key


def test_a_deterministic_failure_is_cached_and_a_flaky_one_is_not(stores):
    graph = Graph()
    bad = graph.add("bad", fail="expected 3 got 4")
    flaky = graph.add("flaky", fail="timed out", deterministic=False)
    after = graph.add("after", deps=(bad,))
    first = run(stores, graph)
    assert statuses(first) == {bad: "failed", flaky: "failed", after: "skipped"}
    stored = stores["actions"].get(first[bad].key)
    assert stored.status is Status.FAILED and stored.message == "expected 3 got 4"
    assert stores["actions"].get(first[flaky].key) is None
    graph.calls.clear()
    second = run(stores, graph)
    assert graph.calls == [flaky]
    assert second[bad].detail == "cached failure" and second[bad].message == "expected 3 got 4"


def test_a_result_from_the_shared_cache_is_used_without_running(stores):
    graph = Graph()
    ids = diamond(graph)
    remote = MemoryRemote()
    run(stores, graph, remote=remote)
    assert set(remote.entries) == {o for o in stores["actions"].results}  # every result was shared
    stores["actions"].results.clear()
    graph.calls.clear()
    outcomes = run(stores, graph, remote=remote)
    assert graph.calls == []
    assert {nid: (o.status, o.source) for nid, o in outcomes.items()} == dict.fromkeys(ids, ("cached", "remote"))


def test_an_unreachable_shared_cache_is_a_warning_and_the_nodes_run(stores):
    graph = Graph()
    ids = diamond(graph)
    events = Events()
    outcomes = run(stores, graph, remote=MemoryRemote(broken=True), events=events)
    assert statuses(outcomes) == dict.fromkeys(ids, "ran")
    assert len(events.warnings) == 4 and all("connection refused" in w for w in events.warnings)


def test_a_read_only_shared_cache_is_not_written(stores):
    graph = Graph()
    diamond(graph)
    remote = MemoryRemote(writable=False)
    run(stores, graph, remote=remote)
    assert remote.entries == {} and len(remote.lookups) == 4


def test_two_nodes_with_one_key_run_once(stores):
    graph = Graph()
    first = graph.add("x", text="same")
    second = graph.add("y", text="same")
    # the same work declared twice (two targets): one key
    graph.nodes[second] = Node(**{**{f: getattr(graph.nodes[second], f) for f in Node.__slots__},
                                  "executor": graph.nodes[first].executor})
    outcomes = run(stores, graph)
    assert outcomes[first].key == outcomes[second].key
    assert len(graph.calls) == 1
    assert sorted(o.status for o in outcomes.values()) == ["cached", "ran"]


def test_an_uncacheable_node_runs_every_time_and_is_never_stored(stores):
    graph = Graph()
    nid = graph.add("push", cacheable=False)
    run(stores, graph)
    run(stores, graph)
    assert graph.calls == [nid, nid] and stores["actions"].results == {}


def test_a_stored_output_that_went_missing_makes_its_node_run_again(stores):
    graph = Graph()
    ids = diamond(graph)
    first = run(stores, graph)
    stores["blobs"].delete(first[ids[0]].outputs["out.txt"].sha256)
    graph.calls.clear()
    second = run(stores, graph)
    assert graph.calls == [ids[0]]
    assert statuses(second) == {ids[0]: "ran", **dict.fromkeys(ids[1:], "cached")}


def test_a_corrupt_input_is_rebuilt_by_its_producer_and_the_reader_runs_on_the_repair(stores):
    graph = Graph()
    a = graph.add("a", text="base-content")
    graph.add("b", deps=(a,))
    first = run(stores, graph)
    sha = first[a].outputs["out.txt"].sha256
    path = stores["blobs"].path(sha)
    path.chmod(0o644)
    path.write_text("evil-content")  # same size: only reading the bytes can tell
    changed = Graph()
    changed.nodes, changed.calls = dict(graph.nodes), graph.calls
    b = changed.add("b", text="other", deps=(a,))  # b runs again and reads a's blob
    graph.calls.clear()
    events = Events()
    outcomes = run(stores, changed, events=events)
    assert statuses(outcomes) == {a: "ran", b: "ran"}
    assert graph.calls == [a, b]  # b met the corrupt blob while its inputs were resolved, before it ran
    assert stores["blobs"].path(sha).read_text() == "base-content"
    assert any("corrupt" in w and a in w for w in events.warnings)
    assert outcomes[b].corrupt_blob is None and outcomes[b].metadata == {}
