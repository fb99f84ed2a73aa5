"""The verbs the built-in rule packages add to `graphbuild` (see `graphbuild.verbs`).

Each rule package lists its own in a light module (`python/verbs.py`, `oci/verbs.py`: no
import heavier than `graphbuild.api`'s `Verb`); add a package's list (and its `HOOKS`) here.
"""

from __future__ import annotations

from graphbuild.api import Verb
from graphbuild.rules.oci.verbs import HOOKS as OCI_HOOKS
from graphbuild.rules.oci.verbs import VERBS as OCI_VERBS
from graphbuild.rules.python.verbs import HOOKS as PYTHON_HOOKS
from graphbuild.rules.python.verbs import VERBS as PYTHON_VERBS

VERBS: list[Verb] = [*PYTHON_VERBS, *OCI_VERBS]
#: name -> "module:function" of what the engine may ask for (`graphbuild.verbs.HOOKS`)
HOOKS: dict[str, str] = {**PYTHON_HOOKS, **OCI_HOOKS}
