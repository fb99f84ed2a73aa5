"""Target Python/platform pairs and which wheel of a locked package fits them best."""

from __future__ import annotations

import re
from functools import lru_cache

from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import parse_wheel_filename

_PLATFORM_RE = re.compile(r"^(x86_64|aarch64)-manylinux_2_(\d+)$")
_LEGACY = {"x86_64": {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"},
           "aarch64": {17: "manylinux2014"}}


def check_platform(text: str) -> str | None:
    """An error message for an unsupported platform string, or None."""
    if not _PLATFORM_RE.match(text):
        return f"platform {text!r} is not supported: use ARCH-manylinux_2_MINOR, e.g. x86_64-manylinux_2_36"
    return None


def check_python(text: str) -> str | None:
    if not re.fullmatch(r"3\.\d{1,2}", text):
        return f"python {text!r} must be a MAJOR.MINOR version such as 3.11"
    return None


def platform_tags(platform: str) -> list[str]:
    match = _PLATFORM_RE.match(platform)
    assert match, platform
    arch, glibc = match.group(1), int(match.group(2))
    tags = []
    for minor in range(glibc, 4, -1):
        tags.append(f"manylinux_2_{minor}_{arch}")
        if minor in _LEGACY.get(arch, {}):
            tags.append(f"{_LEGACY[arch][minor]}_{arch}")
    return tags


def supported_tags(python: str, platform: str) -> list[Tag]:
    """Tags in preference order for CPython `python` on `platform` (most specific first)."""
    version = tuple(int(p) for p in python.split("."))
    platforms = platform_tags(platform)
    interpreter = f"cp{version[0]}{version[1]}"
    return [*cpython_tags(version, platforms=platforms), *compatible_tags(version, interpreter, platforms)]


@lru_cache(maxsize=64)
def _ranking(python: str, platform: str) -> dict[Tag, int]:
    # a few milliseconds to make, asked for every locked package of every environment planned
    return {tag: i for i, tag in enumerate(supported_tags(python, platform))}


def best_wheel(wheels: list[dict], python: str, platform: str) -> dict | None:
    """The locked wheel entry the target interpreter prefers, or None (build from the sdist)."""
    ranking = _ranking(python, platform)
    best, best_rank = None, len(ranking)
    for wheel in wheels:
        filename = wheel.get("name") or wheel["url"].rsplit("/", 1)[-1]
        _, _, _, tags = parse_wheel_filename(filename)
        rank = min((ranking[t] for t in tags if t in ranking), default=len(ranking))
        if rank < best_rank:
            best, best_rank = wheel, rank
    return best
