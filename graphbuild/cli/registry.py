"""Every verb of `graphbuild`: the engine's, the built-in rule packages', the workspace's.

Declarations only (see `graphbuild.verbs`): nothing heavier than argparse is imported here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from graphbuild.verbs import HOOKS as HOOKS_KNOWN
from graphbuild.verbs import Verb, collect, imported


def engine_verbs() -> list[Verb]:
    from graphbuild.cli import affected, build, ci, clean, meta, query, why

    return [*build.VERBS, *query.VERBS, *why.VERBS, *affected.VERBS, *ci.VERBS, *clean.VERBS, *meta.VERBS]


def rule_verbs() -> list[Verb]:
    from graphbuild.rules.verbs import VERBS

    return list(VERBS)


def rule_hook(name: str) -> Any:
    """The function a built-in rule package offers for hook `name` (`graphbuild.verbs.HOOKS`)."""
    from graphbuild.rules.verbs import HOOKS

    if name not in HOOKS_KNOWN or name not in HOOKS:
        raise LookupError(f"no rule package offers hook {name!r}")
    return imported(HOOKS[name], f"hook {name!r}")


def all_verbs(start: Path | None) -> list[Verb]:
    """The engine's verbs, then the rule packages', then those of the workspace containing
    `start` (None: no workspace is looked for). A name taken twice is an error."""
    sources = [engine_verbs(), rule_verbs()]
    engine_names = {verb.name for verbs in sources for verb in verbs}
    if start is not None:
        from graphbuild.errors import SpecError
        from graphbuild.loading.verb_plugins import MARKER, workspace_verbs

        own = workspace_verbs(start)
        for verb in own:
            if verb.name in engine_names:
                raise SpecError(f"a workspace plugin declares verb '{verb.name}', which graphbuild already has",
                                location=None, hint=f"give it another name ([plugins] verbs of {MARKER})")
        sources.append(own)
    return collect(sources)
