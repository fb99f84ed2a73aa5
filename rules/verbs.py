"""The verbs the built-in rule packages add to `graphbuild` (see `graphbuild.verbs`).

Each rule package lists its own in a light module (`python/verbs.py`, `oci/verbs.py`: no
import heavier than `graphbuild.api`'s `Verb`); add a package's list here.
"""

from __future__ import annotations

from graphbuild.rules.oci.verbs import VERBS as OCI_VERBS
from graphbuild.rules.python.verbs import VERBS as PYTHON_VERBS
from graphbuild.verbs import Verb

VERBS: list[Verb] = [*PYTHON_VERBS, *OCI_VERBS]
