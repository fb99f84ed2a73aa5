"""graphbuild.graph: the order analysis runs targets in, and the cycle it reports, against
networkx (what it replaced) on random graphs."""

from __future__ import annotations

import networkx as nx
from hypothesis import given, settings
from hypothesis import strategies as st

from graphbuild.graph import DiGraph, GraphCycle

_edges = st.lists(st.tuples(st.integers(0, 12), st.integers(0, 12)), max_size=40)


def _both(nodes: int, edges: list[tuple[int, int]]) -> tuple[DiGraph, nx.DiGraph]:
    ours, theirs = DiGraph(), nx.DiGraph()
    for n in range(nodes):
        ours.add_node(n)
        theirs.add_node(n)
    for a, b in edges:
        ours.add_edge(a, b)
        theirs.add_edge(a, b)
    return ours, theirs


@settings(max_examples=300, deadline=None)
@given(edges=_edges)
def test_the_order_and_the_cycles_are_networkx_s(edges):
    ours, theirs = _both(13, edges)
    if nx.is_directed_acyclic_graph(theirs):
        assert ours.topological_order() == list(nx.topological_sort(theirs))
        assert ours.find_cycle() is None
        for n in range(13):
            assert ours.descendants(n) == nx.descendants(theirs, n)
        return
    cycle = ours.find_cycle()
    assert cycle, "networkx finds a cycle"
    assert all(theirs.has_edge(a, b) for a, b in cycle)
    assert all(cycle[i][1] == cycle[(i + 1) % len(cycle)][0] for i in range(len(cycle)))
    assert len({a for a, _ in cycle}) == len(cycle)  # a simple cycle
    try:
        ours.topological_order()
    except GraphCycle as err:
        assert err.edges == cycle
    else:
        raise AssertionError("an order of a graph with a cycle")


@settings(max_examples=200, deadline=None)
@given(edges=_edges, among=st.sets(st.integers(0, 12)))
def test_an_order_among_some_nodes_keeps_their_edges(edges, among):
    ours, theirs = _both(13, [(a, b) for a, b in edges if a < b])  # acyclic
    order = ours.topological_order(among)
    assert sorted(order) == sorted(among)
    for a, b in theirs.subgraph(among).edges:
        assert order.index(a) < order.index(b)


def test_edges_keep_their_attributes_and_neighbours_their_insertion_order():
    graph = DiGraph()
    graph.add_node("a", kind="environment")
    graph.add_edge("a", "c", attr="layers", location="envs/BUILD.envs:3")
    graph.add_edge("a", "b", attr="base")
    graph.add_edge("b", "c")
    assert graph.nodes["a"] == {"kind": "environment"} and "c" in graph and "z" not in graph
    assert graph.edges["a", "c"] == {"attr": "layers", "location": "envs/BUILD.envs:3"}
    assert list(graph.successors("a")) == ["c", "b"] and list(graph.predecessors("c")) == ["a", "b"]
    assert graph.topological_order() == ["a", "b", "c"]
    graph.add_edge("c", "a")
    assert graph.find_cycle() in ([("a", "b"), ("b", "c"), ("c", "a")], [("a", "c"), ("c", "a")])
