"""`graphbuild affected --since REV [TARGETS]`: the targets a change since REV can affect."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.verbs import Verb


def _configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("targets", nargs="*", default=["//..."], metavar="TARGET", help="default: //...")
    parser.add_argument("--since", required=True, metavar="REV", help="a git revision (main, HEAD~1, a sha)")
    parser.add_argument("--nodes", action="store_true", help="list the affected nodes too")


def run(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations.affected import affected
    from graphbuild.reporting.affected import rendered

    return rendered(affected(ctx.session, args.targets, args.since), with_nodes=args.nodes)


VERBS = [Verb("affected", "list targets a change since REV affects", _configure, run,
              description="List the targets (or nodes) whose inputs differ between git revision REV and the "
                          "working tree.")]
