"""`graphbuild why --graph`: the target's last run as a picture (SVG, or HTML around the SVG).

Nodes are coloured by status (ran, cached, failed, skipped); a node that ran carries its
changed inputs as annotations. Layout is Graphviz's `dot`.
"""

from __future__ import annotations

import html
import shutil
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from graphbuild.errors import UsageError

COLORS = {"ran": "#7bc96f", "cached": "#d9d9d9", "failed": "#e8625a", "skipped": "#f2c14e"}
_MAX_NOTES = 4


def _dot(report: list[dict[str, Any]], edges: Iterable[tuple[str, str]], title: str) -> str:
    lines = ["digraph why {", '  rankdir=LR; node [shape=box, style="rounded,filled", fontname="Helvetica", '
             'fontsize=10]; edge [color="#888888"];', f'  label="{_esc(title)}"; labelloc=t;']
    shown = {entry["id"] for entry in report}
    for entry in report:
        notes = [f"{c['input']}: {c['old']} → {c['new']}" for c in entry.get("changes", [])[:_MAX_NOTES]]
        if entry["status"] == "cached" and entry.get("reason") not in (None, "cached"):
            notes = [entry["reason"]]
        extra = len(entry.get("changes", [])) - _MAX_NOTES
        if extra > 0:
            notes.append(f"… {extra} more")
        label = "\\n".join([_esc(entry["id"]), f"[{entry['status']}]", *(_esc(_short(n)) for n in notes)])
        color = COLORS.get(entry["status"], "#ffffff")
        lines.append(f'  "{_esc(entry["id"])}" [label="{label}", fillcolor="{color}", '
                     f'tooltip="{_esc(entry.get("reason", entry["status"]))}"];')
    for src, dst in edges:
        if src in shown and dst in shown:
            lines.append(f'  "{_esc(src)}" -> "{_esc(dst)}";')
    lines.append("}")
    return "\n".join(lines)


def render(report: list[dict[str, Any]], edges: Iterable[tuple[str, str]], title: str, dest: Path) -> Path:
    if shutil.which("dot") is None:
        raise UsageError("why --graph needs Graphviz's `dot`", hint="apt-get install graphviz")
    dot = _dot(report, edges, title)
    proc = subprocess.run(["dot", "-Tsvg"], input=dot, capture_output=True, text=True)
    if proc.returncode != 0:
        raise UsageError(f"dot could not draw the graph: {proc.stderr.strip()[:300]}")
    svg = proc.stdout
    if dest.suffix.lower() == ".svg":
        dest.write_text(svg)
    elif dest.suffix.lower() in (".html", ".htm"):
        dest.write_text(_page(svg, report, title))
    else:
        raise UsageError(f"why --graph writes .svg or .html, not {dest.name}")
    return dest


def _page(svg: str, report: list[dict[str, Any]], title: str) -> str:
    legend = "".join(f'<span class="key" style="background:{c}">{s}</span>' for s, c in COLORS.items())
    rows = []
    for entry in report:
        for change in entry.get("changes", []):
            rows.append(f"<tr><td>{html.escape(entry['id'])}</td><td>{html.escape(change['input'])}</td>"
                        f"<td>{html.escape(str(change['old']))}</td><td>{html.escape(str(change['new']))}</td>"
                        f"<td>{html.escape(change.get('location') or '')}</td></tr>")
    table = ("<table><tr><th>node</th><th>input</th><th>old</th><th>new</th><th>where</th></tr>"
             + "".join(rows) + "</table>") if rows else "<p>No node ran: every result came from a cache.</p>"
    svg_body = svg[svg.find("<svg"):]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:Helvetica,Arial,sans-serif;margin:1.5em}} .key{{padding:.2em .6em;margin-right:.4em;
border-radius:.3em}} table{{border-collapse:collapse;margin-top:1em}} td,th{{border:1px solid #ccc;padding:.3em .6em;
font-size:.9em;text-align:left}}</style></head>
<body><h1>{html.escape(title)}</h1><p>{legend}</p>{svg_body}{table}</body></html>
"""


def _short(text: str, limit: int = 70) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _esc(text: str) -> str:
    return str(text).replace("\\", "\\\\").replace('"', '\\"')
