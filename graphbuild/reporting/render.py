"""A verb's report on stdout: as text, or as one JSON document (`--json`).

Every verb returns a `graphbuild.verbs.Reportable` (`exit_code`, `to_json()`, `to_text()`);
the engine's own verbs wrap a typed report of `graphbuild.operations` with the text and JSON
renderers of the matching module here (`Rendered`).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from graphbuild.verbs import Reportable


@dataclass(frozen=True)
class Rendered:
    """A typed report with its two renderers (a `Reportable`)."""

    report: Any
    text: Callable[[Any], str]
    json: Callable[[Any], Mapping[str, Any]]
    command: str | None = None  # the JSON document's "command" when not the verb's name ("ci gitlab")

    @property
    def exit_code(self) -> int:
        return getattr(self.report, "exit_code", 0)

    def to_json(self) -> Mapping[str, Any]:
        return self.json(self.report)

    def to_text(self) -> str:
        return self.text(self.report)


def emit(report: Reportable, *, command: str, as_json: bool) -> None:
    if as_json:
        emit_json({"command": getattr(report, "command", None) or command, **report.to_json(),
                   "exit_code": report.exit_code})
        return
    text = report.to_text()
    if text:
        emit_text(text)


def emit_json(document: Any) -> None:
    # Indented for a person at a terminal; compact (and several times faster) for a program.
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(document, indent=indent, default=str) + "\n")
    sys.stdout.flush()


def emit_text(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()
