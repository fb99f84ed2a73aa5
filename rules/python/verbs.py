"""The verbs of `graphbuild.rules.python` (declared here, run elsewhere: keep this module light).

Example::

    def _configure(parser):
        parser.add_argument("targets", nargs="+", metavar="TARGET")

    VERBS = [Verb("name", "one line of help", _configure, run="graphbuild.rules.python.module:run")]
"""

from __future__ import annotations

import argparse

from graphbuild.api import Verb


def _configure_layers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ENV", help="an environment target, e.g. //envs:prod")


VERBS: list[Verb] = [
    Verb("layers", "show how an environment's packages are planned into image layers", _configure_layers,
         run="graphbuild.rules.python.layers_report:run_layers",
         description="Print the image layers planned for an environment: each layer, its packages, the "
                     "environments sharing it and why it is grouped so (from the locks; nothing is built)."),
]
