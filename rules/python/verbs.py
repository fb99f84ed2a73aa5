"""The verbs of `graphbuild.rules.python` (declared here, run elsewhere: keep this module light).

`matrix` and `pick` run in `graphbuild.rules.python.matrix_verbs`.
"""

from __future__ import annotations

import argparse

from graphbuild.api import Verb

_MATRIX = "test every library in every environment: pass, fail, incompatible or not applicable"
_PICK = "choose the smallest environment that can run a workload (requirements, a library, a script)"


def _configure_matrix(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("environments", nargs="*", metavar="ENV",
                        help="environments (labels or patterns; default: every environment of the workspace)")
    parser.add_argument("--libraries", nargs="+", metavar="LIB", default=None,
                        help="libraries (labels or patterns; default: every library of the workspace)")
    parser.add_argument("--html", metavar="FILE", help="also write the matrix as an HTML grid to FILE")
    parser.add_argument("--junit-dir", metavar="DIR", help="write one JUnit report per environment into DIR")


def _configure_pick(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--requires", nargs="+", metavar="REQ", default=[],
                        help="PEP 508 requirements the workload needs, e.g. 'pandas>=2' pyarrow")
    parser.add_argument("--library", metavar="LIB",
                        help="an in-repo library: its requirements, and its tests must pass there")
    parser.add_argument("--script", metavar="FILE",
                        help="a Python file: its top-level imports, mapped to the packages that install them")


VERBS: list[Verb] = [
    Verb("matrix", _MATRIX, _configure_matrix, run="graphbuild.rules.python.matrix_verbs:run_matrix",
         description=_MATRIX + ". A library an environment does not list is decided from the environment's lock, "
         "then tested in a probe image (the library installed over the environment's image; never pushed). Exit 0 "
         "when every cell was decided (fail cells included), 1 when some could not be (an engine error)."),
    Verb("pick", _PICK, _configure_pick, run="graphbuild.rules.python.matrix_verbs:run_pick",
         description=_PICK + ". Smallest: fewest layers above the shared core, then fewest installed bytes, then "
         "name. Exit 0 with the chosen environment, 1 when none qualifies (with what the nearest ones miss)."),
]
