"""`graphbuild why` drawn (`--graph FILE.svg|.html`) and side by side (`--vs TARGET`)."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest

SVG = "{http://www.w3.org/2000/svg}"
RAN, CACHED = "#7bc96f", "#d9d9d9"

# top -> la, lb;  la and lb read a.txt and b.txt
BUILD = """
genrule(name = "la", srcs = ["a.txt"], outs = ["la.txt"], cmd = "cat $SRCS > $OUT")
genrule(name = "lb", srcs = ["b.txt"], outs = ["lb.txt"], cmd = "cat $SRCS > $OUT")
genrule(name = "top", srcs = [":la", ":lb"], outs = ["top.txt"], cmd = "cat $SRCS > $OUT")
"""
NODES = {"//pkg:la#gen", "//pkg:lb#gen", "//pkg:top#gen"}

needs_dot = pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")


@pytest.fixture
def changed(ws):
    """The workspace after a build, a change of pkg/b.txt and a second build."""
    ws.write("pkg/BUILD.envs", BUILD)
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/b.txt", "b\n")
    assert ws.gb("build", "//pkg:top").exit_code == 0
    ws.write("pkg/b.txt", "b changed\n")
    second = ws.gb("build", "//pkg:top", "--json")
    assert second.ran() == {"//pkg:lb#gen", "//pkg:top#gen"}
    return ws


def svg_nodes(root: ET.Element) -> dict[str, ET.Element]:
    """node id -> its <g class="node"> (Graphviz titles each node group with the node's name)."""
    return {g.findtext(f"{SVG}title"): g for g in root.iter(f"{SVG}g") if g.get("class") == "node"}


def fills(group: ET.Element) -> set[str]:
    return {el.get("fill") for el in group.iter() if el.tag in (f"{SVG}path", f"{SVG}polygon", f"{SVG}ellipse")}


def text_of(group: ET.Element) -> str:
    return "\n".join(t.text or "" for t in group.iter(f"{SVG}text"))


@needs_dot
def test_why_graph_svg_colours_nodes_by_status_and_names_the_change(changed):
    result = changed.gb("why", "//pkg:top", "--graph", "out.svg")  # relative to the workspace (-C)
    assert result.exit_code == 0, result.stderr
    assert "//pkg:lb#gen: ran" in result.stdout  # the text report as well
    path = changed.root / "out.svg"
    root = ET.parse(path).getroot()
    assert root.tag == f"{SVG}svg"
    nodes = svg_nodes(root)
    assert set(nodes) == NODES
    assert fills(nodes["//pkg:la#gen"]) == {CACHED}
    assert fills(nodes["//pkg:lb#gen"]) == {RAN}
    assert fills(nodes["//pkg:top#gen"]) == {RAN}
    assert "[cached]" in text_of(nodes["//pkg:la#gen"])
    assert "[ran]" in text_of(nodes["//pkg:lb#gen"])
    assert "pkg/b.txt" in text_of(nodes["//pkg:lb#gen"])  # the changed input, on the node that read it
    assert "pkg/b.txt" not in text_of(nodes["//pkg:la#gen"])
    edges = {g.findtext(f"{SVG}title") for g in root.iter(f"{SVG}g") if g.get("class") == "edge"}
    # from a cause to what it caused: what a node read points at the node
    assert edges == {"//pkg:la#gen->//pkg:top#gen", "//pkg:lb#gen->//pkg:top#gen"}

    as_json = changed.gb("why", "//pkg:top", "--graph", str(changed.root / "again.svg"), "--json")
    assert as_json.exit_code == 0
    assert {e["id"] for e in as_json.json["nodes"]} == NODES
    assert set(svg_nodes(ET.parse(changed.root / "again.svg").getroot())) == NODES


class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.rows: list[list[str]] = []
        self._cell: list[str] | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th"):
            self._cell = []

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append("".join(self._cell))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


@needs_dot
def test_why_graph_html_is_a_page_with_the_svg_and_a_row_per_change(changed):
    dest = changed.root / "report" / "why.html"
    dest.parent.mkdir()
    result = changed.gb("why", "//pkg:top", "--graph", str(dest))
    assert result.exit_code == 0, result.stderr
    text = dest.read_text()
    assert text.lstrip().lower().startswith("<!doctype html>")
    assert "<svg" in text
    page = _Page()
    page.feed(text)
    assert "svg" in page.tags and "table" in page.tags
    assert page.rows[0] == ["node", "input", "old", "new", "where"]
    rows = {row[0]: row for row in page.rows[1:]}
    assert set(rows) == {"//pkg:lb#gen", "//pkg:top#gen"}  # la was cached: nothing changed for it
    lb = rows["//pkg:lb#gen"]
    assert "pkg/b.txt" in lb[1] and "pkg/b.txt" in lb[2] and "pkg/b.txt" in lb[3] and lb[2] != lb[3]

    # a run where nothing ran: the page says so instead of an empty table
    assert changed.gb("build", "//pkg:top").exit_code == 0
    assert changed.gb("why", "//pkg:top", "--graph", str(dest)).exit_code == 0
    assert "No node ran" in dest.read_text()


def test_why_graph_refuses_other_formats(changed):
    result = changed.gb("why", "//pkg:top", "--graph", "out.png")
    assert result.exit_code == 2
    assert ".svg or .html" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (changed.root / "out.png").exists() and not Path("out.png").exists()


# -- why --vs: two targets of one rule, one attribute apart ----------------------------------

VS = """
genrule(name = "core", srcs = ["core.txt"], outs = ["core.out"], cmd = "cat $SRCS > $OUT")
"""
APP = 'genrule(name = "app", srcs = ["//pkg:core"], outs = ["app.txt"], cmd = "{cmd}")\n'


@pytest.fixture
def two(ws):
    ws.write("pkg/BUILD.envs", VS)
    ws.write("pkg/core.txt", "b\na\n")
    ws.write("one/BUILD.envs", APP.format(cmd="sort $SRCS > $OUT"))
    ws.write("two/BUILD.envs", APP.format(cmd="sort -r $SRCS > $OUT"))
    assert ws.gb("build", "//one:app", "//two:app").exit_code == 0
    return ws


def test_why_vs_names_the_nodes_that_are_the_same_and_those_that_differ(two):
    result = two.gb("why", "//one:app", "--vs", "//two:app")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "//one:app vs //two:app"
    states = {line.split()[0]: line.split()[1] for line in lines[1:] if not line.startswith("      ")}
    assert states == {"//pkg:core#gen": "same", "gen": "differs"}
    assert "      cmd: sort $SRCS > $OUT | sort -r $SRCS > $OUT" in lines
    # the attribute, and the package the command sees as $PACKAGE; nothing else
    assert [line for line in lines if line.startswith("      ")] == [
        "      cmd: sort $SRCS > $OUT | sort -r $SRCS > $OUT", "      package: one | two"]

    as_json = two.gb("why", "//one:app", "--vs", "//two:app", "--json")
    assert as_json.exit_code == 0
    doc = as_json.json
    assert (doc["target"], doc["vs"]) == ("//one:app", "//two:app")
    rows = {row["name"]: row for row in doc["nodes"]}
    assert {name: row["state"] for name, row in rows.items()} == {"//pkg:core#gen": "same", "gen": "differs"}
    assert rows["gen"]["changes"] == [{"input": "cmd", "old": "sort $SRCS > $OUT", "new": "sort -r $SRCS > $OUT"},
                                      {"input": "package", "old": "one", "new": "two"}]
    assert (rows["gen"]["left"]["id"], rows["gen"]["right"]["id"]) == ("//one:app#gen", "//two:app#gen")
    assert rows["gen"]["left"]["key"] != rows["gen"]["right"]["key"]
    assert rows["//pkg:core#gen"]["left"]["key"] == rows["//pkg:core#gen"]["right"]["key"]
    assert "changes" not in rows["//pkg:core#gen"]


def test_why_vs_shows_nodes_only_one_side_has(two):
    two.write("three/BUILD.envs", """
        genrule(name = "extra", outs = ["e.txt"], cmd = "echo e > $OUT")
        genrule(name = "app", srcs = ["//pkg:core", ":extra"], outs = ["app.txt"], cmd = "sort $SRCS > $OUT")
    """)
    assert two.gb("build", "//three:app").exit_code == 0
    result = two.gb("why", "//one:app", "--vs", "//three:app", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {row["name"]: row for row in result.json["nodes"]}
    assert rows["//three:extra#gen"]["state"] == "only in //three:app"
    assert rows["//pkg:core#gen"]["state"] == "same"
    assert rows["gen"]["state"] == "differs"
    inputs = {change["input"] for change in rows["gen"]["changes"]}
    assert "cmd" not in inputs and "src_names" in inputs
    text = two.gb("why", "//one:app", "--vs", "//three:app")
    assert "only in //three:app" in text.stdout
    assert "None" not in text.stdout  # an input one side lacks is shown as absent
    assert "(absent)" in text.stdout


def test_why_vs_needs_a_recorded_run_of_both_targets(two):
    two.write("four/BUILD.envs", APP.format(cmd="cat $SRCS > $OUT"))
    result = two.gb("why", "//one:app", "--vs", "//four:app")
    assert result.exit_code == 2
    assert "//four:app has no recorded run" in result.stderr
    assert "graphbuild build //four:app" in result.stderr
    unknown = two.gb("why", "//one:app", "--vs", "//four:nope")
    assert unknown.exit_code == 2
    assert "nope" in unknown.stderr
