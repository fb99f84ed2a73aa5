"""Execution as a user sees it: what reruns after a change, early cutoff, rules from rule files,
the test phase, failures and timeouts, and resuming a build that was killed."""

from __future__ import annotations

import re
import signal
import time

# A diamond over two leaves:  top -> mid1 -> la;  top -> mid2 -> la, lb;  side -> lb.
DIAMOND = """
    genrule(name = "la", srcs = ["a.txt"], outs = ["la.txt"], cmd = "cat $SRCS > $OUT")
    genrule(name = "lb", srcs = ["b.txt"], outs = ["lb.txt"], cmd = "cat $SRCS > $OUT")
    genrule(name = "mid1", srcs = [":la"], outs = ["m1.txt"], cmd = "cat $SRCS > $OUT")
    genrule(name = "mid2", srcs = [":la", ":lb"], outs = ["m2.txt"], cmd = "cat $SRCS > $OUT")
    genrule(name = "side", srcs = [":lb"], outs = ["side.txt"], cmd = "cat $SRCS > $OUT")
    genrule(
        name = "top",
        srcs = [":mid1", ":mid2", ":side"],
        outs = ["top.txt"],
        cmd = "cat $SRCS > $OUT",
    )
"""
DIAMOND_NODES = {f"//pkg:{n}#gen" for n in ("la", "lb", "mid1", "mid2", "side", "top")}
SUMMARY_RE = re.compile(r"^(\d+) nodes: (\d+) ran, (\d+) cached, (\d+) failed in \d+(\.\d+)? s$")


def _diamond(ws):
    ws.write("pkg/a.txt", "a\n")
    ws.write("pkg/b.txt", "b\n")
    ws.write("pkg/BUILD.envs", DIAMOND)
    first = ws.gb("build", "//pkg:top", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.ran() == DIAMOND_NODES
    return first


def test_noop_build_runs_nothing_and_summary_line_counts(ws):
    _diamond(ws)
    again = ws.gb("build", "//pkg:top", "--json")
    assert again.exit_code == 0
    assert set(again.statuses().values()) == {"cached"}
    assert again.json["summary"]["ran"] == 0
    assert again.json["summary"]["cached"] == len(DIAMOND_NODES)

    text = ws.gb("build", "//pkg:top")
    assert text.exit_code == 0
    assert text.stdout == ""
    summary = text.stderr.strip().splitlines()[-1]
    match = SUMMARY_RE.match(summary)
    assert match, summary
    assert match.group(1, 2, 3, 4) == ("6", "0", "6", "0")
    assert " running " not in text.stderr

    ws.write("pkg/a.txt", "A\n")
    changed = ws.gb("build", "//pkg:top")
    match = SUMMARY_RE.match(changed.stderr.strip().splitlines()[-1])
    assert match, changed.stderr
    assert match.group(1, 2, 3, 4) == ("6", "4", "2", "0")


def test_changing_a_leaf_reruns_exactly_it_and_its_dependents(ws):
    _diamond(ws)
    ws.write("pkg/b.txt", "b changed\n")
    second = ws.gb("build", "//pkg:top", "--json")
    assert second.exit_code == 0, second.stderr
    assert second.ran() == {"//pkg:lb#gen", "//pkg:mid2#gen", "//pkg:side#gen", "//pkg:top#gen"}
    assert {n for n, s in second.statuses().items() if s == "cached"} == {"//pkg:la#gen", "//pkg:mid1#gen"}
    assert (ws.root / "graphbuild-out/pkg/top.txt").read_text() == "a\na\nb changed\nb changed\n"

    ws.write("pkg/a.txt", "a changed\n")
    third = ws.gb("build", "//pkg:top", "--json")
    assert third.ran() == {"//pkg:la#gen", "//pkg:mid1#gen", "//pkg:mid2#gen", "//pkg:top#gen"}


def test_why_names_the_changed_file_with_old_and_new_digests(ws):
    first = _diamond(ws)
    old_sha = first.json["nodes"][[n["id"] for n in first.json["nodes"]].index("//pkg:lb#gen")]["outputs"]["lb.txt"]
    ws.write("pkg/b.txt", "b changed\n")
    second = ws.gb("build", "//pkg:top", "--json")
    new_sha = {n["id"]: n for n in second.json["nodes"]}["//pkg:lb#gen"]["outputs"]["lb.txt"]
    assert old_sha != new_sha  # lb copies b.txt, so its output digest is b.txt's digest

    why = ws.gb("why", "//pkg:top", "--json")
    assert why.exit_code == 0, why.stderr
    report = {entry["id"]: entry for entry in why.json["nodes"]}
    assert set(report) == DIAMOND_NODES
    for nid in ("//pkg:la#gen", "//pkg:mid1#gen"):
        assert report[nid]["status"] == "cached"
        assert report[nid]["reason"].startswith("cached")
    leaf = report["//pkg:lb#gen"]
    assert leaf["status"] == "ran"
    [change] = leaf["changes"]
    assert "pkg/b.txt" in change["input"]
    assert "pkg/b.txt" in change["old"] and old_sha[:16] in change["old"]
    assert "pkg/b.txt" in change["new"] and new_sha[:16] in change["new"]
    for nid in ("//pkg:mid2#gen", "//pkg:side#gen"):
        assert report[nid]["status"] == "ran"
        [change] = report[nid]["changes"]
        assert old_sha[:16] in change["old"] and new_sha[:16] in change["new"]
    assert report["//pkg:top#gen"]["status"] == "ran"
    assert report["//pkg:top#gen"]["changes"]

    text = ws.gb("why", "//pkg:top")
    assert text.exit_code == 0
    lines = text.stdout.splitlines()
    assert "//pkg:la#gen: cached - cached (local cache)" in lines
    assert "//pkg:lb#gen: ran" in lines
    detail = lines[lines.index("//pkg:lb#gen: ran") + 1]
    assert "pkg/b.txt" in detail and old_sha[:16] in detail and new_sha[:16] in detail
    assert detail.index(old_sha[:16]) < detail.index("->") < detail.index(new_sha[:16])


def test_why_shows_the_build_file_line_of_a_changed_attribute(ws):
    _diamond(ws)
    # `cmd` of //pkg:top is on line 10 of BUILD.envs (line 6 of the target, written over several lines)
    ws.write("pkg/BUILD.envs", DIAMOND.replace('cmd = "cat $SRCS > $OUT",', 'cmd = "cat $SRCS | sort > $OUT",'))
    second = ws.gb("build", "//pkg:top", "--json")
    assert second.ran() == {"//pkg:top#gen"}
    why = ws.gb("why", "//pkg:top", "--json")
    top = {entry["id"]: entry for entry in why.json["nodes"]}["//pkg:top#gen"]
    [change] = top["changes"]
    assert change["input"] == "cmd"
    assert change["old"] == "cat $SRCS > $OUT"
    assert change["new"] == "cat $SRCS | sort > $OUT"
    assert change["location"] == "pkg/BUILD.envs:10"
    text = ws.gb("why", "//pkg:top", "--node", "//pkg:top#gen")
    assert text.stdout.splitlines() == [
        "//pkg:top#gen: ran",
        "    cmd: cat $SRCS > $OUT -> cat $SRCS | sort > $OUT    (pkg/BUILD.envs:10)",
    ]


def test_early_cutoff_when_a_changed_command_writes_the_same_bytes(ws):
    ws.write("pkg/BUILD.envs", """
        genrule(name = "hi", outs = ["hi.txt"], cmd = "echo hi > $OUT")
        genrule(name = "up", srcs = [":hi"], outs = ["up.txt"], cmd = "tr a-z A-Z < $SRCS > $OUT")
        genrule(name = "top", srcs = [":up"], outs = ["top.txt"], cmd = "cat $SRCS $SRCS > $OUT")
    """)
    first = ws.gb("build", "//pkg:top", "--json")
    assert first.ran() == {"//pkg:hi#gen", "//pkg:up#gen", "//pkg:top#gen"}
    ws.write("pkg/BUILD.envs", (ws.root / "pkg/BUILD.envs").read_text().replace("echo hi > $OUT", "echo hi  > $OUT"))
    second = ws.gb("build", "//pkg:top", "--json")
    assert second.exit_code == 0, second.stderr
    assert second.statuses() == {"//pkg:hi#gen": "ran", "//pkg:up#gen": "cached", "//pkg:top#gen": "cached"}
    assert (ws.root / "graphbuild-out/pkg/top.txt").read_text() == "HI\nHI\n"


RULE_FILE = """
from graphbuild.api import Attrs, DefaultInfo, Field, rule
from graphbuild.rules import run_command


class PipelineAttrs(Attrs):
    word: str = Field(default="hello", description="what the first node writes")


@rule(attrs=PipelineAttrs, version=VERSION)
def pipeline(ctx, attrs):
    first = ctx.action(
        "first",
        executor=run_command,
        inputs={"cmd": "echo " + attrs.word + " > $OUT", "srcs": [], "src_names": []},
        outputs=["first.txt"],
    )
    second = ctx.action(
        "second",
        executor=run_command,
        inputs={"cmd": "tr a-z A-Z < $SRCS > $OUT", "srcs": [first.output("first.txt")],
                "src_names": ["first.txt"]},
        outputs=["second.txt"],
    )
    stamp = ctx.action(
        "stamp",
        executor=run_command,
        inputs={"cmd": "echo stamped > $OUT", "srcs": [], "src_names": []},
        outputs=["stamp.txt"],
        after=[second],
    )
    return DefaultInfo(files=(second.output("second.txt"), stamp.output("stamp.txt")))
"""
PIPELINE_PLUGIN = '[plugins]\nrules = ["tools/defs.py"]\n'
PIPELINE_BUILD = """
    # pipeline is the workspace plugin's rule (graphbuild.toml)

    pipeline(name = "p", word = "hello")
    genrule(name = "use", srcs = [":p"], outs = ["use.txt"], cmd = "cat $SRCS > $OUT")
"""
PIPELINE_NODES = {"//pkg:p#first", "//pkg:p#second", "//pkg:p#stamp"}


def test_rule_from_a_plugin_declares_several_nodes(ws):
    ws.write("graphbuild.toml", PIPELINE_PLUGIN)
    ws.write("tools/defs.py", RULE_FILE.replace("VERSION", "1"))
    ws.write("pkg/BUILD.envs", PIPELINE_BUILD)
    result = ws.gb("build", "//pkg:use", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.ran() == {*PIPELINE_NODES, "//pkg:use#gen"}
    kinds = {n["id"]: n["kind"] for n in result.json["nodes"]}
    assert kinds["//pkg:p#first"] == "pipeline.first"
    order = [n["id"] for n in result.json["nodes"]]
    assert order.index("//pkg:p#first") < order.index("//pkg:p#second") < order.index("//pkg:p#stamp")
    assert (ws.root / "graphbuild-out/pkg/use.txt").read_text() == "HELLO\nstamped\n"

    direct = ws.gb("build", "//pkg:p", "--json")
    assert set(direct.statuses()) == PIPELINE_NODES
    assert set(direct.statuses().values()) == {"cached"}
    assert (ws.root / "graphbuild-out/pkg/second.txt").read_text() == "HELLO\n"
    assert (ws.root / "graphbuild-out/pkg/stamp.txt").read_text() == "stamped\n"

    graph = ws.gb("graph", "//pkg:use", "--format", "json")
    deps = {n["id"]: set(n["deps"]) for n in graph.json["nodes"]}
    assert deps["//pkg:p#second"] == {"//pkg:p#first"}
    assert deps["//pkg:p#stamp"] == {"//pkg:p#second"}
    assert deps["//pkg:use#gen"] == {"//pkg:p#second", "//pkg:p#stamp"}

    ws.write("pkg/BUILD.envs", PIPELINE_BUILD.replace('word = "hello"', 'word = "world"'))
    changed = ws.gb("build", "//pkg:use", "--json")
    # `stamp` runs after `second`, whose output changed, so it reruns too
    assert changed.ran() == {*PIPELINE_NODES, "//pkg:use#gen"}
    assert (ws.root / "graphbuild-out/pkg/use.txt").read_text() == "WORLD\nstamped\n"


def test_bumping_a_rule_version_reruns_its_nodes_but_not_unchanged_dependents(ws):
    ws.write("graphbuild.toml", PIPELINE_PLUGIN)
    ws.write("tools/defs.py", RULE_FILE.replace("VERSION", "1"))
    ws.write("pkg/BUILD.envs", PIPELINE_BUILD)
    assert ws.gb("build", "//pkg:use", "--json").exit_code == 0
    ws.write("tools/defs.py", RULE_FILE.replace("VERSION", "2"))
    bumped = ws.gb("build", "//pkg:use", "--json")
    assert bumped.exit_code == 0, bumped.stderr
    assert bumped.ran() == PIPELINE_NODES
    assert bumped.statuses()["//pkg:use#gen"] == "cached"
    why = ws.gb("why", "//pkg:use", "--json")
    first = {entry["id"]: entry for entry in why.json["nodes"]}["//pkg:p#first"]
    assert [(c["input"], c["old"], c["new"]) for c in first["changes"]] == [("rule", "pipeline@1", "pipeline@2")]


# -- the test phase ------------------------------------------------------------------------


def test_build_skips_test_nodes_and_test_and_run_run_them(ws):
    ws.write("pkg/BUILD.envs", """
        genrule(name = "gen", outs = ["out.txt"], cmd = "echo ok > $OUT")
        command_test(name = "check", srcs = [":gen"], cmd = "grep -q ok $SRCS")
    """)
    built = ws.gb("build", "//pkg/...", "--json")
    assert built.exit_code == 0, built.stderr
    assert built.statuses() == {"//pkg:gen#gen": "ran"}
    tested = ws.gb("test", "//pkg:check", "--json")
    assert tested.exit_code == 0, tested.stderr
    assert tested.statuses() == {"//pkg:gen#gen": "cached", "//pkg:check#test": "ran"}
    assert {n["id"]: n["phase"] for n in tested.json["nodes"]}["//pkg:check#test"] == "test"
    ran = ws.gb("run", "//pkg/...", "--json")
    assert ran.exit_code == 0
    assert ran.statuses() == {"//pkg:gen#gen": "cached", "//pkg:check#test": "cached"}
    assert "//pkg:check#test" not in ws.gb("build", "//pkg:check", "--json").statuses()


def test_failing_test_exits_1_and_its_cached_failure_is_reported_without_rerunning(ws):
    ws.write("pkg/BUILD.envs", """
        command_test(name = "good", cmd = "true")
        command_test(name = "bad", cmd = "echo 'expected 3 got 4'; exit 3")
    """)
    first = ws.gb("test", "//pkg:all", "--json")
    assert first.exit_code == 1
    assert first.json["exit_code"] == 1
    assert first.statuses() == {"//pkg:good#test": "ran", "//pkg:bad#test": "failed"}
    bad = {n["id"]: n for n in first.json["nodes"]}["//pkg:bad#test"]
    assert "exited with 3" in bad["message"]
    assert "expected 3 got 4" in bad["log_tail"]
    assert "//pkg:bad#test" in first.stderr

    again = ws.gb("test", "//pkg:all")
    assert again.exit_code == 1
    assert "//pkg:bad#test" in again.stderr
    assert "expected 3 got 4" in again.stderr
    assert "running  //pkg:bad#test" not in again.stderr  # the cached failure was not run again
    assert "cached failure" in again.stderr
    match = SUMMARY_RE.match(again.stderr.strip().splitlines()[-1])
    assert match and match.group(1, 2, 3, 4) == ("2", "0", "1", "1"), again.stderr

    third = ws.gb("test", "//pkg:all", "--json")
    assert third.exit_code == 1
    assert third.statuses() == {"//pkg:good#test": "cached", "//pkg:bad#test": "failed"}
    assert "//pkg:bad#test" in third.stderr


def test_dependents_of_a_failed_build_node_are_skipped(ws):
    ws.write("pkg/BUILD.envs", """
        genrule(name = "ok", outs = ["ok.txt"], cmd = "echo ok > $OUT")
        genrule(name = "broken", outs = ["b.txt"], cmd = "echo boom >&2; exit 1")
        genrule(name = "after", srcs = [":broken", ":ok"], outs = ["after.txt"], cmd = "cat $SRCS > $OUT")
        genrule(name = "last", srcs = [":after"], outs = ["last.txt"], cmd = "cat $SRCS > $OUT")
        command_test(name = "t", srcs = [":last"], cmd = "true")
    """)
    result = ws.gb("test", "//pkg:t", "--json")
    assert result.exit_code == 1
    assert result.statuses() == {
        "//pkg:ok#gen": "ran",
        "//pkg:broken#gen": "failed",
        "//pkg:after#gen": "skipped",
        "//pkg:last#gen": "skipped",
        "//pkg:t#test": "skipped",
    }
    assert result.json["summary"]["skipped"] == 3
    assert "boom" in {n["id"]: n for n in result.json["nodes"]}["//pkg:broken#gen"]["log_tail"]
    text = ws.gb("build", "//pkg:last")
    assert text.exit_code == 1
    assert "//pkg:broken#gen" in text.stderr
    # a build failure is not deterministic: it runs again
    assert "running  //pkg:broken#gen" in text.stderr
    assert re.search(r"^4 nodes: 0 ran, 1 cached, 1 failed, 2 skipped in ", text.stderr, re.M), text.stderr


def test_a_timeout_is_not_cached(ws):
    ws.write("pkg/BUILD.envs", """
        command_test(name = "slow", cmd = "echo started; sleep 5", timeout = 0.5)
    """)
    started = time.monotonic()
    first = ws.gb("test", "//pkg:slow", "--json")
    assert time.monotonic() - started < 4
    assert first.exit_code == 1
    assert first.statuses() == {"//pkg:slow#test": "failed"}
    node = first.json["nodes"][0]
    assert "timed out" in node["message"]
    assert node["log_tail"] == "started"
    second = ws.gb("test", "//pkg:slow")
    assert second.exit_code == 1
    assert "running  //pkg:slow#test" in second.stderr
    assert "timed out" in second.stderr
    assert "cached failure" not in second.stderr


# -- a killed build resumes ------------------------------------------------------------------


def test_a_build_killed_with_sigkill_resumes_from_the_finished_nodes(ws):
    leaves = [f"n{i}" for i in range(8)]
    ws.write("pkg/BUILD.envs", "\n".join(
        [f'genrule(name = "{n}", outs = ["{n}.txt"], cmd = "sleep 0.4; echo {n} > $OUT")' for n in leaves]
        + ['genrule(name = "all", srcs = [' + ", ".join(f'":{n}"' for n in leaves)
           + '], outs = ["all.txt"], cmd = "cat $SRCS > $OUT")']
    ))
    proc = ws.gb_process("build", "//...", "-j", "2")
    lines: list[str] = []
    try:
        while sum(" ran " in line for line in lines) < 2:
            line = proc.stderr.readline()
            if not line:
                break
            lines.append(line)
        proc.send_signal(signal.SIGKILL)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    lines.extend(rest.splitlines())
    finished = {line.split()[2] for line in lines if " ran " in line}
    assert len(finished) >= 2
    assert "//pkg:all#gen" not in finished

    resumed = ws.gb("build", "//...", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    statuses = resumed.statuses()
    assert set(statuses) == {f"//pkg:{n}#gen" for n in [*leaves, "all"]}
    cached = {nid for nid, status in statuses.items() if status == "cached"}
    assert finished <= cached  # nothing that had finished ran again
    assert set(statuses.values()) <= {"ran", "cached"}
    # at most the nodes running when the signal came can have been stored without their line printed
    assert len(cached - finished) <= 2
    assert statuses["//pkg:all#gen"] == "ran"
    assert (ws.root / "graphbuild-out/pkg/all.txt").read_text() == "".join(f"{n}\n" for n in leaves)
