"""`graphbuild why --graph`: the target's last run as a picture (SVG, or HTML around the SVG).

Nodes are coloured by status (ran, cached, failed, skipped), with a legend drawn in the SVG
itself. Arrows go from a cause to what it caused: from a node to the nodes that read its
result, so a change is read along the arrows; a lock node rewritten by `--relock` points
(dashed) at the nodes of its target, which read the lock. A node carries the inputs that
changed as notes; a note too long for a box names the input only (the HTML table and the
node's tooltip have the values). Layout is Graphviz's `dot`.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from graphbuild.errors import UsageError
from graphbuild.nodes import LOCK_PHASE
from graphbuild.reporting.changes import narrowed

COLORS = {"ran": "#7bc96f", "cached": "#d9d9d9", "failed": "#e8625a", "skipped": "#f2c14e"}
MEANING = {"ran": "ran: its inputs changed, or it runs every time", "cached": "cached: a stored result was reused",
           "failed": "failed", "skipped": "skipped: a dependency failed"}
_MAX_NOTES = 4
_NOTE_LIMIT = 70
SUFFIXES = (".svg", ".html", ".htm")


def changes_of(entry: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(input, old, new, location) of each change, mappings and lists narrowed to the entries
    that changed; an input new in this run or gone from it is said so (never `None`)."""
    shown = []
    for change in entry.get("changes", []):
        old = "(new input)" if change.get("old") is None else str(change["old"])
        new = "(removed)" if change.get("new") is None else str(change["new"])
        for name, before, after in narrowed(change["input"], old, new):
            shown.append((name, before, after, change.get("location") or ""))
    return shown


def _note(name: str, old: str, new: str) -> str:
    text = f"{name}: {old} → {new}"
    return text if len(text) <= _NOTE_LIMIT else _clip(f"{name} changed")


def _clip(text: str) -> str:  # only names are clipped (a path can be long); values never are
    return text if len(text) <= _NOTE_LIMIT else "…" + text[-(_NOTE_LIMIT - 1):]


def _reason(entry: dict[str, Any]) -> str:
    return entry.get("reason") or entry["status"]


def _dot(report: list[dict[str, Any]], edges: Iterable[tuple[str, str]], title: str) -> str:
    lines = ["digraph why {",
             '  rankdir=LR; node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [color="#888888"]; fontname="Helvetica"; fontsize=11;',
             f"  labelloc=t; labeljust=l; label=<{_legend(title)}>;"]
    shown = {entry["id"] for entry in report}
    for entry in report:
        changes = changes_of(entry)
        notes = [_note(name, old, new) for name, old, new, _ in changes[:_MAX_NOTES]]
        if len(changes) > _MAX_NOTES:
            notes.append(f"… {len(changes) - _MAX_NOTES} more")
        if (not notes and _reason(entry) not in ("cached", entry["status"])) or entry.get("phase") == LOCK_PHASE:
            notes = [_first_clause(_reason(entry)), *notes]  # why it ran (or where it came from)
        label = "\\n".join(_esc(text) for text in [entry["id"], f"[{entry['status']}]", *notes])
        tooltip = "\n".join([_reason(entry), *(f"{name}: {old} → {new}" for name, old, new, _ in changes)])
        color = COLORS.get(entry["status"], "#ffffff")
        lines.append(f'  "{_esc(entry["id"])}" [label="{label}", fillcolor="{color}", tooltip="{_esc(tooltip)}"];')
    causes = set()
    for cause, effect in edges:
        if cause in shown and effect in shown:
            causes.add((cause, effect))
            lines.append(f'  "{_esc(cause)}" -> "{_esc(effect)}";')
    for cause, effect in _lock_edges(report, causes):
        lines.append(f'  "{_esc(cause)}" -> "{_esc(effect)}" [style=dashed, label="lock file", fontsize=9, '
                     f'fontname="Helvetica"];')
    lines.append("}")
    return "\n".join(lines)


def _lock_edges(report: list[dict[str, Any]], edges: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """A lock node's result is a file of the workspace that its target's nodes are planned
    from, not an output another node reads: it points at the first nodes of its target (those
    no other node of the target feeds)."""
    found = []
    for lock in (e for e in report if e.get("phase") == LOCK_PHASE):
        target = lock["id"].split("#", 1)[0]
        mine = [e["id"] for e in report if e["id"].split("#", 1)[0] == target and e.get("phase") != LOCK_PHASE]
        fed = {effect for cause, effect in edges if cause in mine}
        found += [(lock["id"], nid) for nid in mine if nid not in fed]
    return found


def _legend(title: str) -> str:
    """The graph's label: its title and a key of the colours and arrows (Graphviz HTML-like label)."""
    cells = "".join(f'<td bgcolor="{color}" border="1" color="#999999">{html.escape(MEANING[status])}</td>'
                    for status, color in COLORS.items())
    return (f'<table border="0" cellspacing="4" cellpadding="4"><tr><td colspan="5" align="left">'
            f"<b>{html.escape(title)}</b></td></tr><tr>{cells}"
            f"<td>A → B: B read A's result (a change flows along the arrows)</td></tr></table>")


def _first_clause(text: str) -> str:
    short = text.split(":", 1)[0] if len(text) > _NOTE_LIMIT else text
    return short if len(short) <= _NOTE_LIMIT else short[: _NOTE_LIMIT - 1] + "…"


def render(report: list[dict[str, Any]], edges: Iterable[tuple[str, str]], title: str, dest: Path) -> Path:
    """Write the picture to `dest` (.svg or .html); `edges` are (cause, effect) node ids."""
    if dest.suffix.lower() not in SUFFIXES:
        raise UsageError(f"why --graph writes .svg or .html, not {dest.name}",
                         hint=f"--graph {dest.with_suffix('.html').name}")
    if not dest.parent.is_dir():
        raise UsageError(f"cannot write {dest}: the directory {dest.parent} does not exist",
                         hint=f"create it first (mkdir -p {dest.parent}) or pick another path")
    if shutil.which("dot") is None:
        raise UsageError("why --graph needs Graphviz's `dot`", hint="apt-get install graphviz")
    proc = subprocess.run(["dot", "-Tsvg"], input=_dot(report, edges, title), capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"dot could not draw the graph: {proc.stderr.strip()[:300]}")
    text = proc.stdout if dest.suffix.lower() == ".svg" else _page(proc.stdout, report, title)
    try:
        dest.write_text(text)
    except OSError as err:
        raise UsageError(f"cannot write {dest}: {err.strerror}", hint="pick a path you can write to") from None
    return dest


def _page(svg: str, report: list[dict[str, Any]], title: str) -> str:
    """The SVG (its own title and legend) and tables of what changed and of what ran without a change."""
    rows, plain = [], []
    for entry in report:
        changes = changes_of(entry)
        for name, old, new, where in changes:
            rows.append(f"<tr><td>{html.escape(entry['id'])}</td><td>{html.escape(name)}</td>"
                        f'<td class="v">{html.escape(old)}</td><td class="v">{html.escape(new)}</td>'
                        f"<td>{html.escape(where)}</td></tr>")
        if entry["status"] in ("ran", "failed") and not changes:
            plain.append(f"<tr><td>{html.escape(entry['id'])}</td><td>{html.escape(entry['status'])}</td>"
                         f"<td>{html.escape(_reason(entry))}</td></tr>")
    parts = []
    if rows:
        parts.append("<h2>Inputs that changed</h2><table><tr><th>node</th><th>input</th><th>old</th><th>new</th>"
                     "<th>where</th></tr>" + "".join(rows) + "</table>")
    if plain:
        parts.append("<h2>Ran without a changed input</h2><table><tr><th>node</th><th>status</th><th>why</th></tr>"
                     + "".join(plain) + "</table>")
    if not any(entry["status"] in ("ran", "failed") for entry in report):
        parts.append("<p>No node ran: every result came from a cache.</p>")
    svg_body = svg[svg.find("<svg"):]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;margin:1.5em}} table{{border-collapse:collapse;margin-top:1em}}
td,th{{border:1px solid #ccc;padding:.3em .6em;font-size:.9em;text-align:left;vertical-align:top;white-space:nowrap}}
td.v{{white-space:normal;word-break:break-all}} h2{{font-size:1.1em}}</style></head>
<body>{svg_body}{"".join(parts)}</body></html>
"""


def _esc(text: str) -> str:
    """A dot string: quotes and backslashes escaped, newlines as dot's centred line breaks."""
    return str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
