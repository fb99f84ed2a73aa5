"""Image references, read the way Docker reads them.

`[REGISTRY/]REPOSITORY[:TAG][@sha256:DIGEST]`, where REGISTRY is `HOST[:PORT]` (a domain name,
an IPv4 address or a bracketed IPv6 address). Docker's rules for a name's first component: it
names the registry when it holds a `.` or a `:`, is `localhost`, or has capitals; otherwise the
whole name is a Docker Hub repository, and a one-component Docker Hub name is an official
image under `library/` (`python` -> `docker.io/library/python`). Docker Hub's legacy name
`index.docker.io` is the same registry as `docker.io`, whose API is served by its own endpoint
(`graphbuild.cache.registry.api_endpoint`).

Push destinations are read the same way except for one documented shorthand: a destination
without a registry goes to the configured registry (`GRAPHBUILD_REGISTRY` or `[push] registry`
in graphbuild.toml) when one is configured, and to Docker Hub, as `docker push` would send it,
when none is (`destination`).
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REGISTRY_ENV = "GRAPHBUILD_REGISTRY"
OFFICIAL_NAMESPACE = "library"
NAME_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|-+)"
_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_PATH_RE = re.compile(rf"{_COMPONENT}(?:/{_COMPONENT})*")
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])"
_DOMAIN_RE = re.compile(rf"{_HOST}(?::[0-9]+)?")
_TAG_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")
_DIGEST_RE = re.compile(r"sha256:[0-9a-f]{64}")
_ANY_DIGEST_RE = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}")
_IMAGE_ID_RE = re.compile(r"[a-f0-9]{64}")

FORM = "[HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]"


@cache
def docker_hub() -> str:
    """Docker Hub's registry name, as Docker spells it after normalisation. From the docker SDK,
    imported only when a reference needs it: importing it costs 0.09 s of every command's start."""
    from docker.auth import INDEX_NAME

    return INDEX_NAME


def reference_hint() -> str:
    return (f"a reference is {FORM}: e.g. localhost:5000/team/app:1.0, or python:3.11-slim "
            f"(Docker Hub's {docker_hub()}/{OFFICIAL_NAMESPACE}/python:3.11-slim)")


class InvalidReference(ValueError):
    """A reference Docker would refuse; the message says what is wrong, `hint` how to write one."""

    def __init__(self, message: str, hint: str | None = None):
        super().__init__(message)
        self.hint = hint if hint is not None else reference_hint()


@dataclass(frozen=True)
class Reference:
    """A normalised reference: `host` is the registry's name as Docker writes it (`docker.io`
    for Docker Hub, whatever it was called), `repository` its full path (`library/python`)."""

    host: str
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        return f"{self.host}/{self.repository}"

    @property
    def target(self) -> str:
        """What the registry API is asked for: the digest if any, else the tag (`latest` by default)."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        text = self.name
        if self.tag:
            text += f":{self.tag}"
        if self.digest:
            text += f"@{self.digest}"
        return text


@dataclass(frozen=True)
class _Parts:
    domain: str | None  # as written (None: no registry named)
    path: str
    tag: str | None
    digest: str | None


def _split(text: str) -> _Parts:
    if not isinstance(text, str) or not text:
        raise InvalidReference("the reference is empty")
    if "://" in text:
        raise InvalidReference(f"{text!r} has a URL scheme; a reference names no scheme (write "
                               f"{text.split('://', 1)[1]!r})")
    if text != text.strip() or any(c.isspace() for c in text):
        raise InvalidReference(f"{text!r} contains white space")
    rest, at, digest = text.partition("@")
    if at:
        if _DIGEST_RE.fullmatch(digest):
            pass
        elif _ANY_DIGEST_RE.fullmatch(digest) and not digest.startswith("sha256:"):
            raise InvalidReference(f"digest {digest.partition(':')[0]}:... of {rest!r}: only sha256 digests are "
                                   "supported (sha256: and 64 lowercase hex digits)")
        else:
            raise InvalidReference(f"invalid digest {digest!r} of {rest!r}: expected sha256: and 64 lowercase "
                                   "hex digits")
    domain = None
    first, slash, remainder = rest.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        domain, rest = first, remainder
        if not _DOMAIN_RE.fullmatch(domain):
            raise InvalidReference(f"invalid registry {domain!r} in {text!r}: expected HOST[:PORT], a domain "
                                   "name, an IPv4 address or a bracketed IPv6 address ([::1]:5000)")
    tag = None
    if ":" in rest:
        rest, _, tag = rest.partition(":")
        if not _TAG_RE.fullmatch(tag):
            raise InvalidReference(f"invalid tag {tag!r} in {text!r}: up to 128 letters, digits, '_', '.' and "
                                   "'-', not starting with '.' or '-'")
    if not rest:
        raise InvalidReference(f"{text!r} names no repository")
    if rest != rest.lower() and _PATH_RE.fullmatch(rest.lower()):
        raise InvalidReference(f"repository name {rest!r} in {text!r} must be lowercase (write {rest.lower()!r})")
    if not _PATH_RE.fullmatch(rest):
        raise InvalidReference(f"invalid repository name {rest!r} in {text!r}: components of lowercase letters "
                               "and digits, separated inside by '.', '_', '__' or '-', joined by '/'")
    if domain is None and _IMAGE_ID_RE.fullmatch(rest):
        raise InvalidReference(f"{text!r} is 64 hex digits, which Docker reserves for image IDs; it cannot be a "
                               "repository name")
    if len(domain or "") + 1 + len(rest) > NAME_MAX:
        raise InvalidReference(f"the name in {text!r} is longer than {NAME_MAX} characters")
    return _Parts(domain, rest, tag, digest or None)


def _normalised(domain: str, path: str, tag: str | None, digest: str | None) -> Reference:
    host = registry_name(domain)
    if "/" not in path and host == docker_hub():
        path = f"{OFFICIAL_NAMESPACE}/{path}"
    return Reference(host, path, tag, digest)


def registry_name(host: str) -> str:
    """A registry's name as Docker writes it: `index.docker.io` is `docker.io`."""
    if not host.startswith("index."):  # the only name the SDK's resolve_index_name changes
        return host
    from docker.auth import resolve_index_name

    return resolve_index_name(host)


def parse(text: str) -> Reference:
    """Parse and normalise a reference as Docker does: no registry named means Docker Hub.
    Raises InvalidReference saying what is wrong."""
    parts = _split(text)
    return _normalised(parts.domain or docker_hub(), parts.path, parts.tag, parts.digest)


# -- push destinations ----------------------------------------------------------------------


@dataclass(frozen=True)
class Destination:
    reference: Reference
    why: str  # which rule chose the registry, for messages ("named in `push`", ...)


def configured_registry(workspace_root: Path) -> tuple[str, str] | None:
    """(HOST[:PORT], where it is set) of the configured registry, or None."""
    if os.environ.get(REGISTRY_ENV):
        return os.environ[REGISTRY_ENV], REGISTRY_ENV
    try:
        config = tomllib.loads((workspace_root / "graphbuild.toml").read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return None
    push = config.get("push")
    value = push.get("registry") if isinstance(push, dict) else None
    return (value, "[push] registry of graphbuild.toml") if value else None


def destination(text: str, workspace_root: Path) -> Destination:
    """Where `push = text` goes. A destination naming its registry goes there (as Docker reads
    it); one without goes to the configured registry, else to Docker Hub as `docker push` would.
    Raises InvalidReference."""
    parts = _split(text)
    if parts.digest:
        raise InvalidReference(f"push destination {text!r} has a digest: a push names a tag (REPOSITORY[:TAG]); "
                               "the digest is the image's own", hint=f"write {text.partition('@')[0]!r}")
    if parts.domain is not None:
        return Destination(_normalised(parts.domain, parts.path, parts.tag, None), "the registry it names")
    configured = configured_registry(workspace_root)
    if configured is None:
        return Destination(_normalised(docker_hub(), parts.path, parts.tag, None),
                           f"no registry named and none configured: Docker Hub, as `docker push` would "
                           f"(set {REGISTRY_ENV}=HOST[:PORT] or [push] registry to send it elsewhere)")
    host, where = configured
    if not isinstance(host, str) or not _DOMAIN_RE.fullmatch(host):
        raise InvalidReference(f"{where} is {host!r}, not a registry: expected HOST[:PORT] (no scheme, no path)",
                               hint=f"e.g. {REGISTRY_ENV}=localhost:5000")
    return Destination(_normalised(host, parts.path, parts.tag, None), f"the configured registry ({where})")


__all__ = ["Destination", "InvalidReference", "Reference", "destination", "parse", "docker_hub", "registry_name"]
