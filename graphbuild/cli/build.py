"""`graphbuild build|test|run|lock TARGETS...`: take targets through a phase.

build: the targets' build nodes; test: also their test nodes; run: everything (tests,
pushes); lock: only the nodes that rewrite lock files (`--relock` does that before the rest).
The work is `graphbuild.operations.build`; this module only declares and renders.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from graphbuild.verbs import Verb

_HELP = {
    "build": "build the targets' outputs (no tests, no pushes)",
    "test": "build the targets and run their tests",
    "run": "build, test, then run the targets' run-time actions (pushes); pushes wait for every test",
    "lock": "rewrite the lock files the targets derive from their specs (resolves; needs the package index)",
}


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="labels or patterns (//envs:prod, //...)")
    parser.add_argument("--relock", action="store_true",
                        help="update lock files first instead of failing when one is out of date")
    parser.add_argument("--affected-since", metavar="REV",
                        help="only the targets a change since git revision REV affects (for CI)")
    parser.add_argument("--junit-dir", metavar="DIR",
                        help="copy the JUnit reports of the run's tests (ran or cached) into DIR")
    parser.add_argument("--output", choices=("oci", "docker-archive"), default="oci",
                        help="what an image target leaves in graphbuild-out/<package>/: its OCI layout <name>/ "
                             "(default), or also <name>.docker.tar for `docker load` (outputs of that kind)")


def _configure_lock(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="+", metavar="TARGET", help="labels or patterns (//envs:prod, //...)")
    parser.add_argument("--upgrade", action="store_true",
                        help="resolve every layer afresh (by default the pins of layers whose spec did not "
                             "change are kept)")


def run(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations.build import BuildRequest, build
    from graphbuild.reporting.build import rendered

    request = BuildRequest(
        phase=args.verb, patterns=tuple(args.targets), relock=getattr(args, "relock", False),
        upgrade=getattr(args, "upgrade", False), affected_since=getattr(args, "affected_since", None),
        junit_dir=Path(args.junit_dir) if getattr(args, "junit_dir", None) else None,
        output=getattr(args, "output", "oci"))
    return rendered(build(ctx.session, ctx.reporter, request), ctx.reporter)


VERBS = [
    *(Verb(verb, text, _configure, run, description=text) for verb, text in _HELP.items() if verb != "lock"),
    Verb("lock", _HELP["lock"], _configure_lock, run, description=_HELP["lock"]),
]
