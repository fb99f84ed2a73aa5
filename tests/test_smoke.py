"""The smallest end-to-end path: build, reuse, change, rebuild."""

from __future__ import annotations


def test_second_build_runs_nothing_and_outputs_land(ws):
    ws.write("pkg/a.txt", "hello\n")
    ws.write("pkg/BUILD.envs", """
        genrule(name = "up", srcs = ["a.txt"], outs = ["up.txt"], cmd = "tr a-z A-Z < $SRCS > $OUT")
    """)
    first = ws.gb("build", "//pkg:up", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.statuses() == {"//pkg:up#gen": "ran"}
    assert (ws.root / "graphbuild-out/pkg/up.txt").read_text() == "HELLO\n"
    second = ws.gb("build", "//pkg:up", "--json")
    assert second.statuses() == {"//pkg:up#gen": "cached"}
