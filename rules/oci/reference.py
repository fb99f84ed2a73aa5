"""Image references: `[HOST[:PORT]/]REPO[:TAG][@DIGEST]`; a reference without a host takes the
configured default registry (`GRAPHBUILD_REGISTRY` or `[push] registry` in graphbuild.toml)."""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

_REPO_RE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$")
_TAG_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
REGISTRY_ENV = "GRAPHBUILD_REGISTRY"


@dataclass(frozen=True)
class Reference:
    host: str | None
    repository: str
    tag: str | None = None
    digest: str | None = None

    def __str__(self) -> str:
        text = f"{self.host}/{self.repository}" if self.host else self.repository
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


def parse(text: str) -> Reference:
    """Parse a reference; raises ValueError with what is wrong."""
    rest, _, digest = text.partition("@")
    if digest and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError(f"invalid digest {digest!r}")
    host = None
    first, sep, remainder = rest.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        host, rest = first, remainder
    tag = None
    if ":" in rest.rsplit("/", 1)[-1]:
        rest, tag = rest.rsplit(":", 1)
        if not _TAG_RE.match(tag):
            raise ValueError(f"invalid tag {tag!r}")
    if not _REPO_RE.match(rest):
        raise ValueError(f"invalid repository name {rest!r} (lowercase letters, digits, '.', '_', '-', '/')")
    return Reference(host, rest, tag, digest or None)


def default_registry(workspace_root: Path) -> str | None:
    if os.environ.get(REGISTRY_ENV):
        return os.environ[REGISTRY_ENV]
    try:
        config = tomllib.loads((workspace_root / "graphbuild.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    return config.get("push", {}).get("registry")


def with_registry(ref: Reference, workspace_root: Path) -> Reference:
    if ref.host:
        return ref
    host = default_registry(workspace_root)
    if not host:
        raise LookupError(f"{ref} names no registry and none is configured: set {REGISTRY_ENV}=HOST[:PORT] "
                          "or [push] registry in graphbuild.toml")
    return Reference(host, ref.repository, ref.tag, ref.digest)
