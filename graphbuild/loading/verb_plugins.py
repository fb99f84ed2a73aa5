"""Verbs a workspace adds to `graphbuild`: Python files named in graphbuild.toml,

    [plugins]
    verbs = ["tools/verbs.py"]

each defining a list `VERBS` of `graphbuild.api.Verb`. They are read before the command line
is parsed (so `graphbuild --help` lists them), hence without the full configuration check:
this module imports only the standard library. Like rule plugins they are trusted code of the
workspace and must be `.py` files inside it.
"""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

from graphbuild.errors import Location, SpecError
from graphbuild.verbs import Verb

MARKER = "graphbuild.toml"


def find_root(start: Path) -> Path | None:
    start = start.resolve()
    for directory in (start, *start.parents):
        if (directory / MARKER).is_file():
            return directory
    return None


def workspace_verbs(start: Path) -> list[Verb]:
    """The verbs of the workspace containing `start` (none outside a workspace)."""
    root = find_root(start)
    if root is None:
        return []
    try:
        text = (root / MARKER).read_text()
    except (OSError, UnicodeDecodeError):
        return []  # said precisely when the verb reads the workspace
    if "verbs" not in text:
        return []  # the usual case, without parsing TOML at start-up
    import tomllib

    try:
        config = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return []
    declared = config.get("plugins", {}).get("verbs", []) if isinstance(config.get("plugins"), dict) else []
    if not declared:
        return []
    at = Location(MARKER, next((n for n, line in enumerate(text.splitlines(), 1)
                                if re.match(r"\s*verbs\s*=", line)), 0))
    if not isinstance(declared, list) or not all(isinstance(e, str) for e in declared):
        raise SpecError("[plugins] verbs must be a list of paths", location=at, hint='verbs = ["tools/verbs.py"]')
    verbs: list[Verb] = []
    for entry in declared:
        verbs.extend(_import(root, entry, at))
    return verbs


def _import(root: Path, entry: str, at: Location) -> list[Verb]:
    real_root = root.resolve()
    path = (real_root / entry)
    if Path(entry).is_absolute() or ".." in Path(entry).parts:
        raise SpecError(f"verb plugin {entry!r} must be a path inside the workspace, relative to its root",
                        location=at)
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise SpecError(f"verb plugin {entry} does not exist", location=at,
                        hint="plugins are paths relative to the workspace root, e.g. \"tools/verbs.py\"") from None
    if not real.is_relative_to(real_root) or not real.is_file() or real.suffix != ".py":
        raise SpecError(f"verb plugin {entry} is not a Python file (.py) inside the workspace", location=at)
    rel = real.relative_to(real_root).as_posix()
    name = "graphbuild_verbs_" + re.sub(r"\W", "_", rel)
    spec = importlib.util.spec_from_file_location(name, real)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(name, None)
        raise SpecError(f"verb plugin {rel}: syntax error: {err.msg}",
                        location=Location(rel, err.lineno or 0, err.offset or 0)) from None
    except Exception as err:  # the plugin's own code failed while imported
        sys.modules.pop(name, None)
        raise SpecError(f"verb plugin {rel} failed while imported: {type(err).__name__}: {err}",
                        location=Location(rel)) from None
    verbs = getattr(module, "VERBS", None)
    if not isinstance(verbs, list | tuple) or not all(isinstance(v, Verb) for v in verbs):
        raise SpecError(f"verb plugin {rel} must define VERBS, a list of graphbuild.api.Verb", location=Location(rel),
                        hint='VERBS = [Verb("hello", "say hello", configure, run)]')
    return list(verbs)
