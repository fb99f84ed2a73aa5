"""Entry point of the `graphbuild` command: parse, run the verb, render its report.

Start-up is kept small: the parser is built from verb declarations (argparse only), and a
verb's machinery (the loader, analysis, pydantic, networkx) is imported only once it runs.
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import sys
from pathlib import Path

from graphbuild import __version__
from graphbuild.cli.options import EPILOG, add_global_options, workspace_option
from graphbuild.errors import EXIT_BAD_INPUT, GraphbuildError, did_you_mean
from graphbuild.verbs import Verb


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with our code for bad usage (2), names the fix and
    suggests the verb meant when one is misspelt."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        hint = f"run '{self.prog} --help'"
        bad = re.search(r"invalid choice: '([^']*)' \(choose from (.*)\)", message)
        if bad:
            choices = [c.strip().strip("'") for c in bad.group(2).split(",")]
            suggestion = did_you_mean(bad.group(1), choices)
            message = f"unknown {'verb' if self.prog == 'graphbuild' else 'choice'} '{bad.group(1)}'"
            if suggestion:
                hint = f"{suggestion} ({hint} for the list)"
        sys.stderr.write(f"error: {message}\n  hint: {hint}\n")
        sys.exit(EXIT_BAD_INPUT)


def make_parser(verbs: list[Verb]) -> argparse.ArgumentParser:
    parser = _Parser(prog="graphbuild", description="A declarative, content-addressed build graph for "
                     "container environments.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"graphbuild {__version__}")
    add_global_options(parser, on_verb=False)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for verb in verbs:
        verb_parser = sub.add_parser(verb.name, help=verb.help, description=verb.description or verb.help,
                                     epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
        if verb.configure is not None:
            verb.configure(verb_parser)
        add_global_options(verb_parser, on_verb=True)
        verb_parser.set_defaults(_verb=verb)
    return parser


def main(argv: list[str] | None = None) -> int:
    # A command allocates a great many small, long-lived objects (targets, nodes, keys) and
    # makes few cycles: collecting less often is ~15 % of a no-op build's time.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from graphbuild.cli.registry import all_verbs

        parser = make_parser(all_verbs(_plugin_start(argv)))
    except GraphbuildError as err:
        sys.stderr.write(f"error: {err.render()}\n")
        return err.exit_code
    argv, after_dashes = _command_after_dashes(argv)
    args = parser.parse_args(argv)
    if after_dashes is not None:
        args.command = after_dashes
    verb: Verb = args._verb
    args._parser = parser
    session = None
    try:
        ctx = None
        if verb.wants_workspace(args):
            from graphbuild.loading.evaluator import prestart

            prestart()  # the BUILD file evaluator starts now: its start-up overlaps the imports below
            from graphbuild.operations.context import SessionContext
            from graphbuild.operations.session import Session
            from graphbuild.reporting.console import make_console

            session = Session(args)
            ctx = SessionContext(session, args, make_console(verbose=args.verbose, quiet=args.quiet or args.json,
                                                             color=args.color))
        try:
            report = verb.runner()(ctx, args)
        finally:
            if ctx is not None:
                ctx.reporter.close()  # stops the live view; nothing printed may stay behind
        from graphbuild.reporting.render import emit

        emit(report, command=verb.name, as_json=args.json)
        return report.exit_code
    except GraphbuildError as err:
        if args.json:
            from graphbuild.reporting.render import emit_json

            emit_json({"command": verb.name, "error": err.to_json(), "exit_code": err.exit_code})
        else:
            sys.stderr.write(f"error: {err.render()}\n")
        return err.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("interrupted: finished nodes are cached; rerun to resume\n")
        return 130
    finally:
        if session is not None:
            session.close()


#: verbs whose arguments end with a command of their own: `exec [options] ENV -- CMD...`
COMMAND_VERBS = ("exec",)


def _command_after_dashes(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """For `exec`, everything after the first `--` is the command, taken out before the options
    are parsed (so options may come after ENV, and the command's own options stay its own)."""
    if "--" not in argv:
        return argv, None
    index = argv.index("--")
    if not any(word in COMMAND_VERBS for word in argv[:index]):
        return argv, None
    return argv[:index], argv[index + 1:]


def _plugin_start(argv: list[str]) -> Path | None:
    """Where to look for the workspace whose plugins add verbs; None for `--version`."""
    if argv[:1] == ["--version"]:
        return None
    return Path(os.path.abspath(workspace_option(argv) or os.getcwd()))


def run() -> None:
    sys.exit(main())


__all__ = ["main", "make_parser", "run"]
