"""Verbs about graphbuild itself: `help [VERB]`, `completion SHELL`."""

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


def _configure_completion(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", nargs="?", choices=("bash", "zsh", "fish"), help="the shell to complete for")
    parser.add_argument("--labels", action="store_true", help=argparse.SUPPRESS)  # what the script calls


def run_completion(ctx: Any, args: argparse.Namespace) -> Report:
    """A completion script made from the parser itself (shtab): verbs, options, their choices,
    and the workspace's target labels where a verb takes targets (`completion --labels`, a
    quick scan of the BUILD files that needs no evaluation)."""
    if args.labels:
        from graphbuild.loading.label_scan import scan_labels

        labels = scan_labels(args.workspace or ".")
        return Report({"labels": labels}, "\n".join(labels))
    if not args.shell:
        raise UsageError("completion needs a shell: bash, zsh or fish",
                         hint='e.g. graphbuild completion bash > ~/.local/share/bash-completion/completions/graphbuild')
    import shtab

    parser: argparse.ArgumentParser = args._parser
    targets = shtab.cmd("graphbuild completion --labels 2>/dev/null")
    _mark_targets(parser, targets)
    script = shtab.complete(parser, shell=args.shell)
    return Report({"shell": args.shell, "script": script}, script)


def _mark_targets(parser: argparse.ArgumentParser, complete: Any) -> None:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in dict.fromkeys(action.choices.values()):
                _mark_targets(sub, complete)
        elif action.metavar == "TARGET":
            action.complete = complete  # type: ignore[attr-defined]


VERBS = [Verb("help", "show the help of graphbuild or of a verb (graphbuild help build)", _configure_help,
              run_help, needs_workspace=False),
         Verb("completion", "print a shell completion script (bash, zsh, fish)", _configure_completion,
              run_completion, needs_workspace=False,
              description="Print a completion script for the shell, made from graphbuild's own parser: verbs, "
                          "options and the workspace's target labels. Install it e.g. with "
                          "`graphbuild completion bash > ~/.local/share/bash-completion/completions/graphbuild`, "
                          "`graphbuild completion zsh > \"${fpath[1]}/_graphbuild\"`, or "
                          "`graphbuild completion fish > ~/.config/fish/completions/graphbuild.fish`.")]
