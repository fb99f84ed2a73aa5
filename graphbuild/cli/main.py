"""Entry point of the `graphbuild` command: parse, run the verb, render its report.

Start-up is kept small: the parser is built from verb declarations (argparse only), and a
verb's machinery (the loader, analysis, pydantic) is imported only once it runs.
"""

from __future__ import annotations

import sys

from graphbuild.cli.parser import command_after_dashes, make_parser, plugin_start
from graphbuild.errors import GraphbuildError
from graphbuild.verbs import Verb


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        from graphbuild.cli.registry import all_verbs

        parser = make_parser(all_verbs(plugin_start(argv)))
    except GraphbuildError as err:
        sys.stderr.write(f"error: {err.render()}\n")
        return err.exit_code
    argv, after_dashes = command_after_dashes(argv)
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


def run() -> None:
    sys.exit(main())


__all__ = ["main", "make_parser", "run"]
