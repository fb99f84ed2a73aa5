"""`graphbuild ci gitlab`: print a GitLab CI child pipeline (see `graphbuild.operations.pipeline`)."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.cli.options import add_global_options
from graphbuild.verbs import Verb


def _configure(parser: argparse.ArgumentParser) -> None:
    ci_sub = parser.add_subparsers(dest="ci_system", metavar="SYSTEM", required=True,
                                   parser_class=type(parser))
    gitlab = ci_sub.add_parser("gitlab", help="a GitLab CI child pipeline (YAML on stdout)",
                               description="Print a GitLab CI child pipeline building, testing and pushing the "
                                           "targets, one job per target, sharing work through the remote cache.")
    gitlab.add_argument("targets", nargs="*", default=["//..."], metavar="TARGET", help="default: //...")
    gitlab.add_argument("--affected-since", metavar="REV", help="only targets a change since REV affects")
    gitlab.add_argument("--image", help="the image jobs run in (default: the runner's)")
    gitlab.add_argument("--before-script", action="append", default=[], metavar="CMD",
                        help="a command run before each job (e.g. installing graphbuild); repeatable")
    gitlab.add_argument("--graphbuild", default="graphbuild", metavar="CMD", help="how jobs call graphbuild")
    add_global_options(gitlab, on_verb=True)


def run(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations.pipeline import gitlab
    from graphbuild.reporting.pipeline import rendered

    return rendered(gitlab(ctx.session, args))


VERBS = [Verb("ci", "generate CI pipelines", _configure, run)]
