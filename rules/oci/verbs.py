"""The verbs of `graphbuild.rules.oci` (declared here, run elsewhere: keep this module light).

Example::

    def _configure(parser):
        parser.add_argument("targets", nargs="+", metavar="TARGET")

    VERBS = [Verb("name", "one line of help", _configure, run="graphbuild.rules.oci.module:run")]
"""

from __future__ import annotations

from graphbuild.api import Verb

VERBS: list[Verb] = []
#: what the engine may ask this package for (`graphbuild.verbs.HOOKS`)
HOOKS = {"ci.pin_job_image": "graphbuild.rules.oci.pinning:pinned_job_image"}
