"""The verbs of `graphbuild.rules.python` (declared here, run elsewhere: keep this module light).

`matrix` and `pick` run in `graphbuild.rules.python.matrix_verbs`; `exec` and `try` in
`graphbuild.rules.python.workload_verbs`.
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


_EXEC = "run a command in an environment's image (built or reused first), the current directory at /work"
_TRY = "lock a candidate of an environment with packages moved forward, test every library in it, compare"


def _configure_exec(parser: argparse.ArgumentParser) -> None:
    parser.usage = "graphbuild exec [options] ENV -- CMD [ARGS...]"
    parser.add_argument("environment", metavar="ENV", nargs="?", help="an environment with a base (//envs:prod)")
    parser.add_argument("command", nargs="*", metavar="CMD", help="the command, after --")
    parser.add_argument("--workdir", metavar="DIR", help="the directory mounted read-only at /work "
                        "(default: the current directory)")
    parser.add_argument("--network", choices=("none", "host"), default="none",
                        help="none (default: only loopback) or host (the host's network)")
    parser.add_argument("--env", "-e", action="append", default=[], metavar="NAME[=VALUE]", dest="env_vars",
                        help="set a variable in the container (NAME alone passes the caller's value); repeatable")
    parser.add_argument("--pick", action="store_true", help="choose the environment as `graphbuild pick` does "
                        "(give no ENV): the smallest that can run the workload of --requires, --library, --script")
    parser.add_argument("--requires", nargs="+", metavar="REQ", default=[],
                        help="with --pick: PEP 508 requirements the command needs")
    parser.add_argument("--library", metavar="LIB", help="with --pick: a library the command needs")
    parser.add_argument("--script", metavar="FILE", help="with --pick: a Python file whose imports the command needs")


def _configure_try(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("environment", metavar="ENV", help="the environment (//envs:prod)")
    parser.add_argument("--upgrade", action="append", default=[], metavar="REQ",
                        help="a package to move forward: NAME (the newest the stack allows) or a requirement "
                             "(\"pandas>=2.2\"); repeatable")
    parser.add_argument("--all", action="store_true", dest="upgrade_all",
                        help="every package to the newest version the spec allows (what `lock --upgrade` "
                             "would take); what scheduled pipelines run")
    parser.add_argument("--adopt", action="store_true",
                        help="when nothing regressed, write the candidate's lock as the environment's")


def _configure_layers(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", metavar="ENV", help="an environment target, e.g. //envs:prod")



#: what the engine may ask this package for (`graphbuild.verbs.HOOKS`)
HOOKS = {"ci.upgrades": "graphbuild.rules.python.workload_verbs:run_upgrades_pipeline"}

VERBS: list[Verb] = [
    Verb("matrix", _MATRIX, _configure_matrix, run="graphbuild.rules.python.matrix_verbs:run_matrix",
         description=_MATRIX + ". A library an environment does not list is decided from the environment's lock, "
         "then tested in a probe image (the library installed over the environment's image; never pushed). Exit 0 "
         "when every cell was decided (fail cells included), 1 when some could not be (an engine error)."),
    Verb("pick", _PICK, _configure_pick, run="graphbuild.rules.python.matrix_verbs:run_pick",
         description=_PICK + ". Smallest: fewest layers above the shared core, then fewest installed bytes, then "
         "name. Exit 0 with the chosen environment, 1 when none qualifies (with what the nearest ones miss)."),
    Verb("exec", _EXEC, _configure_exec, run="graphbuild.rules.python.workload_verbs:run_exec",
         description=_EXEC + ". The command's exit status is graphbuild's (2 is also bad usage, 1 also a failed "
         "build of the image)."),
    Verb("try", _TRY, _configure_try, run="graphbuild.rules.python.workload_verbs:run_try",
         description=_TRY + ". The candidate (ENV.candidate) has a lock file of its own; the environment's is "
         "never written (unless --adopt, once nothing regressed). Exit 0 when nothing regressed, 1 when a "
         "library that passed fails now, 2 on bad input."),
    Verb("layers", "show how an environment's packages are planned into image layers", _configure_layers,
         run="graphbuild.rules.python.layers_report:run_layers",
         description="Print the image layers planned for an environment: each layer, its packages, the "
                     "environments sharing it and why it is grouped so (from the locks; nothing is built)."),
]
