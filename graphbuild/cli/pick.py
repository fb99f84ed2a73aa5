"""`graphbuild pick [--requires REQ...] [--library LIB] [--script FILE]`: the smallest environment
that can run a workload (`graphbuild.rules.python.pick` says what "smallest" means)."""

from __future__ import annotations

import argparse
from pathlib import Path

from graphbuild.cli.matrix import analyse_workspace, context_maker, run_extra_nodes, select
from graphbuild.cli.output import emit_json, emit_text
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_BUILD_FAILED, EXIT_OK, UsageError

HELP = "choose the smallest environment that can run a workload (requirements, a library, a script)"


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("pick", parents=[parent], help=HELP, description=HELP + (
        ". Smallest: fewest layers above the shared core, then fewest installed bytes, then name. Exit 0 with "
        "the chosen environment, 1 when none qualifies (with what the nearest ones miss)."))
    parser.add_argument("--requires", nargs="+", metavar="REQ", default=[],
                        help="PEP 508 requirements the workload needs, e.g. 'pandas>=2' pyarrow")
    parser.add_argument("--library", metavar="LIB",
                        help="an in-repo library: its requirements, and its tests must pass there")
    parser.add_argument("--script", metavar="FILE",
                        help="a Python file: its top-level imports, mapped to the packages that install them")
    parser.set_defaults(handler=run_pick)


def run_pick(session: Session, args: argparse.Namespace) -> int:
    from graphbuild.rules.python import imports, matrix, pick

    if not (args.requires or args.library or args.script):
        raise UsageError("pick needs a workload: --requires, --library or --script (or several)",
                         hint="e.g. graphbuild pick --requires 'numpy>=2' --script job.py")
    requires = pick.parse_requirements(args.requires)
    script_imports: dict[str, int] = {}
    if args.script:
        path = session.cwd / args.script
        script_imports = imports.script_imports(path, args.script)
    analysis = analyse_workspace(session)
    workspace = matrix.view(analysis, session.workspace.root)
    if not workspace.environments:
        raise UsageError("the workspace has no environment", hint="declare one with environment(...) in BUILD.envs")
    library = select(session, [args.library], workspace.libraries, "library")[0] if args.library else None
    plan = pick.plan(analysis, workspace, context_maker(session, analysis), requires=requires, library=library,
                     imports=script_imports, workspace_root=session.workspace.root)
    outcomes = run_extra_nodes(session, args, analysis, plan.nodes, plan.wanted)

    def read_output(node: str, name: str) -> bytes:
        return Path(session.blobs.verified_path(outcomes[node].outputs[name][0])).read_bytes()

    choice = pick.finish(plan, outcomes, read_output)
    code = EXIT_OK if choice.chosen else EXIT_BUILD_FAILED
    if args.json:
        emit_json({"command": "pick", "requires": requires, "library": library, "script": args.script,
                   "imports": script_imports, **choice.as_json(), "exit_code": code})
    else:
        emit_text(pick.render(choice))
    return code
