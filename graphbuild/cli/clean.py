"""`graphbuild clean`, `graphbuild cache gc --max-size SIZE` and `graphbuild cache keygen`."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import sys
from pathlib import Path

from graphbuild.cache.gc import collect
from graphbuild.cache.state import sweep as sweep_state
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
    cache = sub.add_parser("cache", help="manage the local cache; make signing keys for the shared cache")
    cache_sub = cache.add_subparsers(dest="cache_verb", metavar="VERB", required=True)
    gc = cache_sub.add_parser("gc", parents=[parent], help="evict least recently used results above a size",
                              description="Evict the least recently used action results until the blobs they "
                                          "reference fit in SIZE, then delete unreferenced blobs.")
    gc.add_argument("--max-size", required=True, metavar="SIZE", help="e.g. 500M, 10G (binary units)")
    gc.set_defaults(handler=run_gc)
    keygen = cache_sub.add_parser(
        "keygen", parents=[parent], help="make a key pair for signing what is written to the shared cache",
        description="Make an Ed25519 key pair. The private key (PEM) goes to FILE (created with mode 0600; "
                    "never overwritten) or, without -o, to stdout; the public key line is printed for "
                    "[cache] trusted_keys in graphbuild.toml.")
    keygen.add_argument("-o", "--output", metavar="FILE", help="write the private key here (mode 0600)")
    keygen.set_defaults(handler=run_keygen, needs_workspace=False)


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
    for sub in (cache.blobs, cache.actions, cache.history, cache.state, cache.tmp):
        shutil.rmtree(sub, ignore_errors=True)
    sweep_state(cache.state, lambda sha: False)  # what older versions kept beside the blob store
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
    result = collect(session.actions, session.blobs, session.cache.tmp, limit, session.cache.state)
    if args.json:
        emit_json({"command": "cache gc", **result})
    elif not args.quiet:
        emit_text(f"evicted {result['evicted_results']} results and {result['deleted_blobs']} blobs "
                  f"({result['freed_bytes']} bytes); {result['kept_bytes']} bytes in {result['kept_results']} "
                  f"results remain (limit {limit})")
    return EXIT_OK


def run_keygen(session: Session | None, args: argparse.Namespace) -> int:
    from graphbuild.cache.signing import SigningKey

    key = SigningKey.generate()
    public = key.public.line()
    if args.output:
        path = Path(args.output).expanduser()
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise UsageError(f"{path} already exists; the key in it is kept",
                             hint="choose another path, or delete the old key first") from None
        except OSError as err:
            raise UsageError(f"cannot create {path}: {err.strerror}") from None
        with os.fdopen(fd, "wb") as out:
            out.write(key.pem())
        os.chmod(path, 0o600)  # whatever the umask was
        if args.json:
            emit_json({"command": "cache keygen", "private_key_file": str(path), "public_key": public,
                       "key_id": key.public.key_id})
        else:
            emit_text(f"wrote the private key to {path} (mode 0600); keep it secret\n"
                      f"key id {key.public.key_id}; add its public key to graphbuild.toml:\n"
                      f"[cache]\ntrusted_keys = [\"{public}\"]")
        return EXIT_OK
    if args.json:
        emit_json({"command": "cache keygen", "private_key": key.pem().decode(), "public_key": public,
                   "key_id": key.public.key_id})
    else:
        emit_text(key.pem().decode().rstrip("\n"))
        sys.stderr.write(f"key id {key.public.key_id}; public key for [cache] trusted_keys in graphbuild.toml:\n"
                         f"  {public}\n")
    return EXIT_OK
