"""One linear pass over a BUILD.envs or .star source, before and beside the interpreter.

The Starlark interpreter reports where a rule is *called* (a line), not where each of its
keyword arguments or list items is written; `graphbuild why` needs those lines (the line of
the requirement that changed).  This pass finds them from the text: every call written in
the file, its keyword arguments and the items of literal list/tuple values, indexed by the
line the call starts on.  It also records where top-level statements begin (so that a crash
of the interpreter can be pinned to a statement by evaluating prefixes of the file) and
refuses brackets nested deeper than `MAX_BRACKET_DEPTH` (the interpreter's parser recurses
and would overflow its stack) and thousands of calls crammed on one long line (the
interpreter's call stack copies the text of a call's line: that would cost the square of it).

It is a scanner, not a parser: strings and comments are skipped exactly, everything else is
only looked at for brackets, commas, `name(` and `name =`.  A construct it misreads costs a
less precise line, never a wrong target: the interpreter alone decides what the file means.
"""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field

MAX_BRACKET_DEPTH = 100
#: The interpreter reports a call's place with the text of its line: calls x line length
#: beyond this on one line would make locating them quadratic, and are refused.
MAX_CALL_TEXT = 1 << 30
#: Python keywords Starlark reserves and does not use: each is an error wherever it appears.
PYTHON_ONLY_KEYWORDS = frozenset({
    "as", "assert", "async", "await", "class", "del", "except", "finally", "from", "global", "import", "is",
    "nonlocal", "raise", "try", "while", "with", "yield",
})

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TOKEN = re.compile(
    r"""
      (?P<str>[rRbBfF]{0,2}(?:
            \"\"\"(?:\\.|[^\\])*?(?:\"\"\"|\Z)
          | '''(?:\\.|[^\\])*?(?:'''|\Z)
          | "(?:\\.|[^"\\\n])*(?:"|(?=\n)|\Z)
          | '(?:\\.|[^'\\\n])*(?:'|(?=\n)|\Z)))
    | (?P<comment>\#[^\n]*)
    | (?P<call>""" + _IDENT + r""")[ \t]*\(
    | (?P<kw>""" + _IDENT + r""")[ \t]*=(?!=)
    | (?P<name>""" + _IDENT + r""")
    | (?P<open>[\[({])
    | (?P<close>[\])}])
    | (?P<comma>,)
    | (?P<stmt>\n(?=[^\s\#]))
    """,
    re.VERBOSE | re.DOTALL,
)
_BLANK = re.compile(r"(?:[ \t\r\n\f]|\\\n|\#[^\n]*)*")


@dataclass
class CallSite:
    """A call written in the source: `name(` at `line`:`col` (1-based)."""

    line: int
    col: int
    name: str
    #: keyword -> [line of its value, line of each item when the value is a literal list/tuple]
    keywords: dict[str, list[int]] = field(default_factory=dict)
    #: (call, keyword) whose value this call is written in, e.g. `srcs = glob([...])`
    within: tuple[CallSite, str] | None = None

    def attr_lines(self) -> dict[str, int]:
        """`attr` -> line, and `attr[i]` -> line of item i of a literal list value."""
        lines: dict[str, int] = {}
        for name, (value_line, *items) in self.keywords.items():
            lines[name] = value_line
            for index, item_line in enumerate(items):
                lines[f"{name}[{index}]"] = item_line
        return lines


@dataclass
class _Frame:
    kind: str  # "call" or the opening bracket
    offset: int  # where the bracket opens
    call: CallSite | None = None
    keyword: str | None = None  # the keyword argument being written (call frames)
    items: list[int] | None = None  # lines of the items of a literal list/tuple keyword value


@dataclass
class Scan:
    calls: dict[int, list[CallSite]] = field(default_factory=dict)
    #: first line of each top-level statement, in order
    statements: list[int] = field(default_factory=list)
    #: (line, col) where brackets nest deeper than MAX_BRACKET_DEPTH, if they do
    too_deep: tuple[int, int] | None = None
    #: (line, col, bracket) of the first bracket still open at the end of the file
    unclosed: tuple[int, int, str] | None = None
    #: (line, col, word) of every Python keyword Starlark does not have
    python_keywords: list[tuple[int, int, str]] = field(default_factory=list)
    #: (line, calls, characters) of a line holding so many calls that locating them is costly
    crowded: tuple[int, int, int] | None = None
    line_starts: list[int] = field(default_factory=list, repr=False)
    size: int = 0
    _index: dict[int, dict[tuple, list[CallSite]]] = field(default_factory=dict, repr=False)
    _turns: dict[tuple, int] = field(default_factory=dict, repr=False)

    def call_at(self, line: int, name: str | None = None, keywords: set[str] | None = None) -> CallSite | None:
        """The call starting on `line` that best matches a call made at run time: same name and
        keywords, else same keywords, else same name.  Calls alike on one line (`a(x = 1); a(x = 2)`)
        are handed out in turn, as straight-line code makes them.  O(1) per call once a line is indexed."""
        index = self._index.get(line)
        if index is None:
            index = self._index[line] = {}
            for site in self.calls.get(line, []):
                signature = frozenset(site.keywords)
                for key in ((site.name, signature), (None, signature), (site.name, None)):
                    index.setdefault(key, []).append(site)
        signature = frozenset(keywords) if keywords is not None else None
        for key in ((name, signature), (None, signature), (name, None)):
            if key[0] is None and key[1] is None:
                continue
            sites = index.get(key)
            if sites:
                turn = self._turns.get((line, key), 0)
                self._turns[(line, key)] = turn + 1
                return sites[turn % len(sites)]
        return None

    def line_length(self, line: int) -> int:
        if not 0 < line <= len(self.line_starts):
            return 0
        end = self.line_starts[line] if line < len(self.line_starts) else self.size
        return end - self.line_starts[line - 1]

    def site_at(self, line: int, col: int) -> CallSite | None:
        for site in self.calls.get(line, []):
            if site.col == col:
                return site
        return None


class _Lines:
    """Offset -> (line, column), both 1-based."""

    def __init__(self, source: str):
        self.starts = [0] + [m.end() for m in re.finditer("\n", source)]

    def at(self, offset: int) -> tuple[int, int]:
        index = bisect.bisect_right(self.starts, offset) - 1
        return index + 1, offset - self.starts[index] + 1


def scan(source: str) -> Scan:
    result = Scan()
    lines = _Lines(source)
    size = len(source)
    first = _BLANK.match(source, 0).end()
    if first < size:
        result.statements.append(lines.at(first)[0])
    frames: list[_Frame] = []
    expect_keyword = False
    items_at = -1  # offset of a '[' or '(' that opens a keyword's literal list value
    items_for: list[int] | None = None

    def next_item(offset: int, into: list[int]) -> None:
        at = _BLANK.match(source, offset).end()
        if at < size and source[at] not in ")]":
            into.append(lines.at(at)[0])

    for match in _TOKEN.finditer(source):
        kind = match.lastgroup
        if kind == "str":
            expect_keyword = False
        elif kind == "comma":
            if frames:
                top = frames[-1]
                if top.kind == "call":
                    top.keyword = None
                    expect_keyword = True
                elif top.items is not None:
                    next_item(match.end(), top.items)
        elif kind == "kw":
            top = frames[-1] if frames else None
            if top is not None and top.kind == "call" and expect_keyword and top.call is not None:
                value_at = _BLANK.match(source, match.end()).end()
                entry = [lines.at(value_at)[0]]
                top.call.keywords[match.group("kw")] = entry
                top.keyword = match.group("kw")
                if value_at < size and source[value_at] in "[(":
                    items_at, items_for = value_at, entry
            expect_keyword = False
        elif kind == "close":
            if frames:
                frames.pop()
            expect_keyword = False
        elif kind == "open" or kind == "call":
            if kind == "open":
                frame = _Frame(match.group(), match.start())
                if match.start() == items_at and items_for is not None:
                    frame.items = items_for
                    next_item(match.end(), items_for)
                expect_keyword = False
            else:
                line, col = lines.at(match.start())
                site = CallSite(line, col, match.group("call"))
                for outer in reversed(frames):
                    if outer.kind == "call" and outer.keyword is not None:
                        site.within = (outer.call, outer.keyword)  # type: ignore[assignment]
                        break
                result.calls.setdefault(line, []).append(site)
                frame = _Frame("call", match.end() - 1, call=site)
                expect_keyword = True
            frames.append(frame)
            if len(frames) > MAX_BRACKET_DEPTH:
                result.too_deep = lines.at(match.start())
                return result
        elif kind == "name":
            expect_keyword = False
            if match.group() in PYTHON_ONLY_KEYWORDS:
                result.python_keywords.append((*lines.at(match.start()), match.group()))
        elif kind == "stmt":
            if frames or source.endswith("\\", 0, match.start()):
                continue  # inside brackets, or a line continued by a backslash
            line = lines.at(match.end())[0]
            if not result.statements or line > result.statements[-1]:
                result.statements.append(line)
    result.line_starts = lines.starts
    result.size = size
    for line, sites in result.calls.items():
        if len(sites) > 1 and len(sites) * result.line_length(line) > MAX_CALL_TEXT and result.crowded is None:
            result.crowded = (line, len(sites), result.line_length(line))
    if frames:
        line, col = lines.at(frames[0].offset)
        result.unclosed = (line, col, source[frames[0].offset])
    return result
