"""`graphbuild clean`, `graphbuild cache gc --max-size SIZE` and `graphbuild cache keygen`."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.cli.options import add_global_options
from graphbuild.verbs import Verb


def run_clean(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations.housekeeping import clean
    from graphbuild.reporting import housekeeping

    return housekeeping.clean(clean(ctx.session), quiet=args.quiet)


def _configure_cache(parser: argparse.ArgumentParser) -> None:
    cache_sub = parser.add_subparsers(dest="cache_verb", metavar="VERB", required=True, parser_class=type(parser))
    gc = cache_sub.add_parser("gc", help="evict least recently used results above a size",
                              description="Evict the least recently used action results until the blobs they "
                                          "reference fit in SIZE, then delete unreferenced blobs.")
    gc.add_argument("--max-size", required=True, metavar="SIZE", help="e.g. 500M, 10G (binary units)")
    keygen = cache_sub.add_parser(
        "keygen", help="make a key pair for signing what is written to the shared cache",
        description="Make an Ed25519 key pair. The private key (PEM) goes to FILE (created with mode 0600; "
                    "never overwritten) or, without -o, to stdout; the public key line is printed for "
                    "[cache] trusted_keys in graphbuild.toml.")
    keygen.add_argument("-o", "--output", metavar="FILE", help="write the private key here (mode 0600)")
    for leaf in (gc, keygen):
        add_global_options(leaf, on_verb=True)


def run_cache(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.operations import housekeeping as ops
    from graphbuild.reporting import housekeeping

    if args.cache_verb == "keygen":
        return housekeeping.keygen(ops.keygen(args.output))
    return housekeeping.gc(ops.gc(ctx.session, args.max_size), quiet=args.quiet)


def _cache_needs_workspace(args: argparse.Namespace) -> bool:
    return args.cache_verb != "keygen"


VERBS = [
    Verb("clean", "delete the local cache and graphbuild-out/", None, run_clean,
         description="Delete everything in the local cache directory and the workspace's graphbuild-out/. The "
                     "next build runs every node."),
    Verb("cache", "manage the local cache; make signing keys for the shared cache", _configure_cache, run_cache,
         needs_workspace=_cache_needs_workspace),
]
