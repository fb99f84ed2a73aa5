"""Workspace plugins: rules written in Python, declared in graphbuild.toml.

    [plugins]
    rules = ["tools/stamp.py"]

BUILD files are untrusted data evaluated by a Starlark interpreter; rules are code.  A
workspace's own rules are therefore ordinary Python modules, imported by graphbuild like any
code a build runs, and declared once in graphbuild.toml (Pants' model: untrusted BUILD files,
trusted plugins).  Every rule (`@rule`) a plugin defines at its top level is in scope in
every BUILD file, under the rule's name, like the built-in ones.

A plugin is source: the sha256 of its file is stamped on every executor (`@executor`) it
defines, and so enters the key of every node those executors run.  Editing an executor's
body reruns its nodes without a version bump.
"""

from __future__ import annotations

import hashlib
import importlib.util
import keyword
import re
import sys
import traceback
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import xxhash

from graphbuild.errors import GraphbuildError, Location, SpecError, raise_collected
from graphbuild.loading.workspace import MARKER, Workspace, key_line
from graphbuild.nodes import defining_source
from graphbuild.rule import LazyRule, RuleDef

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Starlark's keywords and reserved words: a rule cannot be called by one of these names.
_STARLARK_RESERVED = frozenset(keyword.kwlist) | {"load", "fail"}


@dataclass(frozen=True)
class Plugin:
    path: str  # workspace-relative
    sha256: str
    rules: Mapping[str, RuleDef]


def load_plugins(workspace: Workspace, builtin: Mapping[str, RuleDef | LazyRule]) -> list[Plugin]:
    """Import the workspace's plugins; every problem is a spec error at graphbuild.toml's line."""
    declared = workspace.settings.plugins.rules
    if not declared:
        return []
    text = (workspace.root / MARKER).read_text()
    at = Location(MARKER, key_line(text, ("plugins", "rules")))
    plugins: list[Plugin] = []
    errors: list[GraphbuildError] = []
    owner: dict[str, str] = {}
    for entry in declared:
        try:
            plugin = _import(workspace, entry, at)
        except GraphbuildError as err:
            errors.append(err)
            continue
        for name in plugin.rules:
            if name in builtin:
                errors.append(SpecError(f"plugin {plugin.path} defines rule '{name}', which is a built-in rule",
                                        location=at, hint="give the rule another name (@rule(name = ...))"))
            elif name in owner:
                errors.append(SpecError(f"plugins {owner[name]} and {plugin.path} both define rule '{name}'",
                                        location=at, hint="give one of the rules another name"))
            owner[name] = plugin.path
        plugins.append(plugin)
    raise_collected(errors)
    return plugins


def _import(workspace: Workspace, entry: str, at: Location) -> Plugin:
    root = workspace.root.resolve()
    if Path(entry).is_absolute() or ".." in Path(entry).parts:
        raise SpecError(f"plugin {entry!r} must be a path inside the workspace, relative to its root", location=at)
    path = root / entry
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):
        raise SpecError(f"plugin {entry} does not exist", location=at,
                        hint="plugins are paths relative to the workspace root, e.g. \"tools/rules.py\"") from None
    if not real.is_relative_to(root):
        raise SpecError(f"plugin {entry} is a link to {real}, outside the workspace", location=at,
                        hint="plugins are the workspace's own code: keep them inside it")
    if not real.is_file() or real.suffix != ".py":
        raise SpecError(f"plugin {entry} is not a Python file (.py)", location=at)
    rel = real.relative_to(root).as_posix()
    source = real.read_bytes()
    sha256 = hashlib.sha256(source).hexdigest()
    # One module per workspace, file and content: a test session may load many workspaces.
    name = "graphbuild_plugin_" + re.sub(r"\W", "_", real.stem) + "_" + xxhash.xxh3_64_hexdigest(
        f"{real}\0{sha256}".encode())
    spec = importlib.util.spec_from_file_location(name, real)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    token = defining_source.set(f"{rel} sha256:{sha256[:16]}")
    try:
        spec.loader.exec_module(module)
    except SyntaxError as err:
        sys.modules.pop(name, None)
        raise SpecError(f"plugin {rel}: syntax error: {err.msg}", location=Location(rel, err.lineno or 0,
                        err.offset or 0)) from None
    except Exception as err:  # the plugin's own code failed while imported
        sys.modules.pop(name, None)
        line = next((f.lineno for f in reversed(traceback.extract_tb(err.__traceback__))
                     if Path(f.filename).resolve() == real), 0)
        raise SpecError(f"plugin {rel} failed while imported: {type(err).__name__}: {err}",
                        location=Location(rel, line or 0),
                        hint=f"plugins are Python modules; fix the error or remove {rel} from [plugins] in "
                             f"{MARKER}") from None
    finally:
        defining_source.reset(token)
    rules: dict[str, RuleDef] = {}
    for value in vars(module).values():
        if isinstance(value, RuleDef) and value.implementation.__module__ == name:
            if not _IDENTIFIER.match(value.name) or value.name in _STARLARK_RESERVED or value.name.startswith("_"):
                raise SpecError(f"plugin {rel}: rule name {value.name!r} cannot be called from a BUILD file",
                                location=Location(rel), hint="rule names are identifiers like my_rule")
            rules[value.name] = value
    if not rules:
        raise SpecError(f"plugin {rel} defines no rule", location=at,
                        hint="decorate a function with @rule(attrs=...) from graphbuild.api")
    return Plugin(rel, sha256, rules)
