"""Bazel-style labels (`//envs:prod`, `:prod`, `//envs`) and target patterns (`//envs/...`).

The grammar (the README's "Labels" section documents it for users): a package name is a
`/`-separated path of *components*; a target name is one component (a rule's `name`) or,
in labels naming files (`load()`), several. A component is 1 to `MAX_COMPONENT` characters
from `A-Z a-z 0-9 _ . + - @ = , ~`, starts with a letter, a digit or `_` (so never `.`,
`..`, `-x` or a hidden file), does not end with `.`, and is not a name Windows reserves for
a device (`CON`, `NUL`, `COM1`, ... with or without an extension). Names become file and
directory names (lock files, `graphbuild-out/`, image tags): the grammar keeps them portable
and short enough for any file system.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from graphbuild.errors import UsageError

#: Longest component (directory or target name): far below file systems' 255 bytes, leaving
#: room for what names are embedded in (`pylock.<name>.toml`, temporary suffixes).
MAX_COMPONENT = 128
#: Longest package path.
MAX_PACKAGE = 1024

_COMPONENT_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+\-@=,~]*")
_CHARS_RE = re.compile(r"[A-Za-z0-9_.+\-@=,~]*")
_WINDOWS_DEVICES = frozenset({"con", "prn", "aux", "nul", *(f"com{i}" for i in range(10)),
                              *(f"lpt{i}" for i in range(10))})

GRAMMAR_HINT = ("names use letters, digits and _ . + - @ = , ~, start with a letter, a digit or _, "
                f"and are at most {MAX_COMPONENT} characters per '/'-separated part (see the README, Labels)")


@lru_cache(maxsize=1 << 16)  # a pure function of the text; the same names recur in every label
def component_problem(part: str) -> str | None:
    """Why `part` is not a valid package directory or target name component (None: it is)."""
    if not part:
        return "it has an empty part (a leading, trailing or doubled '/')"
    if len(part) > MAX_COMPONENT:
        return f"{part[:20]!r}... is {len(part)} characters long (at most {MAX_COMPONENT})"
    if part in (".", ".."):
        return f"{part!r} is a relative path, not a name"
    if not _CHARS_RE.fullmatch(part):
        bad = sorted({c for c in part if not _CHARS_RE.fullmatch(c)})
        return f"{part!r} contains {', '.join(repr(c) for c in bad)}"
    if not _COMPONENT_RE.fullmatch(part):
        return f"{part!r} starts with {part[0]!r}"
    if part.endswith("."):
        return f"{part!r} ends with '.'"
    if part.split(".", 1)[0].lower() in _WINDOWS_DEVICES:
        return f"{part!r} is a device name on Windows"
    return None


def target_name_problem(name: str, *, allow_slash: bool = False) -> str | None:
    """Why `name` is not a valid target name (None: it is). A rule's `name` is one component;
    a label may name a file under its package (`//tools:sub/defs.envs`) when `allow_slash`."""
    if not name:
        return "it is empty"
    if not allow_slash and "/" in name:
        return "it contains '/'"
    for part in name.split("/"):
        problem = component_problem(part)
        if problem:
            return problem
    return None


def package_problem(package: str) -> str | None:
    """Why `package` is not a valid package name (None: it is; "" is the root package)."""
    if package == "":
        return None
    if len(package) > MAX_PACKAGE:
        return f"it is {len(package)} characters long (at most {MAX_PACKAGE})"
    for part in package.split("/"):
        problem = component_problem(part)
        if problem:
            return problem
    return None


class LabelError(UsageError):
    """A string that is not a valid label or pattern."""


@dataclass(frozen=True, order=True, slots=True)
class Label:
    """An absolute target label: package path (``""`` for the root) and target name."""

    package: str
    name: str

    def __str__(self) -> str:
        return f"//{self.package}:{self.name}"

    @staticmethod
    def parse(text: str, *, package: str | None = None) -> Label:
        """Parse `text`; relative forms (`:x`) need the `package` they are written in."""
        if not isinstance(text, str):
            raise LabelError(f"a label is a string, not {type(text).__name__}")
        shown = _shown(text)
        if text.startswith("//"):
            body = text[2:]
            if ":" in body:
                pkg, name = body.split(":", 1)
            else:
                pkg = body
                name = body.rsplit("/", 1)[-1] if body else ""
        elif text.startswith(":"):
            if package is None:
                raise LabelError(f"relative label {shown} needs a package", hint=f"write //PACKAGE{text}")
            pkg, name = package, text[1:]
        elif text.startswith("@"):
            raise LabelError(f"external repositories are not supported: {shown}")
        else:
            if package is None:
                raise LabelError(f"{shown} is not a label", hint="labels look like //envs:prod or :prod")
            pkg, name = package, text
        problem = package_problem(pkg)
        if problem:
            raise LabelError(f"invalid package name in label {shown}: {problem}", hint=GRAMMAR_HINT)
        if not name and text.startswith("//") and ":" not in text[2:]:
            raise LabelError(f"label {shown} names no target", hint="write //PACKAGE:NAME (//:NAME at the root)")
        problem = target_name_problem(name, allow_slash=True)
        if problem:
            raise LabelError(f"invalid target name in label {shown}: {problem}", hint=GRAMMAR_HINT)
        return Label(pkg, name)


def _shown(text: str) -> str:
    """A label as an error message shows it: quoted, and cut when it is absurdly long."""
    return repr(text) if len(text) <= 120 else repr(text[:100]) + f"... ({len(text)} characters)"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A target pattern: one label, every target of a package (`:all`) or of a subtree (`/...`)."""

    package: str
    name: str | None = None  # None with recursive=False means every target in `package`
    recursive: bool = False

    def __str__(self) -> str:
        if self.recursive:
            return f"//{self.package}/..." if self.package else "//..."
        if self.name is None:
            return f"//{self.package}:all"
        return str(Label(self.package, self.name))

    @staticmethod
    def parse(text: str, *, cwd_package: str = "") -> Pattern:
        """Parse a command-line pattern; `:x` and `x/...` resolve against `cwd_package`."""
        if not text.startswith("//") and not text.startswith(":"):
            text = "//" + "/".join(p for p in (cwd_package, text) if p)
        if text.startswith(":"):
            text = f"//{cwd_package}{text}"
        body = text[2:]
        if body == "..." or body.endswith("/..."):
            pkg = body[: -len("...")].rstrip("/")
            _check_package(pkg, text)
            return Pattern(pkg, None, recursive=True)
        if body.endswith(":all") or body.endswith(":*"):
            pkg = body.rsplit(":", 1)[0].rstrip("/")
            _check_package(pkg, text)
            return Pattern(pkg, None)
        if ":" not in body and body.endswith("/"):  # shell completion adds a slash to directories
            text = text.rstrip("/")
        label = Label.parse(text)
        return Pattern(label.package, label.name)


def _check_package(package: str, text: str) -> None:
    problem = package_problem(package)
    if problem:
        raise LabelError(f"invalid package name in pattern {_shown(text)}: {problem}", hint=GRAMMAR_HINT)
