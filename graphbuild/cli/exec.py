"""`graphbuild exec ENV -- CMD...`: run a command in an environment's image.

What the image needs is built (or reused) and loaded first, exactly as `graphbuild run` would
build and load it; then the command runs in a container of the Docker engine (the options are
the rules' own: `graphbuild.rules.python.workload`), and its exit status is graphbuild's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_BAD_INPUT, EXIT_BUILD_FAILED, UsageError
from graphbuild.reporting.console import ConsoleReporter

_HELP = "run a command in an environment's image (built or reused first), the current directory at /work"


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("exec", parents=[parent], help=_HELP, description=_HELP + ". The command's exit "
                            "status is graphbuild's; 2 is also bad usage, 1 also a failed build of the image.",
                            usage="graphbuild exec [options] ENV -- CMD [ARGS...]")
    parser.add_argument("environment", metavar="ENV", nargs="?", help="an environment with a base (//envs:prod)")
    parser.add_argument("command", nargs="*", metavar="CMD", help="the command, after --")
    parser.add_argument("--workdir", metavar="DIR", help="the directory mounted read-only at /work "
                        "(default: the current directory)")
    parser.add_argument("--network", choices=("none", "host"), default="none",
                        help="none (default: only loopback) or host (the host's network)")
    parser.add_argument("--env", "-e", action="append", default=[], metavar="NAME[=VALUE]", dest="env_vars",
                        help="set a variable in the container (NAME alone passes the caller's value); repeatable")
    parser.add_argument("--pick", action="store_true", help="choose the environment as `graphbuild pick` does "
                        "(give no ENV): the smallest that can run the workload described by --requires, "
                        "--library and --script")
    parser.add_argument("--requires", nargs="+", metavar="REQ", default=[], help="with --pick: PEP 508 "
                        "requirements the command needs")
    parser.add_argument("--library", metavar="LIB", help="with --pick: a library whose requirements the command "
                        "needs (its tests must pass there)")
    parser.add_argument("--script", metavar="FILE", help="with --pick: a Python file whose imports the command needs")
    parser.set_defaults(handler=run_exec)


def split_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """`exec [options] ENV [options] -- CMD...`: the command is everything after the first `--`,
    taken out before the options are parsed (so options may follow ENV)."""
    if argv[:1] != ["exec"] or "--" not in argv:
        return argv, None
    index = argv.index("--")
    return argv[:index], argv[index + 1:]


def run_exec(session: Session, args: argparse.Namespace) -> int:
    from graphbuild.rules.python.workload import WorkloadInfo, docker_run_args, parse_env_flags

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if args.pick:
        # no ENV with --pick: what argparse took for one is the command's first word
        command = [args.environment, *command] if args.environment else command
        if not command:
            raise UsageError("exec --pick: no command to run", hint="graphbuild exec --pick --requires numpy -- "
                             "python job.py")
        args.environment = _picked(session, args)
        if args.environment is None:
            return EXIT_BUILD_FAILED
    elif args.requires or args.library or args.script:
        raise UsageError("--requires, --library and --script describe a workload for --pick",
                         hint="add --pick (and drop ENV), or drop them")
    if not args.environment:
        raise UsageError("exec needs an environment and a command", hint="graphbuild exec //envs:prod -- python -V")
    if not command:
        raise UsageError(f"exec {args.environment}: no command to run",
                         hint=f"put it after '--': graphbuild exec {args.environment} -- python -V")
    try:
        env = parse_env_flags(args.env_vars)
    except ValueError as err:
        raise UsageError(str(err)) from None
    # -C DIR is "as if started in DIR": DIR is the current directory mounted
    directory = session.cwd / Path(args.workdir).expanduser() if args.workdir else session.cwd
    if not directory.is_dir():
        raise UsageError(f"--workdir {args.workdir}: no such directory")
    labels = session.labels([args.environment])
    if len(labels) != 1:
        raise UsageError(f"exec {args.environment}: names {len(labels)} targets; name one environment",
                         hint="e.g. //envs:prod")
    label = labels[0]
    analysis = session.analyze(labels)
    workload = analysis.providers[label].get(WorkloadInfo)
    if workload is None:
        raise UsageError(f"{label} is not an environment with a base image: there is no image to run in",
                         hint="exec takes an environment(...) that has a base")
    image = load_environment(session, args, analysis, workload.load_node)
    if image is None:
        return EXIT_BUILD_FAILED
    argv = docker_run_args(image, command, directory=str(directory.resolve()), resources=workload.resources,
                           network=args.network, env=env, tty=sys.stdin.isatty() and sys.stdout.isatty(),
                           run_id=session.run.id, label=str(label))
    if args.verbose:
        sys.stderr.write("exec: " + " ".join(argv) + "\n")
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        return subprocess.call(argv, env=os.environ)
    except FileNotFoundError:
        sys.stderr.write("error: the docker command is not installed (exec runs `docker run`)\n")
        return EXIT_BAD_INPUT


def _picked(session: Session, args: argparse.Namespace) -> str | None:
    """The environment `graphbuild pick` would choose for the workload (said on stderr), or None
    after saying why none qualifies."""
    from graphbuild.cli.matrix import analyse_workspace, context_maker, run_extra_nodes, select
    from graphbuild.rules.python import imports, matrix, pick

    if not (args.requires or args.library or args.script):
        raise UsageError("exec --pick needs a workload: --requires, --library or --script (or several)",
                         hint="graphbuild exec --pick --requires 'numpy>=2' -- python job.py")
    requires = pick.parse_requirements(args.requires)
    script_imports = imports.script_imports(session.cwd / args.script, args.script) if args.script else {}
    analysis = analyse_workspace(session)
    workspace = matrix.view(analysis, session.workspace.root)
    library = select(session, [args.library], workspace.libraries, "library")[0] if args.library else None
    plan = pick.plan(analysis, workspace, context_maker(session, analysis), requires=requires, library=library,
                     imports=script_imports, workspace_root=session.workspace.root)
    quiet = args.json
    args.json = True  # the pick's own nodes are not reported line by line
    try:
        outcomes = run_extra_nodes(session, args, analysis, plan.nodes, plan.wanted)
    finally:
        args.json = quiet

    def read_output(node: str, name: str) -> bytes:
        return Path(session.blobs.verified_path(outcomes[node].outputs[name][0])).read_bytes()

    choice = pick.finish(plan, outcomes, read_output)
    if choice.chosen is None:
        sys.stderr.write(pick.render(choice) + "\n")
        return None
    others = [c.label for c in choice.ranking if c is not choice.chosen]
    sys.stderr.write(f"exec: picked {choice.chosen.label}, the smallest environment that can run it"
                     + (f" (ranked above {', '.join(others)})" if others else "") + "\n")
    return choice.chosen.label


def load_environment(session: Session, args: argparse.Namespace, analysis, load_node: str) -> str | None:
    """Build (or reuse) what the image needs and load it: its reference in the engine, or None
    after reporting the failure."""
    from graphbuild.cli.build import _execute

    # progress on stderr (the command's output is stdout); -q keeps it to failures
    reporter = ConsoleReporter(verbose=args.verbose, quiet=args.quiet or args.json)
    order = node_closure(analysis, load_node)
    try:
        outcomes = _execute(session, reporter, analysis, order, [])
    finally:
        reporter.flush()
    loaded = outcomes.get(load_node)
    if loaded is None or not loaded.ok:
        failed = [nid for nid in order if nid in outcomes and outcomes[nid].status == "failed"]
        sys.stderr.write(f"error: the image could not be built or loaded ({', '.join(failed) or load_node} "
                         "failed, above); nothing was run\n")
        return None
    return loaded.metadata["tags"][0]


def node_closure(analysis, node_id: str) -> list[str]:
    """`node_id` and every node it depends on, dependencies first."""
    import networkx as nx

    wanted: set[str] = set()
    stack = [node_id]
    while stack:
        nid = stack.pop()
        if nid not in wanted:
            wanted.add(nid)
            stack.extend(analysis.nodes[nid].deps)
    return list(reversed(list(nx.topological_sort(analysis.action_graph.subgraph(wanted)))))
