"""The command line's grammar: the parser built from verb declarations (argparse only, so
that `--help` starts fast), and the words taken out before it parses."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

from graphbuild import __version__
from graphbuild.cli.options import EPILOG, add_global_options, workspace_option
from graphbuild.errors import EXIT_BAD_INPUT, did_you_mean
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


#: The last parser made and the verbs it was made from (held, so they stay the same objects):
#: a process that runs many commands (a test suite, a tool driving graphbuild in-process)
#: builds it once, not once per command (~8 ms each: 20 verbs, 300 options).
_MADE: tuple[tuple[Verb, ...], argparse.ArgumentParser] | None = None


def make_parser(verbs: list[Verb]) -> argparse.ArgumentParser:
    global _MADE
    if _MADE is not None and len(_MADE[0]) == len(verbs) and all(a is b for a, b in zip(_MADE[0], verbs, strict=True)):
        return _MADE[1]
    parser = _build(verbs)
    _MADE = (tuple(verbs), parser)
    return parser


def _build(verbs: list[Verb]) -> argparse.ArgumentParser:
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


#: verbs whose arguments end with a command of their own: `exec [options] ENV -- CMD...`
COMMAND_VERBS = ("exec",)


def command_after_dashes(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """For `exec`, everything after the first `--` is the command, taken out before the options
    are parsed (so options may come after ENV, and the command's own options stay its own)."""
    if "--" not in argv:
        return argv, None
    index = argv.index("--")
    if not any(word in COMMAND_VERBS for word in argv[:index]):
        return argv, None
    return argv[:index], argv[index + 1:]


def plugin_start(argv: list[str]) -> Path | None:
    """Where to look for the workspace whose plugins add verbs; None for `--version`."""
    if argv[:1] == ["--version"]:
        return None
    return Path(os.path.abspath(workspace_option(argv) or os.getcwd()))
