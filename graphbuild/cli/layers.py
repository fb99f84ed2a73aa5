"""`graphbuild layers ENV`: the image layers planned for an environment (nothing is built).

Wired here, as the other verbs are, until rules can register verbs of their own through
`graphbuild.api`: the plan and its rendering belong to the Python rules
(`rules/python/layers_report.py`); this module only finds the target and prints.
"""

from __future__ import annotations

import argparse

from graphbuild.cli.output import emit_json, emit_text
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_OK, GraphbuildError


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser(
        "layers", parents=[parent], help="show how an environment's packages are planned into image layers",
        description="Print the image layers planned for an environment: each layer, its packages, the "
                    "environments sharing it and why it is grouped so (from the locks; nothing is built).")
    parser.add_argument("target", metavar="ENV", help="an environment target, e.g. //envs:prod")
    parser.set_defaults(handler=run_layers)


def run_layers(session: Session, args: argparse.Namespace) -> int:
    from graphbuild.rules.python.environment import EnvironmentInfo
    from graphbuild.rules.python.layers_report import layers_document, layers_text

    labels = session.labels([args.target])
    if len(labels) != 1:
        raise GraphbuildError(f"'{args.target}' names {len(labels)} targets; layers shows one environment",
                              hint="name one environment, e.g. //envs:prod")
    label = labels[0]
    analysis = session.analyze(labels)
    info = analysis.providers[label].get(EnvironmentInfo)
    if not isinstance(info, EnvironmentInfo):
        kind = analysis.targets[label].rule.name
        raise GraphbuildError(f"{label} is not an environment (it is a '{kind}' target)",
                              hint="graphbuild layers takes an environment target")
    document = layers_document(info)
    if args.json:
        emit_json({"command": "layers", **document})
    else:
        emit_text(layers_text(document))
    return EXIT_OK
