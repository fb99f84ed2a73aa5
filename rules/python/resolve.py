"""Resolving requirement sets with `uv pip compile` for a target Python and platform."""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name

from graphbuild.rules.python.uv import run_uv


@dataclass
class Resolution:
    pins: dict[str, str]  # canonical name -> version (index packages only)
    parents: dict[str, set[str]]  # canonical name -> names (or "-r file") that pulled it in, sources too


class ResolutionError(Exception):
    def __init__(self, explanation: str):
        super().__init__(explanation)
        self.explanation = explanation


_PIN_RE = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?(?:==([^\s#;]+)| @ \S+)")


def _common(python: str, platform: str) -> list[str]:
    args = ["--python-version", python, "--python-platform", platform, "--no-header", "--quiet"]
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == python:
        # the interpreter uv builds sdists' metadata with: this one, rather than a search of the
        # PATH (through version managers' shims, that search alone costs a call 0.15 s)
        args += ["--python", sys.executable]
    return args


def resolve(groups: dict[str, list[str]], constraints: dict[str, str], *, python: str, platform: str,
            workdir: Path, sources: dict[str, Path] | None = None, env: dict[str, str] | None = None,
            preferences: dict[str, str] | None = None, first_group: int = 0) -> Resolution:
    """Resolve the union of requirement groups (one `-r group-N.in` file each, numbered from
    `first_group`), pinned to `constraints`.

    `sources` (name -> project directory) are distributions built from source, never taken
    from the index: whoever depends on one gets that build, if its version satisfies them.
    `preferences` (name -> version) are kept where the requirements still allow them, as uv
    keeps the pins of an existing output file (`uv pip compile -o`)."""
    output = workdir / "resolved.txt"
    output.write_text("".join(f"{name}=={version}\n" for name, version in sorted((preferences or {}).items())))
    args = ["pip", "compile", *_write_groups(groups, workdir, first_group), "--annotation-style", "line",
            "-o", output.name, *_common(python, platform)]
    args += _constraint_args(constraints, workdir, sources)
    proc = run_uv(args, cwd=workdir, env=env)
    if proc.returncode != 0:
        raise ResolutionError(_explanation(proc.stderr))
    pins: dict[str, str] = {}
    parents: dict[str, set[str]] = {}
    for line in output.read_text().splitlines():
        match = _PIN_RE.match(line)
        if not match:
            continue
        name = canonicalize_name(match.group(1))
        if match.group(2):  # `name @ url`: one of `sources`, not a pin
            pins[name] = match.group(2)
        via = line.split("# via", 1)[1] if "# via" in line else ""
        parents[name] = {p.strip() if p.strip().startswith("-") else canonicalize_name(p.strip())
                         for p in via.split(",") if p.strip()}
    return Resolution(pins, parents)


def pylock(pins: dict[str, str], *, python: str, platform: str, workdir: Path, env: dict[str, str] | None = None,
           offline: bool = False) -> str:
    """The PEP 751 document uv writes for exactly `pins` (files, hashes, URLs, sizes), each taken
    as it is (`--no-deps`: they were resolved already).

    `offline`: every pin was just resolved by this process, so uv's cache holds the index
    pages it needs: no network (the index is asked only if something is missing)."""
    output = workdir / "pylock.toml"
    output.unlink(missing_ok=True)
    requirements = workdir / "pins.txt"
    requirements.write_text("".join(f"{name}=={version}\n" for name, version in sorted(pins.items())))
    args = ["pip", "compile", requirements.name, "--no-deps", "--format", "pylock.toml", "-o", output.name,
            *_common(python, platform)]
    proc = run_uv([*args, "--offline"], cwd=workdir, env=env) if offline else None
    if proc is None or proc.returncode != 0:
        output.unlink(missing_ok=True)
        proc = run_uv(args, cwd=workdir, env=env)
    if proc.returncode != 0:
        raise ResolutionError(_explanation(proc.stderr))
    return output.read_text()


def _write_groups(groups: dict[str, list[str]], workdir: Path, first: int = 0) -> list[str]:
    files = []
    for index, (group, requirements) in enumerate(groups.items(), first):
        path = workdir / f"group-{index}.in"
        path.write_text(f"# {group}\n" + "".join(r + "\n" for r in requirements))
        files.append(path.name)
    return files


def _constraint_args(constraints: dict[str, str], workdir: Path, sources: dict[str, Path] | None = None) -> list[str]:
    if not constraints and not sources:
        return []
    path = workdir / "constraints.txt"
    lines = [f"{name}=={version}\n" for name, version in sorted(constraints.items())]
    lines += [f"{name} @ {directory.resolve().as_uri()}\n" for name, directory in sorted((sources or {}).items())]
    path.write_text("".join(lines))
    return ["-c", path.name]


def _explanation(stderr: str) -> str:
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-12:]) or "uv failed without a message"
