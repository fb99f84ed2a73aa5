"""Verbs about graphbuild itself: `help [VERB]`."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.errors import UsageError, did_you_mean
from graphbuild.verbs import Report, Verb


def _configure_help(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", nargs="*", metavar="VERB", help="a verb (and its sub-verb: cache gc)")


def run_help(ctx: Any, args: argparse.Namespace) -> Report:
    parser: argparse.ArgumentParser = args._parser
    for word in args.topic:
        choices = _subcommands(parser)
        if word not in choices:
            raise UsageError(f"no verb '{word}'",
                             hint=did_you_mean(word, list(choices)) or "run 'graphbuild help' for the list")
        parser = choices[word]
    return Report({"help": parser.format_help()}, parser.format_help())


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


VERBS = [Verb("help", "show the help of graphbuild or of a verb (graphbuild help build)", _configure_help,
              run_help, needs_workspace=False)]
