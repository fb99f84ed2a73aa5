"""Bazel-style labels (`//envs:prod`, `:prod`, `//envs`) and target patterns (`//envs/...`)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from graphbuild.errors import UsageError

_PACKAGE_RE = re.compile(r"^(?:[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*)?$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.+\-@/=,~]+$")


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
        if text.startswith("//"):
            body = text[2:]
            if ":" in body:
                pkg, name = body.split(":", 1)
            else:
                pkg = body
                name = body.rsplit("/", 1)[-1] if body else ""
        elif text.startswith(":"):
            if package is None:
                raise LabelError(f"relative label {text!r} needs a package", hint=f"write //PACKAGE{text}")
            pkg, name = package, text[1:]
        elif text.startswith("@"):
            raise LabelError(f"external repositories are not supported: {text!r}")
        else:
            if package is None:
                raise LabelError(f"{text!r} is not a label", hint="labels look like //envs:prod or :prod")
            pkg, name = package, text
        pkg = pkg.rstrip("/")
        if not _PACKAGE_RE.match(pkg) or ".." in pkg.split("/"):
            raise LabelError(f"invalid package name in label {text!r}")
        if not name or not _NAME_RE.match(name) or name.startswith("/"):
            raise LabelError(f"invalid target name in label {text!r}", hint="names use letters, digits and _-.+@")
        return Label(pkg, name)


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
            Label.parse(f"//{pkg}:x")  # validates the package part
            return Pattern(pkg, None, recursive=True)
        if body.endswith(":all") or body.endswith(":*"):
            pkg = body.rsplit(":", 1)[0]
            Label.parse(f"//{pkg}:x")
            return Pattern(pkg, None)
        label = Label.parse(text)
        return Pattern(label.package, label.name)
