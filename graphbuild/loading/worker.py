"""The Starlark evaluator: evaluates BUILD.envs files, and the .star files they load, in a
process of its own.

BUILD files are read from any revision and any merge request, so they are evaluated by a
real Starlark interpreter (starlark-rust, through `starlark-pyo3`): the language has no
imports, no I/O, no reflection and no way to reach a Python object, so nothing here needs
a denylist.  What the language cannot bound, this process does:

* steps: a budget of interpreter steps (loops, calls) and of calls into graphbuild; past it
  the evaluation is cancelled where it is, with that location;
* time: a wall-clock deadline checked at the same points;
* memory: an address-space limit on this process (a huge allocation aborts it);
* crashes: the interpreter recurses in Rust on nested values and expressions; a stack
  overflow kills this process, not graphbuild.

graphbuild (`evaluator.py`) pins a crash to the statement that caused it by evaluating
prefixes of the file.  This module imports nothing of graphbuild beyond labels and the
scanner, and sends back plain data only: for each rule call, the rule's name, the keyword
arguments as plain values and where they are written.

Run by `graphbuild.loading.evaluator` as `python -c ... MEMORY_MB`; it speaks
`graphbuild.loading.protocol` on its stdin/stdout.
"""

from __future__ import annotations

import os
import re
import resource
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import starlark as sl

from graphbuild.labels import Label, LabelError
from graphbuild.loading import protocol
from graphbuild.loading.scan import MAX_BRACKET_DEPTH, Scan, scan

PRELUDE = "<graphbuild>"
MACRO_SUFFIX = ".star"
#: starlark-rust asks whether to cancel about once per this many steps
STEPS_PER_CHECK = 1000
#: what a call into graphbuild (a rule, glob, print) costs in steps
CALLBACK_STEPS = 1000
#: and what the text of the calling lines costs
LINE_BYTES_PER_STEP = 1024
MAX_CALLSTACK = 100
MAX_VALUE_DEPTH = 64
MAX_FILE_BYTES = 32 << 20
MAX_PRINTED = 1 << 20
HELPERS = ("glob", "load", "package_name", "fail", "print")
LIMITS_HINT = "raise [loading] max_steps or timeout in graphbuild.toml if this file really needs it"

# starlark-rust's rendering: frames "  * FILE:LINE, in FUNCTION", then "error: MESSAGE" and
# " --> FILE:LINE:COL", indented by the width of the line numbers of the snippet under it.
_FRAME = re.compile(r"^ {2,3}\* (.+):(\d+), in (.+)$", re.MULTILINE)
_ERROR = re.compile(r"^error: (.*?)\n *--> (.+):(\d+):(\d+)$", re.MULTILINE | re.DOTALL)
_NOT_FOUND = re.compile(r"^Variable `([^`]+)` not found(?:, did you mean `([^`]+)`\?)?$")


def _dialect() -> sl.Dialect:
    dialect = sl.Dialect.extended()
    dialect.enable_def = True
    dialect.enable_lambda = True
    dialect.enable_load = True
    dialect.enable_keyword_only_arguments = True
    dialect.enable_top_level_stmt = True
    dialect.enable_f_strings = True
    dialect.enable_load_reexport = False
    dialect.enable_types = sl.DialectTypes.DISABLE
    return dialect


DIALECT = _dialect()
GLOBALS = sl.Globals.extended_by([
    sl.LibraryExtension.StructType, sl.LibraryExtension.Map, sl.LibraryExtension.Filter,
    sl.LibraryExtension.Partial, sl.LibraryExtension.Json, sl.LibraryExtension.CallStack,
])


@dataclass
class Problem(Exception):
    """A user error found while evaluating: message, hint, and where when known."""

    message: str
    hint: str | None = None
    path: str | None = None
    line: int = 0
    col: int = 0
    #: name the attribute whose value holds the failing call (glob patterns)
    name_attribute: bool = False

    def __str__(self) -> str:
        return self.message


class Problems(Exception):
    """Several problems of one file, found before it is evaluated."""

    def __init__(self, problems: list[Problem]):
        super().__init__(problems[0].message)
        self.problems = problems


@dataclass(frozen=True)
class Frame:
    path: str
    line: int
    function: str


def frames_of(text: str) -> list[Frame]:
    """The frames of a starlark call stack or traceback, outermost first."""
    return [Frame(m.group(1), int(m.group(2)), m.group(3)) for m in _FRAME.finditer(text)]


def prelude_source(rules: list[str]) -> str:
    """Each rule is a Starlark function passing its call stack along: the interpreter tells
    graphbuild where a rule was called only through `call_stack()`."""
    lines = [f"def {name}(*args, **kwargs):\n    _declare({name!r}, call_stack(), args, kwargs)\n" for name in rules]
    lines.append('def print(*args, sep = " "):\n    _print(call_stack(), sep.join([str(a) for a in args]))\n')
    return "\n".join(lines)


@dataclass
class Session:
    """What one graphbuild loader evaluates against: a workspace and its rules."""

    root: Path
    build_file: str
    rules: list[str]
    max_steps: int
    timeout: float
    #: directories outside the workspace its links may point into (`affected` links the
    #: working tree's ignored files into its checkout of another revision)
    linked_roots: tuple[Path, ...] = ()
    prelude: Any = None
    modules: dict[str, Any] = field(default_factory=dict)  # resolved path -> FrozenModule

    def inside(self, real: Path) -> bool:
        return real.is_relative_to(self.root) or any(real.is_relative_to(p) for p in self.linked_roots)

    @staticmethod
    def from_config(config: dict) -> Session:
        session = Session(Path(config["root"]).resolve(), config["build_file"], list(config["rules"]),
                          int(config["max_steps"]), float(config["timeout"]),
                          tuple(Path(p).resolve() for p in config.get("linked_roots", ())))
        session.prelude = sl.parse(PRELUDE, prelude_source(session.rules), DIALECT)
        return session


@dataclass
class Evaluation:
    """One BUILD.envs file being evaluated (with everything it loads)."""

    session: Session
    package: str
    build_rel: str
    deadline: float
    calls: list[tuple] = field(default_factory=list)
    prints: list[str] = field(default_factory=list)
    printed: int = 0
    steps: int = 0
    cancelled: str | None = None
    pending: Problem | None = None
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, package) being evaluated
    loading: int = 0  # .star files whose top level is being evaluated
    scans: dict[str, Scan] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    package_files: list[str] | None = None

    def check_cancelled(self) -> bool:
        self.steps += STEPS_PER_CHECK
        return self._over()

    def spend(self, steps: int) -> None:
        self.steps += steps
        if self._over():
            raise self.fail(Problem(self.cancelled or "cancelled", hint=LIMITS_HINT))

    def _over(self) -> bool:
        if self.cancelled:
            return True
        if self.steps > self.session.max_steps:
            self.cancelled = (f"evaluation exceeded {self.session.max_steps:,} steps "
                              "(a loop or recursion that does not end?)")
        elif time.monotonic() > self.deadline:
            self.cancelled = f"evaluation took longer than {self.session.timeout:g} s"
        return self.cancelled is not None

    def fail(self, problem: Problem) -> Problem:
        """Remember the first problem: errors raised by graphbuild's own functions reach the
        interpreter as exceptions and come back as text; this keeps their message and hint."""
        if self.pending is None:
            self.pending = problem
        return problem

    def options(self) -> sl.EvalOptions:
        return sl.EvalOptions(check_cancelled=self.check_cancelled, max_callstack_size=MAX_CALLSTACK)


class Worker:
    def __init__(self) -> None:
        self.sessions: dict[int, Session] = {}
        self.current: Evaluation | None = None

    # -- requests ----------------------------------------------------------------------------

    def handle(self, request: tuple) -> dict:
        verb = request[0]
        if verb == "open":
            self.sessions[request[1]] = Session.from_config(request[2])
            return {"ok": True}
        if verb == "close":
            self.sessions.pop(request[1], None)
            return {"ok": True}
        if verb == "eval":
            _, sid, package, source = request
            return self.evaluate(self.sessions[sid], package, source)
        raise ValueError(f"unknown request {verb!r}")

    def evaluate(self, session: Session, package: str, source: str | None) -> dict:
        build_rel = f"{package}/{session.build_file}".lstrip("/")
        ev = Evaluation(session, package, build_rel, time.monotonic() + session.timeout)
        self.current = ev
        try:
            if source is None:
                source = self._read(session.root / build_rel, build_rel)
            module = self._module()
            ast = self._parse(build_rel, source)
            ev.files.append((build_rel, package))
            sl.eval_with(ev.options(), module, ast, GLOBALS, sl.FileLoader(self._load))
        except Problem as problem:
            return {"errors": [_located(problem, build_rel)], "prints": ev.prints}
        except Problems as problems:
            return {"errors": [_located(problem, build_rel) for problem in problems.problems], "prints": ev.prints}
        except sl.StarlarkError as err:
            return {"errors": [self._translate(err, ev)], "prints": ev.prints}
        finally:
            self.current = None
        return {"calls": ev.calls, "prints": ev.prints}

    # -- files and modules -------------------------------------------------------------------

    def _read(self, path: Path, rel: str) -> str:
        """A regular file of the workspace (links followed, and staying inside it), as text."""
        session = self.current.session if self.current else None
        try:
            real = path.resolve(strict=True)
            if session is not None and not session.inside(real):
                raise Problem(f"{rel} is a link to {real}, outside the workspace", path=rel, line=1,
                              hint="BUILD and .star files must be files of the workspace")
            # O_NONBLOCK: a FIFO named like a BUILD file must not block the evaluation
            fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK)
        except (OSError, RuntimeError) as err:
            raise Problem(f"cannot read {rel}: {getattr(err, 'strerror', None) or err}", path=rel, line=1) from None
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise Problem(f"{rel} is not a regular file", path=rel, line=1)
            data = handle.read(MAX_FILE_BYTES + 1)
        if len(data) > MAX_FILE_BYTES:
            raise Problem(f"{rel} is larger than {MAX_FILE_BYTES >> 20} MiB", path=rel, line=1)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            line = data[: err.start].count(b"\n") + 1
            raise Problem(f"{rel} is not UTF-8 text (byte {err.start})", path=rel, line=line) from None

    def _parse(self, rel: str, source: str) -> Any:
        found = scan(source)
        if found.too_deep:
            line, col = found.too_deep
            raise Problem(f"brackets nested more than {MAX_BRACKET_DEPTH} deep", path=rel, line=line, col=col,
                          hint="flatten the expression: name the inner parts")
        if found.crowded:
            line, calls, width = found.crowded
            raise Problem(f"{calls:,} calls on one line of {width:,} characters", path=rel, line=line,
                          hint="put each call on a line of its own (graphbuild locates calls by their line)")
        if found.python_keywords:
            first_of_line = {line: (col, word) for line, col, word in reversed(found.python_keywords)}
            problems = [Problem(f"syntax error: '{word}' is not part of Starlark", path=rel, line=line, col=col,
                                hint=_RESERVED_HINTS.get(word, _STARLARK))
                        for line, (col, word) in first_of_line.items()]
            problems.sort(key=lambda p: p.line)
            raise problems[0] if len(problems) == 1 else Problems(problems)
        assert self.current is not None
        self.current.scans[rel] = found
        self.current.sources[rel] = source
        return sl.parse(rel, source, DIALECT)

    def _module(self) -> Any:
        ev = self.current
        assert ev is not None
        module = sl.Module()
        module.add_callable("_declare", self._declare)
        module.add_callable("_print", self._print)
        module.add_callable("glob", self._glob)
        module.add_callable("package_name", self._package_name)
        sl.eval(module, ev.session.prelude, GLOBALS)
        return module

    def _load(self, module_id: str) -> Any:
        ev = self.current
        assert ev is not None
        session = ev.session
        from_package = ev.files[-1][1]
        try:
            label = Label.parse(module_id, package=from_package)
        except LabelError as err:
            raise ev.fail(Problem(f"load: {err.message}", hint=err.hint)) from None
        if ".." in label.package.split("/") or ".." in label.name.split("/"):
            raise ev.fail(Problem(f"load: {module_id} leaves the workspace ('..')",
                                  hint="load files of the workspace by their label: //pkg:file.star"))
        rel = f"{label.package}/{label.name}".lstrip("/")
        if not label.name.endswith(MACRO_SUFFIX):
            hint = (f"BUILD files load Starlark files ending in '{MACRO_SUFFIX}'; rules written in Python are "
                    "plugins declared in graphbuild.toml ([plugins] rules = [...]) and are in scope everywhere")
            raise ev.fail(Problem(f"load: {module_id} is not a Starlark file", hint=hint))
        path = session.root / rel
        try:
            real = path.resolve(strict=True)
        except (OSError, RuntimeError):
            raise ev.fail(Problem(f"load: no file {rel} for {module_id}")) from None
        if not session.inside(real):
            raise ev.fail(Problem(f"load: {rel} is a link to {real}, outside the workspace",
                                  hint="a BUILD file may only load files of its own workspace"))
        if not real.is_file():
            raise ev.fail(Problem(f"load: {rel} is not a file"))
        key = str(real)
        chain = [p for p, _ in ev.files]
        if rel in chain:
            raise ev.fail(Problem("load cycle: " + " -> ".join([*chain[chain.index(rel):], rel])))
        if key in session.modules:
            return session.modules[key]
        source = self._read(real, rel)
        module = self._module()
        ev.files.append((rel, label.package))
        ev.loading += 1
        try:
            ast = self._parse(rel, source)
            sl.eval_with(ev.options(), module, ast, GLOBALS, sl.FileLoader(self._load))
        except Problem as problem:
            raise ev.fail(_with_path(problem, rel)) from None
        except Problems as problems:
            raise ev.fail(problems.problems[0]) from None
        except sl.StarlarkError as err:
            # located where it happened, in this file (or one it loads)
            ev.pending = Problem(**self._translate(err, ev))
            raise ev.pending from None
        finally:
            ev.loading -= 1
            ev.files.pop()
        frozen = module.freeze()
        session.modules[key] = frozen
        return frozen

    # -- what BUILD files call ---------------------------------------------------------------

    def _require_build(self, what: str) -> Evaluation:
        ev = self.current
        assert ev is not None
        if ev.loading:
            loading = ev.files[-1][0]
            raise ev.fail(Problem(f"{what} can only be called while a BUILD.envs file is evaluated (directly or "
                                  f"from a function it calls), not at the top level of {loading}",
                                  hint=f"move the call into a function of {loading} that the BUILD file calls"))
        return ev

    def _declare(self, rule: str, stack: str, args: list, kwargs: dict) -> None:
        ev = self._require_build(f"rule '{rule}'")
        user = [f for f in frames_of(stack) if f.path != PRELUDE]
        # call_stack() copied the text of each frame's line: a loop calling a rule on a very
        # long line pays for it in steps
        ev.spend(CALLBACK_STEPS + sum(ev.scans[f.path].line_length(f.line) for f in user if f.path in ev.scans)
                 // LINE_BYTES_PER_STEP)
        if rule not in ev.session.rules or not user or user[0].path != ev.build_rel:
            raise ev.fail(Problem("_declare is graphbuild's own: call the rule instead"))
        where = [f for f in user if f.path == ev.build_rel][-1]
        direct = user[-1].path == ev.build_rel
        found = ev.scans.get(ev.build_rel)
        site = found.call_at(where.line, rule if direct else None, set(kwargs) if direct else None) if found else None
        col = site.col if site else (found.calls[where.line][0].col if found and found.calls.get(where.line) else 0)
        attr_lines = site.attr_lines() if site and direct else {}
        for key, value in kwargs.items():
            if _depth(value) > MAX_VALUE_DEPTH:
                raise ev.fail(Problem(f"rule '{rule}': attribute '{key}' is nested more than {MAX_VALUE_DEPTH} "
                                      "levels deep", path=ev.build_rel, line=attr_lines.get(key, where.line)))
        ev.calls.append((rule, where.line, col, len(args), kwargs, attr_lines))

    def _print(self, stack: str, text: str) -> None:
        ev = self.current
        assert ev is not None
        ev.spend(CALLBACK_STEPS)
        user = [f for f in frames_of(stack) if f.path != PRELUDE]
        where = f"{user[-1].path}:{user[-1].line}: " if user else ""
        if ev.printed < MAX_PRINTED:
            line = printable(where + text)
            ev.printed += len(line)
            ev.prints.append(line if ev.printed < MAX_PRINTED else line[:200] + " ... (print output truncated)")

    def _package_name(self) -> str:
        return self._require_build("package_name()").package

    def _glob(self, include: Any, exclude: Any = (), allow_empty: bool = True) -> list[str]:
        ev = self._require_build("glob()")
        includes = _patterns(ev, include, "include")
        excludes = _patterns(ev, exclude, "exclude")
        files = self._package_files(ev)
        ev.spend(CALLBACK_STEPS + len(files) * (len(includes) + len(excludes)))
        included = [_glob_regex(p) for p in includes]
        excluded = [_glob_regex(p) for p in excludes]
        result = [f for f in files
                  if any(r.fullmatch(f) for r in included) and not any(r.fullmatch(f) for r in excluded)]
        if not result and not allow_empty:
            raise ev.fail(Problem(f"glob({includes!r}) matches no files", name_attribute=True,
                                  hint="check the patterns, or pass allow_empty = True"))
        return result

    def _package_files(self, ev: Evaluation) -> list[str]:
        """Files of the package, relative to it: hidden files and subpackages left out;
        symbolic links must point inside the workspace."""
        if ev.package_files is not None:
            return ev.package_files
        root = ev.session.root
        top = root / ev.package if ev.package else root
        found: list[str] = []
        for dirpath, dirnames, filenames in os.walk(top):
            here = Path(dirpath)
            dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__pycache__"
                                 and not (here / d / ev.session.build_file).is_file())
            for name in filenames:
                if name.startswith("."):
                    continue
                path = here / name
                if path.is_symlink():
                    real = path.resolve()
                    if not ev.session.inside(real):
                        rel = path.relative_to(top).as_posix()
                        raise ev.fail(Problem(f"glob: {rel} is a link to {real}, outside the workspace",
                                              name_attribute=True, hint="remove the link or exclude it"))
                    if not real.is_file():
                        continue
                found.append(path.relative_to(top).as_posix())
            if len(found) > 1_000_000:
                raise ev.fail(Problem("glob: the package holds more than a million files"))
        ev.package_files = sorted(found)
        return ev.package_files

    # -- errors ------------------------------------------------------------------------------

    def _translate(self, err: sl.StarlarkError, ev: Evaluation) -> dict:
        text = str(err)
        frames = [f for f in frames_of(text) if f.path != PRELUDE]
        match = _ERROR.search(text)
        message = match.group(1).strip() if match else text.strip().splitlines()[-1]
        path, line, col = (match.group(2), int(match.group(3)), int(match.group(4))) if match else (None, 0, 0)
        if path == PRELUDE:  # in a rule's wrapper: the user's call is the frame that called it
            path, line, col = (frames[-1].path, frames[-1].line, 0) if frames else (ev.build_rel, 0, 0)
        hint = None
        problem = ev.pending
        if problem is not None:
            message, hint = problem.message, problem.hint
            if problem.path:
                path, line, col = problem.path, problem.line, problem.col
            elif problem.name_attribute and path in ev.scans:
                site = ev.scans[path].site_at(line, col)
                if site is not None and site.within is not None:
                    message = f"{site.within[1]}: {message}"
        elif ev.cancelled and message.startswith("Evaluation cancelled"):
            message, hint = ev.cancelled, LIMITS_HINT
        else:
            message, hint = self._explain(message, ev)
            if message.startswith("syntax error") and path is not None:
                message, hint, line, col = self._syntax(message, hint, path, line, col, ev)
        message = printable(message)
        outer = [f for f in frames if f.path == ev.build_rel]
        if path != ev.build_rel and outer and "(in a function called at" not in message:
            message += f" (in a function called at {ev.build_rel}:{outer[0].line})"
        return {"message": message, "hint": hint, "path": path, "line": line, "col": col}

    @staticmethod
    def _syntax(message: str, hint: str | None, path: str, line: int, col: int,
                ev: Evaluation) -> tuple[str, str | None, int, int]:
        """A bracket never closed, or a missing comma, said as such."""
        found, source = ev.scans.get(path), ev.sources.get(path)
        if found is not None and found.unclosed is not None:
            at_line, at_col, bracket = found.unclosed
            return f"syntax error: '{bracket}' is never closed", "close it, or remove it", at_line, at_col
        if source is not None and line > 1:
            lines = source.splitlines()
            before = lines[line - 1][: col - 1] if line <= len(lines) else ""
            previous = next((n for n in range(line - 1, 0, -1)
                             if lines[n - 1].split("#")[0].strip()), 0)
            if not before.strip() and previous:
                end = lines[previous - 1].split("#")[0].rstrip()
                if end and end[-1] not in ",([{:\\" and "indentation" not in message:
                    return message, f"is a comma missing at the end of line {previous}?", line, col
        return message, hint, line, col

    @staticmethod
    def _explain(message: str, ev: Evaluation) -> tuple[str, str | None]:
        """Starlark's messages in graphbuild's words, with a suggestion where one helps."""
        not_found = _NOT_FOUND.match(message)
        if not_found:
            name, close = not_found.groups()
            if name in _PYTHON_ONLY or name.startswith("__"):
                return f"unknown rule or name '{name}'", (
                    f"BUILD files are Starlark, not Python: there is no '{name}' (no I/O, no imports, no "
                    "reflection); see 'BUILD.envs is Starlark' in graphbuild's README")
            if close:
                return f"unknown rule or name '{name}'", f"did you mean '{close}'?"
            return (f"unknown rule or name '{name}'",
                    "rules in scope: " + ", ".join(sorted(ev.session.rules)) + "; helpers: " + ", ".join(HELPERS))
        reserved = _RESERVED.search(message)
        if reserved:
            word = reserved.group(1)
            return f"syntax error: '{word}' is not part of Starlark", _RESERVED_HINTS.get(word, _STARLARK)
        reflective = "`.__" in message or "attribute `__" in message
        if reflective or (message.startswith("Invalid character") and "replacement field" in message):
            return message, "Starlark values have no Python attributes: there is no reflection in BUILD files"
        if message.startswith("Parse error: "):
            detail = message.removeprefix("Parse error: ")
            if detail.endswith('expected one of ":"'):
                return ("syntax error: " + detail.split(", expected")[0],
                        "'{' starts a dict (key: value); Starlark has no sets: use a list")
            if ", expected one of" in detail:
                detail = detail.split(", expected one of")[0]
            if "indentation" in detail:
                return f"syntax error: {detail}", "indent only the body of a def, if or for (after a ':')"
            if detail == "invalid input `@`":
                return f"syntax error: {detail}", "Starlark has no decorators"
            if detail == "tabs are not allowed":
                return f"syntax error: {detail}", "indent with spaces"
            if detail == "unfinished string literal":
                return f"syntax error: {detail}", "close it with the quote it opens with (triple quotes span lines)"
            return f"syntax error: {detail}", "check for a missing comma, bracket or quote just before this point"
        if message.startswith("fail:"):
            return message.removeprefix("fail:").strip() or "fail() called", None
        if message == "Starlark call stack overflow":
            return (f"calls nested more than {MAX_CALLSTACK} deep (unbounded recursion?)",
                    "Starlark functions in BUILD files should not recurse")
        if message.startswith("`for` cannot be used") or "reserved keyword `while`" in message:
            return message, "loop over a list or range(); a loop without a bound might never end"
        for prefix in ("TypeError: ", "ValueError: ", "StarlarkError: "):
            message = message.removeprefix(prefix)
        if message.startswith("Cycle detected while converting"):
            return "a value that contains itself cannot be passed to a rule", None
        if message.startswith("Maximum depth of"):
            return "a value nested this deeply cannot be passed to a rule", "flatten it"
        if "`serde::serialize` not supported on type" in message:
            kind = message.rsplit("type", 1)[-1].strip(" `")
            return f"a {kind} cannot be passed to a rule or to graphbuild's functions", \
                "attribute values are strings, numbers, booleans, None, lists and dicts"
        if message.startswith("Error unpacking value for parameter"):
            return "an argument of the wrong type or out of range (" + message + "`)", \
                "integers are 32-bit here: range() and repetition take at most 2147483647"
        return message, None


_PYTHON_ONLY = frozenset({
    "open", "exec", "eval", "compile", "input", "globals", "locals", "vars", "set", "frozenset", "object",
    "super", "setattr", "delattr", "id", "classmethod", "staticmethod", "property", "breakpoint", "exit", "quit",
    "help", "memoryview", "bytes", "bytearray", "iter", "next", "callable", "format", "issubclass", "isinstance",
    "os", "sys", "subprocess", "builtins", "importlib",
})
_STARLARK = "BUILD files are Starlark, a small deterministic subset of Python"
_RESERVED = re.compile(r"reserved keyword `(\w+)`")
_RESERVED_HINTS = {
    "import": 'BUILD files cannot import: load() Starlark files (load("//pkg:defs.star", "name")); rules written '
              "in Python are plugins declared in graphbuild.toml",
    "from": 'BUILD files cannot import: load() Starlark files (load("//pkg:defs.star", "name"))',
    "class": "Starlark has no classes: use dicts or struct(); rules written in Python are plugins declared in "
             "graphbuild.toml",
    "while": "loop over a list or range(): a loop without a bound might never end",
    "try": 'errors end the evaluation: call fail("message") to report one',
    "except": 'errors end the evaluation: call fail("message") to report one',
    "raise": 'call fail("message") to report an error',
    "with": "Starlark has no context managers (and BUILD files no I/O)",
    "global": "Starlark functions cannot rebind globals: return a value instead",
    "nonlocal": "Starlark functions cannot rebind outer variables: return a value instead",
    "yield": "Starlark has no generators: build a list",
    "async": "Starlark has no coroutines",
    "await": "Starlark has no coroutines",
    "del": "build a new list or dict without the entry",
    "is": "compare with ==",
    "as": "load() renames with keywords: load(\"//pkg:defs.star\", new_name = \"name\")",
    "assert": 'call fail("message") when a condition does not hold',
}


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def printable(text: str) -> str:
    """`text` with control characters shown as escapes: a BUILD file's text must not drive the
    terminal it is reported on."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def _located(problem: Problem, default_path: str) -> dict:
    return {"message": printable(problem.message), "hint": problem.hint, "path": problem.path or default_path,
            "line": problem.line, "col": problem.col}


def _with_path(problem: Problem, path: str) -> Problem:
    if not problem.path:
        problem.path = path
    return problem


def _depth(value: Any) -> int:
    """How deeply lists and dicts nest in `value` (iteratively: no recursion to overflow)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, list | tuple | dict):
            deepest = max(deepest, depth)
            if depth > MAX_VALUE_DEPTH:
                return depth
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def _patterns(ev: Evaluation, value: Any, what: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple) or not all(isinstance(p, str) for p in value):
        raise ev.fail(Problem(f"glob: {what} must be a list of strings", name_attribute=True,
                              hint='write glob(["*.txt"], exclude = ["secret.txt"])'))
    for pattern in value:
        parts = pattern.split("/")
        if not pattern or pattern.startswith("/") or "\\" in pattern or "\0" in pattern:
            raise ev.fail(Problem(f"glob: pattern {pattern!r} must be a relative path inside the package",
                                  name_attribute=True, hint="glob patterns are relative to the package directory"))
        if ".." in parts:
            raise ev.fail(Problem(f"glob: pattern {pattern!r} leaves the package ('..')", name_attribute=True,
                                  hint="glob only matches files of the package itself"))
        if "." in parts or "" in parts:
            raise ev.fail(Problem(f"glob: pattern {pattern!r} has an empty or '.' path segment",
                                  name_attribute=True, hint='write "dir/*.txt", not "./dir//*.txt"'))
    return list(value)


def _glob_regex(pattern: str) -> re.Pattern[str]:
    """`**` matches any number of directories, `*` and `?` stay within one, `[...]` a class."""
    out: list[str] = []
    parts = pattern.split("/")
    for index, part in enumerate(parts):
        last = index == len(parts) - 1
        if part == "**":
            out.append(".*" if last else "(?:[^/]+/)*")
            continue
        i = 0
        while i < len(part):
            char = part[i]
            if char == "*":
                out.append("[^/]*")
            elif char == "?":
                out.append("[^/]")
            elif char == "[" and _class_end(part, i) > 0:
                end = _class_end(part, i)
                body = part[i + 1:end]
                negate = body[:1] in ("!", "^")
                body = (body[1:] if negate else body).replace("\\", "\\\\").replace("[", "\\[")
                out.append("[" + ("^" if negate else "") + body + "]")
                i = end
            else:
                out.append(re.escape(char))
            i += 1
        if not last:
            out.append("/")
    return re.compile("".join(out))


def _class_end(part: str, start: int) -> int:
    """Index of the `]` closing the class opened at `start` (a `]` first in it is literal); -1 if none."""
    i = start + 1
    if part[i:i + 1] in ("!", "^"):
        i += 1
    if part[i:i + 1] == "]":
        i += 1
    return part.find("]", i)


def _limit_memory(megabytes: int) -> None:
    """Cap this process's address space at what it uses now plus `megabytes`."""
    with open("/proc/self/statm") as handle:
        size = int(handle.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = size + (megabytes << 20)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def main() -> None:
    requests = os.fdopen(os.dup(0), "rb", buffering=0)
    replies = os.fdopen(os.dup(1), "wb", buffering=0)
    # Nothing but the protocol may use those: anything else writing to stdout goes to stderr.
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(2, 1)
    _limit_memory(int(sys.argv[1]))
    worker = Worker()
    while True:
        try:
            request = protocol.read(requests)
        except EOFError:
            return  # graphbuild is done (or gone)
        try:
            reply = worker.handle(request)
            fatal = False
        except MemoryError:
            reply, fatal = {"crash": "memory", "detail": "out of memory"}, True
        except RecursionError:
            reply, fatal = {"crash": "stack", "detail": "a value nested too deeply"}, True
        except Exception as err:
            reply, fatal = {"crash": "panic", "detail": f"{type(err).__name__}: {err}"}, True
        except BaseException as err:  # a Rust panic surfaces as pyo3's PanicException
            if isinstance(err, KeyboardInterrupt | SystemExit):
                raise
            kind = "memory" if "out of memory" in str(err) else "panic"
            reply, fatal = {"crash": kind, "detail": f"{type(err).__name__}: {err}"}, True
        try:
            protocol.write(replies, reply)
        except OSError:
            return  # nobody is listening any more
        if fatal:
            # after a panic or an exhausted heap the interpreter's state is not to be trusted
            return
