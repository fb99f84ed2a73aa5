"""git's ignore rules, as git applies them (`gitignore(5)`, `dir.c`, `wildmatch.c`).

- Every `.gitignore` from the workspace root down to a path applies to it, the deepest first:
  the deepest file with a matching pattern decides, and within a file the last matching line
  (a `!` line re-includes). Then `$GIT_DIR/info/exclude`.
- A path inside an ignored directory is ignored, whatever a deeper `!` says; git never reads
  the `.gitignore` files of an ignored directory.
- Patterns: `#` comments, trailing spaces dropped unless escaped, `!` negates, a trailing `/`
  matches directories only, a pattern without any other `/` matches a name at any depth, one
  with a `/` is anchored to its `.gitignore`'s directory; `*`, `?` and `[...]` never match a
  `/`; `**/`, `/**` and `/**/` cross directories; `\\` escapes. Matching is on bytes and
  case-sensitive (core.ignorecase is false on Linux).

The user's global excludes file (`core.excludesFile`) is deliberately not read: it differs
between machines, and a build's inputs must not. `.gitignore` files that are symlinks are not
followed (git does not follow them either).

Tested against `git check-ignore` and `git ls-files` on generated trees
(tests/test_gitignore.py).
"""

from __future__ import annotations

import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILE = ".gitignore"

_CLASSES = {
    b"alnum": b"0-9A-Za-z", b"alpha": b"A-Za-z", b"blank": b" \\t", b"cntrl": b"\\x00-\\x1f\\x7f",
    b"digit": b"0-9", b"graph": b"\\x21-\\x7e", b"lower": b"a-z", b"print": b"\\x20-\\x7e",
    b"punct": b"!-/:-@\\[-`{-~", b"space": b"\\t\\n\\r ", b"upper": b"A-Z", b"xdigit": b"0-9A-Fa-f",
}


@dataclass(frozen=True, slots=True)
class Rule:
    """One pattern line of an ignore file."""

    regex: re.Pattern[bytes] | None  # None: a malformed pattern, which never matches
    negated: bool
    dir_only: bool
    basename: bool  # no `/` in the pattern: matched against the last path component

    def matches(self, name: bytes, basename: bytes, is_dir: bool) -> bool:
        if self.regex is None or (self.dir_only and not is_dir):
            return False
        return self.regex.fullmatch(basename if self.basename else name) is not None


def parse(data: bytes) -> list[Rule]:
    """The rules of one ignore file's contents."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    rules = []
    for raw in data.split(b"\n"):
        line = raw[:-1] if raw.endswith(b"\r") else raw
        if not line or line.startswith(b"#"):
            continue
        rule = parse_line(line)
        if rule is not None:
            rules.append(rule)
    return rules


def parse_line(line: bytes) -> Rule | None:
    line = _trim_trailing_spaces(line)
    negated = line.startswith(b"!")
    if negated:
        line = line[1:]
    dir_only = line.endswith(b"/")
    if dir_only:
        line = line[:-1]
    basename = b"/" not in line
    if line.startswith(b"/"):
        line = line[1:]
    return Rule(_compile(line), negated, dir_only, basename)


def _trim_trailing_spaces(line: bytes) -> bytes:
    """Drop trailing spaces, except one escaped by a backslash (and what follows it)."""
    last_space = None
    i = 0
    while i < len(line):
        char = line[i]
        if char == 0x20:
            if last_space is None:
                last_space = i
        elif char == 0x5C:  # backslash: the next byte is literal
            i += 1
            if i >= len(line):
                return line
            last_space = None
        else:
            last_space = None
        i += 1
    return line if last_space is None else line[:last_space]


def _compile(pattern: bytes) -> re.Pattern[bytes] | None:
    translated = translate(pattern)
    return None if translated is None else re.compile(translated, re.DOTALL)


def translate(pattern: bytes) -> bytes | None:
    """A regex matching exactly what git's wildmatch (with WM_PATHNAME) matches; None for a
    malformed pattern (an unclosed `[`, an unknown `[:class:]`, a trailing `\\`)."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        char = pattern[i : i + 1]
        if char == b"*":
            start = i
            while i < n and pattern[i : i + 1] == b"*":
                i += 1
            after_slash = start == 0 or pattern[start - 1 : start] == b"/"
            at_boundary = i == n or pattern[i : i + 1] == b"/" or pattern[i : i + 2] == b"\\/"
            if i - start >= 2 and after_slash and at_boundary:
                if pattern[i : i + 1] == b"/":  # `**/`: zero or more directories
                    i += 1
                    out.append(b"(?:.*/)?")
                else:  # at the end, or before an escaped `\/` (which needs at least one `/`)
                    out.append(b".*")
            else:
                out.append(b"[^/]*")
            continue
        if char == b"?":
            out.append(b"[^/]")
        elif char == b"[":
            parsed = _bracket(pattern, i)
            if parsed is None:
                return None
            regex, i = parsed
            out.append(regex)
            continue
        elif char == b"\\":
            i += 1
            if i >= n:
                return None
            out.append(re.escape(pattern[i : i + 1]))
        else:
            out.append(re.escape(char))
        i += 1
    return b"".join(out)


def _byte(value: int) -> bytes:
    return b"\\x%02x" % value


def _bracket(pattern: bytes, start: int) -> tuple[bytes, int] | None:
    """The character class at pattern[start] == `[`: (regex, index after its `]`), or None
    when wildmatch would give up on the whole pattern."""
    n = len(pattern)
    i = start + 1
    negated = False
    if i < n and pattern[i] in b"!^":
        negated = True
        i += 1
    items: list[bytes] = []
    prev: int | None = None  # the previous literal byte, which a `-` may extend into a range
    first = True
    while True:
        if i >= n:
            return None
        char = pattern[i]
        if char == 0x5D and not first:  # `]`
            break
        first = False
        if char == 0x5C:  # backslash
            i += 1
            if i >= n:
                return None
            items.append(_byte(pattern[i]))
            prev = pattern[i]
        elif char == 0x2D and prev is not None and i + 1 < n and pattern[i + 1] != 0x5D:  # a range
            i += 1
            high = pattern[i]
            if high == 0x5C:
                i += 1
                if i >= n:
                    return None
                high = pattern[i]
            if prev <= high:  # `prev` itself stays: git matched it as a literal before seeing `-`
                items.append(_byte(prev) + b"-" + _byte(high))
            prev = None
        elif char == 0x5B and i + 1 < n and pattern[i + 1] == 0x3A:  # `[:class:]`
            close = pattern.find(b"]", i + 2)
            if close < 0:
                return None
            name = pattern[i + 2 : close]
            if not name.endswith(b":"):
                items.append(_byte(0x5B))  # not a class after all: a literal `[`
                prev = 0x5B
            else:
                cls = _CLASSES.get(name[:-1])
                if cls is None:
                    return None
                items.append(cls)
                prev = None
                i = close
        else:
            items.append(_byte(char))
            prev = char
        i += 1
    body = b"".join(items)
    if negated:
        return b"[^/" + body + b"]", i + 1
    if not body:
        return b"(?!)", i + 1
    return b"(?!/)[" + body + b"]", i + 1


class IgnoreRules:
    """git's answer to "is this path ignored?" for the files under `root` (a workspace root):
    its `.gitignore` files from `root` down, then `exclude` (info/exclude's rules)."""

    def __init__(self, root: Path, exclude: list[Rule] | None = None):
        self.root = root
        self.exclude = exclude or []
        self._levels: dict[str, list[Rule]] = {}
        self._dirs: dict[str, bool] = {}

    @classmethod
    def for_workspace(cls, root: Path) -> IgnoreRules:
        return cls(root, parse(_read(info_exclude(root))) if info_exclude(root) else [])

    def ignored(self, rel: str, *, is_dir: bool) -> bool:
        """Whether git ignores `rel` (a `/`-separated path relative to the root)."""
        parts = rel.split("/")
        for depth in range(1, len(parts)):
            if self._dir_ignored("/".join(parts[:depth])):
                return True
        return self._matches(parts, is_dir)

    def _dir_ignored(self, rel: str) -> bool:
        found = self._dirs.get(rel)
        if found is None:
            parts = rel.split("/")
            parent = "/".join(parts[:-1])
            found = (self._dir_ignored(parent) if parent else False) or self._matches(parts, True)
            self._dirs[rel] = found
        return found

    def _matches(self, parts: list[str], is_dir: bool) -> bool:
        path = os.fsencode("/".join(parts))
        basename = os.fsencode(parts[-1])
        for depth in range(len(parts) - 1, -1, -1):  # the deepest .gitignore first
            base = "/".join(parts[:depth])
            rules = self._level(base)
            if not rules:
                continue
            name = path[len(os.fsencode(base)) + 1 :] if base else path
            for rule in reversed(rules):
                if rule.matches(name, basename, is_dir):
                    return not rule.negated
        for rule in reversed(self.exclude):
            if rule.matches(path, basename, is_dir):
                return not rule.negated
        return False

    def _level(self, base: str) -> list[Rule]:
        rules = self._levels.get(base)
        if rules is None:
            rules = parse(_read(self.root / base / IGNORE_FILE))
            self._levels[base] = rules
        return rules


def _read(path: Path) -> bytes:
    """An ignore file's bytes; nothing for a missing file, a directory or a symlink."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        with os.fdopen(fd, "rb", closefd=False) as handle:
            return handle.read()
    finally:
        os.close(fd)


def git_dir(root: Path) -> Path | None:
    """The git directory of the repository whose work tree has its top at `root`, if any."""
    marker = root / ".git"
    if marker.is_dir():
        return marker
    if marker.is_file():  # a worktree or a submodule: "gitdir: PATH"
        text = marker.read_text(errors="replace").strip()
        if text.startswith("gitdir:"):
            path = Path(text[len("gitdir:") :].strip())
            return path if path.is_absolute() else (root / path)
    return None


def info_exclude(root: Path) -> Path | None:
    """`info/exclude` of the repository at `root` (worktrees share their main repository's)."""
    directory = git_dir(root)
    if directory is None:
        return None
    common = directory / "commondir"
    if common.is_file():
        target = Path(common.read_text().strip())
        directory = target if target.is_absolute() else directory / target
    return directory / "info" / "exclude"
