"""Machine output: one JSON document on stdout."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(document: Any) -> None:
    # Indented for a person at a terminal; compact (and several times faster) for a program.
    indent = 2 if sys.stdout.isatty() else None
    sys.stdout.write(json.dumps(document, indent=indent, default=str) + "\n")
    sys.stdout.flush()


def emit_text(text: str) -> None:
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
