"""Verbs: the commands of `graphbuild`, declared by the engine and by rule packages.

A verb is declared with `Verb(name, help, configure, run)`. Declaring one costs nothing: this
module imports only the standard library, and a verb's `run` may be given as a string
`"package.module:function"` that is imported only when the verb runs, so `graphbuild --help`
never imports what a verb needs to run (pydantic, the analysis floor...).

Where verbs come from (see `graphbuild.cli.registry`):

* the engine's own verbs (`build`, `why`, `ci`...), declared in `graphbuild.cli`;
* the built-in rule packages: each lists its verbs in a light module (`rules/python/verbs.py`,
  `rules/oci/verbs.py`) gathered by `graphbuild.rules.verbs.VERBS`;
* a workspace: Python files named in graphbuild.toml, `[plugins] verbs = ["tools/verbs.py"]`,
  each defining a list `VERBS`.

Besides verbs, an engine command may need a piece only a rule package knows how to do (pin an
image reference, find candidate upgrades): the engine asks for it by a name of `HOOKS` below,
and a rule package's verbs module offers it in its own `HOOKS` (name -> "module:function"),
gathered by `graphbuild.rules.verbs.HOOKS`. The engine never names a rule module.

`run(ctx, args)` receives a `VerbContext` (the workspace, its targets, analysis, execution of
targets or of any nodes, the cache's blobs, the reporter) and the parsed arguments, and returns
a `Report`; the CLI prints it as text, or as one JSON document with `--json`. Bad usage is a
`UsageError` (exit 2, no traceback).
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from graphbuild.errors import EXIT_OK

Configure = Callable[[argparse.ArgumentParser], None]


@runtime_checkable
class Reportable(Protocol):
    """What a verb returns: an exit code and its two renderings."""

    exit_code: int

    def to_json(self) -> Mapping[str, Any]: ...

    def to_text(self) -> str: ...


class _Frozen:
    """Immutable after __init__ (plain classes, not dataclasses: this module is imported by
    `graphbuild --help`, and the dataclasses module would be most of its start-up)."""

    __slots__ = ()

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable (cannot set {name})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


class Report(_Frozen):
    """A verb's result. `data` is the JSON document (`command` and `exit_code` are added);
    `text` what a person reads on stdout (nothing when empty)."""

    __slots__ = ("data", "exit_code", "text")
    data: Mapping[str, Any]
    text: str
    exit_code: int

    def __init__(self, data: Mapping[str, Any] | None = None, text: str = "", exit_code: int = EXIT_OK):
        object.__setattr__(self, "data", dict(data or {}))
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "exit_code", exit_code)

    def to_json(self) -> Mapping[str, Any]:
        return self.data

    def to_text(self) -> str:
        return self.text


Run = Callable[["VerbContext", argparse.Namespace], Reportable]


class Verb(_Frozen):
    """A command of `graphbuild`.

    `configure(parser)` adds the verb's own arguments (the global options are added for you);
    `run(ctx, args)` does the work and returns a `Report`; it may be a callable or the string
    `"module:function"` (imported only when the verb runs: keep heavy imports there).
    `needs_workspace=False` (or a function of the arguments saying so): the verb runs outside any
    workspace; `ctx` is then None."""

    __slots__ = ("configure", "description", "help", "name", "needs_workspace", "run")
    name: str
    help: str
    configure: Configure | None
    run: Run | str | None
    description: str
    needs_workspace: bool | Callable[[argparse.Namespace], bool]

    def __init__(self, name: str, help: str, configure: Configure | None = None, run: Run | str | None = None,
                 *, description: str = "", needs_workspace: bool | Callable[[argparse.Namespace], bool] = True):
        for key, value in (("name", name), ("help", help), ("configure", configure), ("run", run),
                           ("description", description), ("needs_workspace", needs_workspace)):
            object.__setattr__(self, key, value)

    def wants_workspace(self, args: argparse.Namespace) -> bool:
        return self.needs_workspace(args) if callable(self.needs_workspace) else self.needs_workspace

    def runner(self) -> Run:
        if callable(self.run):
            return self.run
        return imported(self.run, f"verb {self.name!r}: run")


#: What engine commands ask rule packages for, by name, and what each must be.
HOOKS = {
    "ci.upgrades": "`ci gitlab --upgrades`: run(ctx, args) -> Report, the scheduled pipeline trying upgrades",
    "ci.pin_job_image": "`ci gitlab --job-image`: (reference text) -> the reference pinned to its digest",
}


def imported(ref: object, what: str) -> Any:
    """The object a `"package.module:name"` reference names, imported now."""
    if not isinstance(ref, str) or ":" not in ref:
        raise TypeError(f"{what} must be a callable or 'module:function', not {ref!r}")
    module, _, attr = ref.partition(":")
    return getattr(importlib.import_module(module), attr)


class VerbContext(Protocol):
    """What a verb's `run` gets: everything about the workspace it may need.

    Labels, nodes and outcomes are the engine's own types (`graphbuild.api.Label`, `Node`,
    `Outcome`)."""

    #: the workspace root and the directory graphbuild acts from (-C DIR)
    root: Path
    cwd: Path
    #: --json was given: print nothing on stdout yourself, return it all in the report
    json: bool

    @property
    def reporter(self) -> Any:
        """Human output on stderr: `info(text)`, `warning(text)`, `summary(text)`."""

    def labels(self, patterns: Sequence[str]) -> list[Any]:
        """Command-line patterns (`//envs:prod`, `//...`, `:local`) as target labels."""

    def analyze(self, labels: Sequence[Any], *, locking: bool = False) -> Any:
        """The analysed closure of the targets (`nodes`, `providers`, `closure(labels, phase)`)."""

    def build(self, labels: Sequence[Any], *, phase: str = "build") -> Any:
        """Take targets through `build`, `test` or `run` like the verb of that name (outputs
        land in graphbuild-out/); an `ExecutionReport` (`outcomes`, `ok`, `exit_code`)."""

    def execute(self, nodes: Iterable[Any], *, analysis: Any = None) -> Any:
        """Run these nodes (e.g. made with `action(...)`) and what they depend on in `analysis`,
        through the cache like any node; an `ExecutionReport` whose `outcomes` are keyed by node id."""

    def action(self, label: Any, name: str, *, executor: Any, inputs: Mapping[str, Any] | None = None,
               outputs: Sequence[str] = (), after: Sequence[str] = (), phase: str = "build",
               kind: str | None = None, description: str = "") -> Any:
        """A node of the verb's own, `<label>#<name>`, depending on the outputs its inputs
        reference (`OutputRef`) and on the node ids in `after`."""

    def blob_path(self, digest: str) -> Path:
        """The verified path of a blob of the cache (an output's sha256), read-only."""

    def output_path(self, outcome: Any, name: str) -> Path:
        """The path of output `name` of a node's outcome."""


def collect(sources: Iterable[Iterable[Verb]]) -> list[Verb]:
    """Verbs from several sources, in order; a name taken twice is a programming error."""
    found: dict[str, Verb] = {}
    for verbs in sources:
        for verb in verbs:
            if not isinstance(verb, Verb):
                raise TypeError(f"not a graphbuild Verb: {verb!r}")
            if verb.name in found:
                raise ValueError(f"two verbs are named {verb.name!r}")
            found[verb.name] = verb
    return list(found.values())
