"""Verbs contributed through the registry (`graphbuild.api.Verb`): a workspace's own verb is
listed by `--help`, runs with a `VerbContext`, and reports as text or JSON."""

from __future__ import annotations

import subprocess
import sys

import pytest

VERBS_PLUGIN = '''
from graphbuild.api import Report, UsageError, Verb


def configure(parser):
    parser.add_argument("targets", nargs="+", metavar="TARGET")
    parser.add_argument("--shout", action="store_true")


def run(ctx, args):
    # heavy imports belong here, not at the top of a verbs module
    from graphbuild.api import OutputRef, executor

    labels = ctx.labels(args.targets)
    if not labels:
        raise UsageError("greet needs at least one target")
    built = ctx.build(labels)                      # the targets' outputs, through the cache
    if not built.ok:
        return Report({"greeted": []}, "", exit_code=built.exit_code)
    analysis = ctx.analyze(labels)

    @executor("greet.count", version=1)
    def count(ectx):
        text = ectx.path("src").read_text()
        ectx.out("count.txt").write_text(str(len(text.split())))

    first = next(nid for nid in analysis.target_nodes[labels[0]])
    node = ctx.action(labels[0], "greet", executor=count,
                      inputs={"src": OutputRef(first, analysis.nodes[first].outputs[0])}, outputs=["count.txt"])
    done = ctx.execute([node], analysis=analysis)
    if not done.ok:
        return Report({"failed": [f.node_id for f in done.failures]}, exit_code=done.exit_code)
    words = ctx.output_path(done.outcomes[node.id], "count.txt").read_text()
    greeting = f"hello {', '.join(map(str, labels))}: {words} words"
    if args.shout:
        greeting = greeting.upper()
    ctx.reporter.info(f"greeted {len(labels)} targets")
    return Report({"greeted": [str(lab) for lab in labels], "words": int(words),
                   "statuses": {nid: o.status for nid, o in done.outcomes.items()}}, greeting)


VERBS = [Verb("greet", "greet targets by counting their words", configure, run)]
'''


def _workspace(ws):
    ws.write("graphbuild.toml", '[plugins]\nverbs = ["tools/verbs.py"]\n')
    ws.write("tools/verbs.py", VERBS_PLUGIN)
    ws.write("pkg/BUILD.envs", '''
        genrule(name = "text", outs = ["t.txt"], cmd = "echo one two three > $OUT")
    ''')


def test_a_workspace_verb_is_listed_by_help_and_runs(ws):
    _workspace(ws)
    shown = ws.gb("--help")
    assert shown.exit_code == 0
    assert "greet" in shown.stdout and "greet targets by counting their words" in shown.stdout
    assert "--shout" in ws.gb("help", "greet").stdout

    first = ws.gb("greet", "//pkg:text", "--json")
    assert first.exit_code == 0, first.stderr
    assert first.json["command"] == "greet"
    assert first.json["greeted"] == ["//pkg:text"]
    assert first.json["words"] == 3
    assert first.json["statuses"] == {"//pkg:text#gen": "cached", "//pkg:text#greet": "ran"}
    assert first.json["exit_code"] == 0

    again = ws.gb("greet", "//pkg:text", "--shout")  # text on stdout; its own node now cached
    assert again.exit_code == 0, again.stderr
    assert again.stdout == "HELLO //PKG:TEXT: 3 WORDS\n"
    assert "greeted 1 targets" in again.stderr


def test_a_workspace_verb_before_global_options_and_its_usage_errors(ws):
    _workspace(ws)
    # global options before the verb
    result = ws.gb("--json", "greet", "//pkg:text")
    assert result.exit_code == 0, result.stderr
    assert result.json["words"] == 3
    missing = ws.gb("greet")
    assert missing.exit_code == 2 and "Traceback" not in missing.stderr
    assert "the following arguments are required: TARGET" in missing.stderr


def test_a_broken_verbs_plugin_is_a_located_error(ws):
    ws.write("graphbuild.toml", '[plugins]\nverbs = ["tools/nope.py"]\n')
    result = ws.gb("build", "//...")
    assert result.exit_code == 2
    assert result.stderr == ("error: graphbuild.toml:2: verb plugin tools/nope.py does not exist\n"
                             "  hint: plugins are paths relative to the workspace root, e.g. \"tools/verbs.py\"\n")
    ws.write("graphbuild.toml", '[plugins]\nverbs = ["tools/verbs.py"]\n')
    ws.write("tools/verbs.py", "from graphbuild.api import Verb\nVERBS = [Verb('build', 'mine')]\n")
    clash = ws.gb("build", "//...")
    assert clash.exit_code == 2
    assert "a workspace plugin declares verb 'build', which graphbuild already has" in clash.stderr


def test_declaring_verbs_imports_nothing_heavy():
    """A rule package's verbs module and the parser import neither pydantic nor networkx."""
    code = ("import sys; from graphbuild.cli.registry import engine_verbs, rule_verbs; "
            "from graphbuild.cli.main import make_parser; make_parser(engine_verbs() + rule_verbs()); "
            "print(sorted(m for m in ('pydantic', 'networkx', 'graphbuild.analysis.analyzer', 'graphbuild.rule') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_every_hook_the_engine_asks_for_is_offered_by_a_rule_package_and_named_nowhere_else():
    """The engine asks rule packages for what only they know (pin an image reference, the
    upgrades pipeline) by hook name; which module does it is the rule package's to say."""
    import ast
    from pathlib import Path

    import graphbuild
    from graphbuild.cli.registry import rule_hook
    from graphbuild.rules.verbs import HOOKS as OFFERED
    from graphbuild.verbs import HOOKS

    assert set(OFFERED) == set(HOOKS)
    for name in HOOKS:
        assert callable(rule_hook(name)), name
    with pytest.raises(LookupError):
        rule_hook("no.such.hook")
    engine = Path(graphbuild.__file__).parent
    for path in sorted(engine.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ":" in node.value:
                assert not node.value.startswith("graphbuild.rules."), (path, node.value)
