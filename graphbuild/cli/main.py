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
from graphbuild.cli.options import add_global_options, workspace_option
from graphbuild.errors import EXIT_BAD_INPUT, GraphbuildError, did_you_mean
from graphbuild.verbs import Verb

EPILOG = """\
exit codes:
  0  success
  1  a node failed (a build step, a test, a push); the report names it
  2  bad usage or a bad spec (BUILD.envs error, unknown target, unusable cache dir)

Global options go before or after the verb. The workspace is the nearest directory at or
above the current one (or -C DIR) holding graphbuild.toml.
A shared cache (--remote-cache oci://HOST/REPO) is read after the local one and written after
a node runs; when it is unreachable the build warns and goes on locally (unless
--remote-cache-required). Only entries signed by a key of [cache] trusted_keys are read; only a run
with a signing key writes. Environment: GRAPHBUILD_REMOTE_CACHE, GRAPHBUILD_REMOTE_CACHE_READONLY=1,
GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE (a key file) or GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY (the key).
The cache is --cache-dir, else $GRAPHBUILD_CACHE_DIR, else [cache] dir in graphbuild.toml,
else $XDG_CACHE_HOME/graphbuild (~/.cache/graphbuild).
"""


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
    args = parser.parse_args(argv)
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
            from graphbuild.reporting.console import ConsoleReporter

            session = Session(args)
            ctx = SessionContext(session, args, ConsoleReporter(verbose=args.verbose, quiet=args.quiet or args.json))
        try:
            report = verb.runner()(ctx, args)
        finally:
            if ctx is not None:
                ctx.reporter.flush()  # lines are written in batches; nothing may stay behind
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


def _plugin_start(argv: list[str]) -> Path | None:
    """Where to look for the workspace whose plugins add verbs; None for `--version`."""
    if argv[:1] == ["--version"]:
        return None
    return Path(os.path.abspath(workspace_option(argv) or os.getcwd()))


def run() -> None:
    sys.exit(main())


__all__ = ["EPILOG", "main", "make_parser", "run"]
