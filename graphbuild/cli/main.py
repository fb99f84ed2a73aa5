"""Entry point of the `graphbuild` command."""

from __future__ import annotations

import argparse
import gc
import sys

from graphbuild.loading.evaluator import prestart

prestart()  # the BUILD file evaluator process starts now: its start-up overlaps the imports below

from graphbuild import __version__  # noqa: E402
from graphbuild.cli import affected, build, ci, clean, graph, layers, query, why  # noqa: E402
from graphbuild.cli.output import emit_json  # noqa: E402
from graphbuild.errors import EXIT_BAD_INPUT, GraphbuildError  # noqa: E402

EPILOG = """\
exit codes:
  0  success
  1  a node failed (a build step, a test, a push); the report names it
  2  bad usage or a bad spec (BUILD.envs error, unknown target, unusable cache dir)

The workspace is the nearest directory at or above the current one holding graphbuild.toml.
A shared cache (--remote-cache oci://HOST/REPO) is read after the local one and written after
a node runs; when it is unreachable the build warns and goes on locally (unless
--remote-cache-required). Only entries signed by a key of [cache] trusted_keys are read; only a run
with a signing key writes. Environment: GRAPHBUILD_REMOTE_CACHE, GRAPHBUILD_REMOTE_CACHE_READONLY=1,
GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE (a key file) or GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY (the key).
The cache is --cache-dir, else $GRAPHBUILD_CACHE_DIR, else [cache] dir in graphbuild.toml,
else $XDG_CACHE_HOME/graphbuild (~/.cache/graphbuild).
"""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error exits with our code for bad usage (2) and names the fix."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        sys.stderr.write(f"error: {message}\n  hint: run '{self.prog} --help'\n")
        sys.exit(EXIT_BAD_INPUT)


def make_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print one JSON document on stdout instead of text")
    common.add_argument("--cache-dir", metavar="DIR", help="local cache directory (see below for the default)")
    common.add_argument("-C", "--workspace", metavar="DIR", help="run as if started in DIR")
    common.add_argument("-j", "--jobs", type=int, metavar="N", help="nodes run at once (default: number of cores)")
    common.add_argument("-q", "--quiet", action="store_true", help="print only failures and the summary")
    common.add_argument("-v", "--verbose", action="store_true", help="print more detail")
    common.add_argument("--remote-cache", metavar="oci://HOST/REPO",
                        help="shared cache in an OCI registry (or $GRAPHBUILD_REMOTE_CACHE, [cache] remote)")
    common.add_argument("--remote-cache-readonly", action="store_true",
                        help="use the shared cache but never write to it (untrusted runners)")
    common.add_argument("--remote-cache-required", action="store_true",
                        help="fail instead of building locally when the shared cache is unreachable")
    common.add_argument("--remote-cache-signing-key", metavar="FILE",
                        help="private key signing what is written to the shared cache "
                             "(or $GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE, $GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY)")
    parser = _Parser(prog="graphbuild", description="A declarative, content-addressed build graph for "
                     "container environments.", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"graphbuild {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    for module in (build, query, graph, why, affected, ci, clean, layers):
        module.add_parser(sub, common)
    for action in sub.choices.values():
        action.epilog = EPILOG
        action.formatter_class = argparse.RawDescriptionHelpFormatter
    return parser


def main(argv: list[str] | None = None) -> int:
    # A command allocates a great many small, long-lived objects (targets, nodes, keys) and
    # makes few cycles: collecting less often is ~15 % of a no-op build's time.
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    prestart()  # (again, if a test's command killed it)
    args = make_parser().parse_args(argv)
    session = None
    try:
        from graphbuild.cli.session import Session

        if getattr(args, "needs_workspace", True):
            session = Session(args)
        return args.handler(session, args)
    except GraphbuildError as err:
        if args.json:
            emit_json({"command": args.verb, "error": err.to_json(), "exit_code": err.exit_code})
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
