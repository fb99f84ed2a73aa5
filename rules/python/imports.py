"""Which distributions a Python script needs: its top-level imports, mapped through the
installed wheels' own metadata.

`script_imports` reads the module-level `import` statements of a file (not those inside
functions or classes, not relative ones, not those guarded by `except ImportError`).
`index_modules` (a node per environment) reads the environment's layers and maps every
importable top-level name to the distribution that installs it: from each `.dist-info`'s
`top_level.txt` when the wheel has one, else from its `RECORD` (the files it installed).
No hand-kept table: `import sklearn` is scikit-learn because scikit-learn's wheel says so.
"""

from __future__ import annotations

import ast
import csv
import io
import json
import re
import sys
import tarfile
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name

from graphbuild.api import ExecContext, Location, SpecError, executor

_SITE = re.compile(r"(?:^|/)lib/python\d+\.\d+/site-packages/(.*)$")
_NOT_MODULES = ("__pycache__", "..", ".")


def script_imports(path: Path, shown: str) -> dict[str, int]:
    """Top-level module names the script imports -> the line of the first import; the
    standard library's are left out. A file that does not parse is a spec error."""
    try:
        source = path.read_bytes()
    except OSError as err:
        raise SpecError(f"cannot read script {shown}: {err.strerror}", hint="pass a Python file: --script job.py") \
            from None
    try:
        tree = ast.parse(source, filename=shown)
    except (SyntaxError, ValueError) as err:
        line = getattr(err, "lineno", None) or 0
        message = getattr(err, "msg", None) or str(err)
        raise SpecError(f"script {shown} is not valid Python: {message}", location=Location(shown, line),
                        hint="`--script` reads the file's imports; fix the syntax error first") from None
    found: dict[str, int] = {}
    for node in _module_level(tree.body):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module] if node.module and not node.level else []
        for name in names:
            top = name.split(".", 1)[0]
            if top and top not in sys.stdlib_module_names and top != "__future__":
                found.setdefault(top, node.lineno)
    return found


def _module_level(body: list[ast.stmt]):
    """Import statements executed when the module loads (also under `if`, `with`, `try`,
    except those an `except ImportError` makes optional)."""
    for node in body:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If):
            yield from _module_level(node.body)
            yield from _module_level(node.orelse)
        elif isinstance(node, ast.With):
            yield from _module_level(node.body)
        elif isinstance(node, ast.Try):
            if not any(_catches_import_error(h) for h in node.handlers):
                yield from _module_level(node.body)
            yield from _module_level(node.orelse)
            yield from _module_level(node.finalbody)


def _catches_import_error(handler: ast.ExceptHandler) -> bool:
    names = {"ImportError", "ModuleNotFoundError", "Exception", "BaseException"}
    kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return handler.type is None or any(isinstance(k, ast.Name) and k.id in names for k in kinds)


@executor("python.modules", version=2)
def index_modules(ctx: ExecContext) -> dict[str, Any]:
    """Keyed inputs: `layers` (the environment's shipped layer tars). Output `modules.json`:
    {"modules": {top-level name: [distribution, ...]}, "distributions": {name: version},
    "installed_bytes": the size of the files the layers install}."""
    modules: dict[str, set[str]] = {}
    versions: dict[str, str] = {}
    total = 0
    for layer in ctx.inputs["layers"]:
        with tarfile.open(layer) as tar:
            members = tar.getmembers()
            total += sum(m.size for m in members if m.isfile())
            for member in members:
                match = _SITE.search(member.name.lstrip("./"))
                if not match or not member.isfile():
                    continue
                parts = match.group(1).split("/")
                if len(parts) != 2 or not parts[0].endswith(".dist-info"):
                    continue
                if parts[1] == "METADATA":
                    name, version = _name_version(tar.extractfile(member).read().decode(errors="replace"))
                    versions[canonicalize_name(name) if name else parts[0]] = version
            for dist_info, meta in _dist_infos(tar, members).items():
                for top in meta["top_level"]:
                    modules.setdefault(top, set()).add(meta["name"] or dist_info)
    document = {"modules": {k: sorted(v) for k, v in sorted(modules.items())},
                "distributions": dict(sorted(versions.items())), "installed_bytes": total}
    ctx.out("modules.json").write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return {"modules": len(modules), "distributions": len(versions), "installed_bytes": total}


def _dist_infos(tar: tarfile.TarFile, members: list[tarfile.TarInfo]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    by_name = {m.name.lstrip("./"): m for m in members if m.isfile()}
    for path, member in by_name.items():
        match = _SITE.search(path)
        if not match:
            continue
        parts = match.group(1).split("/")
        if len(parts) != 2 or not parts[0].endswith(".dist-info") or parts[1] != "METADATA":
            continue
        base = path[: -len("METADATA")]
        name, _ = _name_version(tar.extractfile(member).read().decode(errors="replace"))
        top_level = by_name.get(base + "top_level.txt")
        if top_level is not None:
            names = {line.strip().split("/", 1)[0] for line in
                     tar.extractfile(top_level).read().decode(errors="replace").splitlines() if line.strip()}
        else:
            record = by_name.get(base + "RECORD")
            text = tar.extractfile(record).read().decode(errors="replace") if record is not None else ""
            names = {_top_of(row[0]) for row in csv.reader(io.StringIO(text)) if row}
        # only names `import` can reach (a hostile top_level.txt may say anything)
        found[parts[0]] = {"name": canonicalize_name(name) if name else "",
                           "top_level": sorted(n for n in names if n.isidentifier())}
    return found


def _top_of(path: str) -> str:
    first = path.split("/", 1)[0]
    if first.endswith((".dist-info", ".data", ".pth")) or first in _NOT_MODULES or first.startswith("../"):
        return ""
    if "/" not in path:  # a module file at the top: name.py, name.cpython-311-x86_64-linux-gnu.so
        if not first.endswith((".py", ".so", ".pyd")):
            return ""
        return first.split(".", 1)[0]
    return first


def _name_version(metadata: str) -> tuple[str, str]:
    name = version = ""
    for line in metadata.splitlines():
        if not line.strip():
            break  # the headers end at the first blank line
        key, _, value = line.partition(":")
        if key.lower() == "name" and not name:
            name = value.strip()
        elif key.lower() == "version" and not version:
            version = value.strip()
    return name, version
