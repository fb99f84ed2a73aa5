"""`graphbuild clean` and `graphbuild cache gc --max-size SIZE`."""

from __future__ import annotations

import argparse
import re
import shutil

from graphbuild.cache.gc import collect
from graphbuild.cli.output import emit_json, emit_text
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_OK, UsageError
from graphbuild.execution.materialize import OUT_DIR

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "KIB": 1 << 10, "M": 1 << 20, "MB": 1 << 20,
          "MIB": 1 << 20, "G": 1 << 30, "GB": 1 << 30, "GIB": 1 << 30, "T": 1 << 40, "TB": 1 << 40, "TIB": 1 << 40}


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    clean = sub.add_parser("clean", parents=[parent], help="delete the local cache and graphbuild-out/",
                           description="Delete everything in the local cache directory and the workspace's "
                                       "graphbuild-out/. The next build runs every node.")
    clean.set_defaults(handler=run_clean)
    cache = sub.add_parser("cache", help="manage the local cache")
    cache_sub = cache.add_subparsers(dest="cache_verb", metavar="VERB", required=True)
    gc = cache_sub.add_parser("gc", parents=[parent], help="evict least recently used results above a size",
                              description="Evict the least recently used action results until the blobs they "
                                          "reference fit in SIZE, then delete unreferenced blobs.")
    gc.add_argument("--max-size", required=True, metavar="SIZE", help="e.g. 500M, 10G (binary units)")
    gc.set_defaults(handler=run_gc)


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise UsageError(f"invalid size {text!r}", hint="write a number with an optional unit: 800M, 10G, 1.5T")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def run_clean(session: Session, args: argparse.Namespace) -> int:
    cache = session.cache
    root = cache.root
    session.close()
    # Only what graphbuild keeps there: the directory may be shared with other files.
    for sub in (cache.blobs, cache.actions, cache.history, cache.tmp):
        shutil.rmtree(sub, ignore_errors=True)
    out = session.workspace.root / OUT_DIR
    if out.is_symlink():  # the link goes, never what it points at
        out.unlink()
    shutil.rmtree(out, ignore_errors=True)
    session.__dict__.pop("actions", None)
    session.__dict__.pop("files", None)
    if args.json:
        emit_json({"command": "clean", "cache_dir": str(root)})
    elif not args.quiet:
        emit_text(f"cleaned {root} and {OUT_DIR}/")
    return EXIT_OK


def run_gc(session: Session, args: argparse.Namespace) -> int:
    limit = parse_size(args.max_size)
    result = collect(session.actions, session.blobs, session.cache.tmp, limit)
    if args.json:
        emit_json({"command": "cache gc", **result})
    elif not args.quiet:
        emit_text(f"evicted {result['evicted_results']} results and {result['deleted_blobs']} blobs "
                  f"({result['freed_bytes']} bytes); {result['kept_bytes']} bytes in {result['kept_results']} "
                  f"results remain (limit {limit})")
    return EXIT_OK
