"""`graphbuild matrix` and `graphbuild pick`, run through the verb registry (`graphbuild.api.VerbContext`).

The workspace is analysed as a whole (every environment and library is a candidate); the
nodes the rules declare after analysis (probes, module indexes) are run with `ctx.execute`
together with the environments' own test nodes, through the cache like any node.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path
from typing import Any

from graphbuild.api import Label, Report, RuleContext, UsageError, VerbContext
from graphbuild.rules.python import imports, matrix, matrix_report, pick

EXIT_OK, EXIT_FAILED = 0, 1


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Host:
    """The analysed workspace and how to run what the rules declare over it (also what
    `exec --pick` needs: `Host(ctx).pick(...)`)."""

    def __init__(self, ctx: VerbContext):
        self.ctx = ctx
        self.analysis = ctx.analyze(ctx.labels(["//..."]))
        self.workspace = matrix.view(self.analysis, ctx.root)

    def context_for(self, label: Label) -> RuleContext:
        return RuleContext(self.analysis.targets[label], self.analysis.providers, self.ctx.root, _digest)

    def run(self, declared: list[Any], wanted: list[str]) -> dict[str, Any]:
        """Run `wanted` (node ids: declared ones, or the analysis's own) and what they need."""
        own = {node.id: node for node in declared}
        nodes = [own.get(nid) or self.analysis.nodes[nid] for nid in wanted]
        for node in declared:  # dependencies among declared nodes (a probe's layers, image)
            if node.id not in wanted:
                nodes.append(node)
        analysis_nodes = self.analysis.nodes
        for node in declared:
            analysis_nodes[node.id] = node
        return dict(self.ctx.execute(nodes, analysis=self.analysis).outcomes)

    def select(self, patterns: list[str], known: dict[str, Any], what: str) -> list[str]:
        """Labels of `known` (environments or libraries) the patterns name; a label that is
        not one is a usage error naming those there are; a pattern keeps the ones it covers."""
        found: list[str] = []
        for pattern in patterns:
            labels = [str(lab) for lab in self.ctx.labels([pattern])]
            if "..." in pattern or pattern.endswith((":all", ":*")):
                labels = [lab for lab in labels if lab in known]
            for label in labels:
                if label not in known:
                    names = ", ".join(sorted(known)) or "none"
                    raise UsageError(f"{label} is not {'an' if what[0] in 'aeiou' else 'a'} {what} of the "
                                     "workspace", hint=f"{what}s: {names}")
            found.extend(lab for lab in labels if lab not in found)
        return found

    def pick(self, *, requires: list[str], library: str | None = None,
             script_imports: dict[str, int] | None = None) -> pick.Choice:
        plan = pick.plan(self.analysis, self.workspace, self.context_for, requires=requires, library=library,
                         imports=script_imports, workspace_root=self.ctx.root)
        outcomes = self.run(plan.nodes, plan.wanted)
        return pick.finish(plan, outcomes, lambda node, name: self.ctx.output_path(outcomes[node], name).read_bytes())


def run_matrix(ctx: VerbContext, args: argparse.Namespace) -> Report:
    started = time.monotonic()
    host = Host(ctx)
    workspace = host.workspace
    envs = host.select(args.environments, workspace.environments, "environment") if args.environments \
        else sorted(workspace.environments)
    libs = host.select(args.libraries, workspace.libraries, "library") if args.libraries \
        else sorted(workspace.libraries)
    if not envs:
        raise UsageError("the workspace has no environment", hint="declare one with environment(...) in BUILD.envs")
    plan = matrix.plan(host.analysis, workspace, envs, libs, host.context_for)
    outcomes = host.run(plan.nodes, plan.test_nodes)
    cells = matrix.finish(plan, outcomes)
    found = matrix.counts(cells)
    code = EXIT_FAILED if found[matrix.ERROR] else EXIT_OK
    notes = []
    if args.html:
        path = ctx.cwd / args.html
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(matrix_report.html_page(cells, envs, libs))
        notes.append(f"wrote {args.html}")
    if args.junit_dir:
        matrix_report.write_junit(cells, envs, ctx.cwd / args.junit_dir)
        notes.append(f"wrote {len(envs)} JUnit reports into {args.junit_dir}")
    elapsed = time.monotonic() - started
    data = {"environments": envs, "libraries": libs, "cells": [c.as_json() for c in cells],
            "summary": {**found, "naive_test_runs": len(envs) * len(libs), "seconds": round(elapsed, 3)}}
    text = "\n".join([matrix_report.table(cells, envs, libs),
                      matrix_report.summary_line(cells) + f" in {elapsed:.1f} s", *notes])
    return Report(data=data, text=text, exit_code=code)


def run_pick(ctx: VerbContext, args: argparse.Namespace) -> Report:
    if not (args.requires or args.library or args.script):
        raise UsageError("pick needs a workload: --requires, --library or --script (or several)",
                         hint="e.g. graphbuild pick --requires 'numpy>=2' --script job.py")
    requires = pick.parse_requirements(args.requires)
    script_imports = imports.script_imports(ctx.cwd / args.script, args.script) if args.script else {}
    host = Host(ctx)
    if not host.workspace.environments:
        raise UsageError("the workspace has no environment", hint="declare one with environment(...) in BUILD.envs")
    library = host.select([args.library], host.workspace.libraries, "library")[0] if args.library else None
    choice = host.pick(requires=requires, library=library, script_imports=script_imports)
    data = {"requires": requires, "library": library, "script": args.script, "imports": script_imports,
            **choice.as_json()}
    return Report(data=data, text=pick.render(choice), exit_code=EXIT_OK if choice.chosen else EXIT_FAILED)
