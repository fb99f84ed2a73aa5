"""The global options: accepted before the verb (`graphbuild -C DIR build ...`) and after it.

They are added to the top-level parser with their defaults and again to every verb's parser
with no default (`argparse.SUPPRESS`), so a value given after the verb wins and an absent one
keeps what was given before it (or the default).
"""

from __future__ import annotations

import argparse

#: options taking a value, for finding -C DIR in a command line before it is parsed
VALUED = {"--cache-dir", "-C", "--workspace", "-j", "--jobs", "--remote-cache", "--remote-cache-signing-key",
          "--color"}


def add_global_options(parser: argparse.ArgumentParser, *, on_verb: bool) -> None:
    def default(value: object) -> object:
        return argparse.SUPPRESS if on_verb else value

    group = parser.add_argument_group("global options")
    group.add_argument("--json", action="store_true", default=default(False),
                       help="print one JSON document on stdout instead of text")
    group.add_argument("--cache-dir", metavar="DIR", default=default(None),
                       help="local cache directory (see below for the default)")
    group.add_argument("-C", "--workspace", metavar="DIR", default=default(None), help="run as if started in DIR")
    group.add_argument("-j", "--jobs", type=int, metavar="N", default=default(None),
                       help="nodes run at once (default: number of cores)")
    group.add_argument("-q", "--quiet", action="store_true", default=default(False),
                       help="print only failures and the summary")
    group.add_argument("-v", "--verbose", action="store_true", default=default(False), help="print more detail")
    group.add_argument("--color", choices=("auto", "always", "never"), default=default("auto"),
                       help="colour the output (auto: on a terminal, unless NO_COLOR is set)")
    group.add_argument("--remote-cache", metavar="oci://HOST/REPO", default=default(None),
                       help="shared cache in an OCI registry (or $GRAPHBUILD_REMOTE_CACHE, [cache] remote)")
    group.add_argument("--remote-cache-readonly", action="store_true", default=default(False),
                       help="use the shared cache but never write to it (untrusted runners)")
    group.add_argument("--remote-cache-required", action="store_true", default=default(False),
                       help="fail instead of building locally when the shared cache is unreachable")
    group.add_argument("--remote-cache-signing-key", metavar="FILE", default=default(None),
                       help="private key signing what is written to the shared cache "
                            "(or $GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE, $GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY)")


def workspace_option(argv: list[str]) -> str | None:
    """The value of the last -C/--workspace in a command line not parsed yet (None: absent)."""
    found = None
    index = 0
    while index < len(argv):
        word = argv[index]
        if word == "--":
            break
        if word in ("-C", "--workspace") and index + 1 < len(argv):
            found = argv[index + 1]
            index += 1
        elif word.startswith("--workspace="):
            found = word.partition("=")[2]
        elif word.startswith("-C") and len(word) > 2:
            found = word[2:]
        index += 1
    return found
