"""The two error families of graphbuild and the location every user error carries.

Definition errors (bad spec, bad usage) exit with 2 before anything runs; a node that
fails during execution makes the build exit with 1.  Nothing here prints: the CLI renders.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_BUILD_FAILED = 1
EXIT_BAD_INPUT = 2


class Location:
    """A place in a workspace file; `path` is relative to the workspace root.

    Immutable, compared and ordered as (path, line, col). A plain class rather than a
    dataclass: every command imports this module, `graphbuild --help` included, and the
    dataclasses module costs that start-up more than all of argparse."""

    __slots__ = ("col", "line", "path")
    path: str
    line: int
    col: int

    def __init__(self, path: str, line: int = 0, col: int = 0):
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "line", line)
        object.__setattr__(self, "col", col)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Location is immutable (cannot set {name})")

    def _key(self) -> tuple[str, int, int]:
        return (self.path, self.line, self.col)

    def __eq__(self, other: object) -> bool:
        return self._key() == other._key() if isinstance(other, Location) else NotImplemented

    def __lt__(self, other: Location) -> bool:
        return self._key() < other._key() if isinstance(other, Location) else NotImplemented

    def __le__(self, other: Location) -> bool:
        return self._key() <= other._key() if isinstance(other, Location) else NotImplemented

    def __gt__(self, other: Location) -> bool:
        return self._key() > other._key() if isinstance(other, Location) else NotImplemented

    def __ge__(self, other: Location) -> bool:
        return self._key() >= other._key() if isinstance(other, Location) else NotImplemented

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Location(path={self.path!r}, line={self.line!r}, col={self.col!r})"

    def __reduce__(self) -> tuple[type, tuple[str, int, int]]:
        return (Location, self._key())

    def __str__(self) -> str:
        if not self.line:
            return self.path
        if not self.col:
            return f"{self.path}:{self.line}"
        return f"{self.path}:{self.line}:{self.col}"


class GraphbuildError(Exception):
    """Root of every error graphbuild reports to a user."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, location: Location | None = None, hint: str | None = None):
        super().__init__(message)
        self.message = message
        self.location = location
        self.hint = hint
        self.target: object | None = None  # the target whose analysis raised it, when known

    def render(self) -> str:
        text = f"{self.location}: {self.message}" if self.location else self.message
        if self.hint:
            text += f"\n  hint: {self.hint}"
        return text

    def to_json(self) -> dict:
        return {
            "message": self.message,
            "location": str(self.location) if self.location else None,
            "hint": self.hint,
        }


class SpecError(GraphbuildError):
    """A BUILD.envs file, a loaded rule file or a lock file says something invalid."""


class StaleLock(SpecError):
    """A file the spec derives and the repository checks in (a lock file) is missing, out of
    date or damaged: `graphbuild lock` (or `--relock`) writes it again. Only this error makes
    `--relock` relock a target; any other spec error is reported as it is."""


class UsageError(GraphbuildError):
    """The command line asks for something that cannot be done."""


class CacheError(GraphbuildError):
    """The cache directory cannot be used (unwritable, not a directory...)."""


class SpecErrors(SpecError):
    """Several spec errors found together (all of one file, or all of one analysis)."""

    def __init__(self, errors: list[GraphbuildError]):
        self.errors = errors
        super().__init__(f"{len(errors)} errors")

    def render(self) -> str:
        return "\n".join(err.render() for err in self.errors)

    def to_json(self) -> dict:
        # same keys as a single error (no one location for several), plus each error
        return {"message": self.message, "location": None, "hint": None,
                "errors": [err.to_json() for err in self.errors]}


def raise_collected(errors: list[GraphbuildError]) -> None:
    """Raise the errors collected by a validation pass: one alone, or all together."""
    if len(errors) == 1:
        raise errors[0]
    if errors:
        raise SpecErrors(errors)


def did_you_mean(word: str, choices: list[str] | set[str], *, prefix: str = "did you mean") -> str | None:
    """A suggestion naming the closest choices, or None when nothing is close."""
    import difflib

    close = difflib.get_close_matches(word, sorted(choices), n=3, cutoff=0.6)
    if not close:
        return None
    return f"{prefix} " + " or ".join(repr(c) for c in close) + "?"
