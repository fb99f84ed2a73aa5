"""PEP 508 requirement strings, checked where they are written."""

from __future__ import annotations

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

__all__ = ["canonicalize_name", "located_names", "name_of", "parse"]

from graphbuild.api import Located, Location, SpecError


def parse(text: str, location: Location | None, *, owner: str) -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as err:
        detail = str(err).splitlines()[0]
        raise SpecError(f"{owner}: invalid requirement {text!r}: {detail}", location=location,
                        hint="requirements follow PEP 508, e.g. 'numpy>=1.26,<2' or 'requests==2.32.3'") from None


def name_of(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def located_names(requirements: tuple[Located, ...]) -> dict[str, Located]:
    """Canonical package name -> the requirement (and its line) that names it."""
    return {name_of(r.value): r for r in requirements}
