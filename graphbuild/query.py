"""A small Bazel-query-like language over the target graph.

    expr    := primary (op primary)*          # left associative, one precedence level
    op      := '+' | 'union' | '-' | 'except' | '^' | 'intersect'
    primary := WORD | STRING | '(' expr ')' | NAME '(' args ')'

Functions: deps(X[, DEPTH]), rdeps(U, X[, DEPTH]), kind(PATTERN, X), allpaths(A, B),
somepath(A, B).  Words (`//envs/...`, `:prod`) and quoted strings are target patterns
handed to `resolve`.  `+`, `-` and `,` may appear inside a label, so `+` and `-` are
operators only when they stand alone and a comma separates arguments only at the end of a
word (`deps(//a:b, 1)`; in `deps(//a:b,1)` the word is `//a:b,1`).

In the graph an edge u -> v means u depends on v.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from graphbuild.errors import UsageError, did_you_mean
from graphbuild.graph import DiGraph

__all__ = ["evaluate"]

Resolver = Callable[[str], set[str]]

_WORD_RE = re.compile(r"[A-Za-z0-9_/.:@+=,~*\-]+")
_DEPTH_RE = re.compile(r"[0-9]+")
_OPERATORS = {
    "+": "+",
    "union": "+",
    "-": "-",
    "except": "-",
    "^": "^",
    "intersect": "^",
}
_PUNCTUATION = "(),"
_OPERATOR_HINT = "combine sets with +, -, ^ (or union, except, intersect), separated by spaces"


@dataclass(frozen=True, slots=True)
class _Signature:
    params: tuple[str, ...]  # each "expr", "depth" or "pattern"
    required: int
    usage: str


_FUNCTIONS: dict[str, _Signature] = {
    "deps": _Signature(("expr", "depth"), 1, "deps(EXPR[, DEPTH])"),
    "rdeps": _Signature(("expr", "expr", "depth"), 2, "rdeps(UNIVERSE, EXPR[, DEPTH])"),
    "kind": _Signature(("pattern", "expr"), 2, "kind(PATTERN, EXPR)"),
    "allpaths": _Signature(("expr", "expr"), 2, "allpaths(FROM, TO)"),
    "somepath": _Signature(("expr", "expr"), 2, "somepath(FROM, TO)"),
}


# ---------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "word", "string", "op", "(", ")", ",", "end"
    text: str  # the value: the word, the unquoted string, the normalized operator
    pos: int  # 0-based offset of the token's first character in the expression
    source: str  # the token as written, for error messages


def _error(expr: str, pos: int, what: str, hint: str | None = None) -> UsageError:
    return UsageError(f"query: {what} at column {pos + 1} in {expr!r}", hint=hint)


def _describe(token: _Token) -> str:
    return "end of expression" if token.kind == "end" else repr(token.source)


def _tokenize(expr: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(expr):
        char = expr[pos]
        if char.isspace():
            pos += 1
        elif char in _PUNCTUATION:
            tokens.append(_Token(char, char, pos, char))
            pos += 1
        elif char == "^":
            tokens.append(_Token("op", "^", pos, char))
            pos += 1
        elif char in "'\"":
            end = expr.find(char, pos + 1)
            if end < 0:
                raise _error(expr, pos, "unterminated string", hint=f"close it with {char}")
            tokens.append(_Token("string", expr[pos + 1 : end], pos, expr[pos : end + 1]))
            pos = end + 1
        elif match := _WORD_RE.match(expr, pos):
            word = match.group().rstrip(",")
            if word in _OPERATORS:
                tokens.append(_Token("op", _OPERATORS[word], pos, word))
            else:
                tokens.append(_Token("word", word, pos, word))
            pos += len(word)
        else:
            raise _error(expr, pos, f"unexpected character {char!r}")
    tokens.append(_Token("end", "", len(expr), ""))
    return tokens


# ---------------------------------------------------------------- syntax tree


@dataclass(frozen=True, slots=True)
class _Word:
    text: str


@dataclass(frozen=True, slots=True)
class _SetOp:
    op: str  # "+", "-" or "^"
    left: _Node
    right: _Node


@dataclass(frozen=True, slots=True)
class _Call:
    name: str
    args: tuple[_Node | str | int, ...]  # by the signature: a _Node, a kind pattern or a depth


_Node = _Word | _SetOp | _Call


class _Parser:
    def __init__(self, expr: str):
        self.expr = expr
        self.tokens = _tokenize(expr)
        self.index = 0

    def peek(self) -> _Token:
        return self.tokens[min(self.index, len(self.tokens) - 1)]

    def take(self) -> _Token:
        token = self.peek()
        self.index += 1
        return token

    def unexpected(self, token: _Token, hint: str | None = None) -> UsageError:
        return _error(self.expr, token.pos, f"unexpected {_describe(token)}", hint)

    def expect(self, kind: str) -> _Token:
        token = self.take()
        if token.kind != kind:
            raise self.unexpected(token, hint=f"expected {kind!r}")
        return token

    def parse(self) -> _Node:
        node = self.expression()
        token = self.peek()
        if token.kind != "end":
            hint = _OPERATOR_HINT if token.kind in ("word", "string", "(") else None
            raise self.unexpected(token, hint)
        return node

    def expression(self) -> _Node:
        node = self.primary()
        while self.peek().kind == "op":
            op = self.take().text
            node = _SetOp(op, node, self.primary())
        return node

    def primary(self) -> _Node:
        token = self.take()
        if token.kind == "(":
            node = self.expression()
            self.expect(")")
            return node
        if token.kind == "word" and self.peek().kind == "(":
            return self.call(token)
        if token.kind in ("word", "string"):
            return _Word(token.text)
        raise self.unexpected(token, hint="expected a target pattern, a function call or '('")

    def call(self, name: _Token) -> _Call:
        signature = _FUNCTIONS.get(name.text)
        if signature is None:
            hint = did_you_mean(name.text, set(_FUNCTIONS)) or "functions: " + ", ".join(sorted(_FUNCTIONS))
            raise _error(self.expr, name.pos, f"unknown function {name.text!r}", hint)
        start = self.expect("(")
        args: list[_Node | str | int] = []
        if self.peek().kind != ")":
            while True:
                if len(args) == len(signature.params):
                    raise _error(
                        self.expr,
                        self.peek().pos,
                        f"too many arguments to {name.text}()",
                        f"usage: {signature.usage}",
                    )
                args.append(self.argument(signature.params[len(args)]))
                if self.peek().kind != ",":
                    break
                self.take()
        close = self.expect(")")
        if len(args) < signature.required:
            hint = f"usage: {signature.usage}"
            if any(t.kind == "word" and "," in t.text for t in self.tokens if start.pos < t.pos < close.pos):
                hint += "; a comma followed by a name joins it to the word before: add a space"
            raise _error(self.expr, close.pos, f"too few arguments to {name.text}()", hint)
        return _Call(name.text, tuple(args))

    def argument(self, param: str) -> _Node | str | int:
        if param == "expr":
            return self.expression()
        token = self.take()
        if param == "depth":
            if token.kind != "word" or not _DEPTH_RE.fullmatch(token.text):
                raise _error(
                    self.expr, token.pos, f"depth must be a non-negative integer, not {_describe(token)}"
                )
            return int(token.text)
        if token.kind not in ("word", "string"):
            what = f"expected a kind pattern, not {_describe(token)}"
            raise _error(self.expr, token.pos, what, "write a word or a quoted string")
        try:
            re.compile(token.text)
        except re.error as err:
            raise _error(self.expr, token.pos, f"invalid kind pattern {token.source} ({err})") from None
        return token.text


# ---------------------------------------------------------------- evaluation


def evaluate(expr: str, graph: DiGraph, resolve: Resolver) -> set[str]:
    """The set of labels `expr` denotes in `graph`; `resolve` expands each target pattern word."""
    return _Evaluator(graph, resolve).run(_Parser(expr).parse())


class _Evaluator:
    def __init__(self, graph: DiGraph, resolve: Resolver):
        self.graph = graph
        self.resolve = resolve

    def run(self, node: _Node) -> set[str]:
        if isinstance(node, _Word):
            return set(self.resolve(node.text))
        if isinstance(node, _SetOp):
            left = self.run(node.left)
            right = self.run(node.right)
            if node.op == "+":
                return left | right
            if node.op == "-":
                return left - right
            return left & right
        return self.call(node)

    def call(self, node: _Call) -> set[str]:
        args = [self.run(arg) if isinstance(arg, _Node) else arg for arg in node.args]
        if node.name == "deps":
            depth = args[1] if len(args) > 1 else None
            return self.reach(args[0], depth, reverse=False)
        if node.name == "rdeps":
            universe, targets = args[0], args[1]
            depth = args[2] if len(args) > 2 else None
            return self.reach(targets, depth, reverse=True) & universe
        if node.name == "kind":
            pattern = re.compile(args[0])
            return {
                label
                for label in args[1]
                if label in self.graph and pattern.search(self.graph.nodes[label].get("kind", ""))
            }
        if node.name == "allpaths":
            return self.reach(args[0], None, reverse=False) & self.reach(args[1], None, reverse=True)
        if node.name == "somepath":
            return self.somepath(args[0], args[1])
        raise AssertionError(f"function {node.name!r} has no evaluator")

    def neighbours(self, label: str, reverse: bool) -> Iterable[str]:
        # Labels that `resolve` knows but the graph lacks are kept in results, just not expanded.
        if label not in self.graph:
            return ()
        return self.graph.predecessors(label) if reverse else self.graph.successors(label)

    def reach(self, start: set[str], depth: int | None, *, reverse: bool) -> set[str]:
        """`start` plus what it reaches within `depth` edges (forward = dependencies)."""
        seen = set(start)
        frontier = list(start)
        distance = 0
        while frontier and (depth is None or distance < depth):
            distance += 1
            following = []
            for label in frontier:
                for other in self.neighbours(label, reverse):
                    if other not in seen:
                        seen.add(other)
                        following.append(other)
            frontier = following
        return seen

    def somepath(self, sources: set[str], targets: set[str]) -> set[str]:
        """The labels of one shortest path from `sources` to `targets`, or nothing."""
        # Sorted walks keep the chosen path stable from run to run.
        parent: dict[str, str | None] = {}
        queue: deque[str] = deque()
        for label in sorted(sources):
            if label in targets:
                return {label}
            parent[label] = None
            queue.append(label)
        while queue:
            label = queue.popleft()
            for other in sorted(self.neighbours(label, reverse=False)):
                if other in parent:
                    continue
                parent[other] = label
                if other in targets:
                    path = set()
                    step: str | None = other
                    while step is not None:
                        path.add(step)
                        step = parent[step]
                    return path
                queue.append(other)
        return set()
