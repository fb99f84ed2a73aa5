"""The matrix as people read it: a terminal table, an HTML grid, JUnit reports for CI."""

from __future__ import annotations

import html
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from graphbuild.rules.python.matrix import ERROR, FAIL, INCOMPATIBLE, NOT_APPLICABLE, PASS, Cell, counts

_SHORT = {PASS: "pass", FAIL: "FAIL", INCOMPATIBLE: "incompatible", NOT_APPLICABLE: "n/a", ERROR: "ERROR"}
#: background colours of the HTML grid, by status
COLOURS = {PASS: "#b7e4c7", FAIL: "#f4a6a6", INCOMPATIBLE: "#ffd8a8", NOT_APPLICABLE: "#dee2e6", ERROR: "#c9a3e6"}


def short(label: str) -> str:
    """`//libs/x:x` as Bazel users write it, `//libs/x`; other labels as they are."""
    package, _, name = label.rpartition(":")
    return package if package and package.rsplit("/", 1)[-1] == name else label


def _grid(cells: list[Cell], environments: list[str], libraries: list[str]) -> dict[tuple[str, str], Cell]:
    return {(c.library, c.environment): c for c in cells if c.environment in environments}


def summary_line(cells: list[Cell]) -> str:
    found = counts(cells)
    parts = [f"{found[s]} {s}" for s in (PASS, FAIL, INCOMPATIBLE, NOT_APPLICABLE, ERROR) if found[s] or s != ERROR]
    runs = found["test_runs_executed"] + found["test_runs_reused"]
    return (f"{found['cells']} cells: {', '.join(parts)}; test runs: {found['test_runs_executed']} executed, "
            f"{found['test_runs_reused']} reused (of {runs})")


def table(cells: list[Cell], environments: list[str], libraries: list[str]) -> str:
    """Libraries down, environments across; then the reason of every cell that did not pass."""
    grid = _grid(cells, environments, libraries)
    heads = [e.rsplit(":", 1)[-1] if e.count(":") == 1 else e for e in environments]
    first = max([len("library"), *(len(short(lib)) for lib in libraries)])
    widths = [max(len(h), 12) for h in heads]
    lines = ["  ".join(["library".ljust(first), *(h.ljust(w) for h, w in zip(heads, widths, strict=True))]).rstrip()]
    for lib in libraries:
        row = [short(lib).ljust(first)]
        for env, width in zip(environments, widths, strict=True):
            cell = grid[(lib, env)]
            row.append((_SHORT[cell.status] + ("*" if cell.probe else "")).ljust(width))
        lines.append("  ".join(row).rstrip())
    lines.append("(* a probe: the library installed over the environment's image to test it there)")
    notes = [c for c in cells if c.status != PASS and c.environment in environments]
    if notes:
        lines.append("")
        lines.extend(f"{short(c.library)} in {short(c.environment)}: {c.status}: {c.reason}" for c in notes)
    return "\n".join(lines)


def html_page(cells: list[Cell], environments: list[str], libraries: list[str], title: str = "graphbuild matrix"
              ) -> str:
    """One self-contained page: a grid coloured by status, the reason in the cell and on hover."""
    grid = _grid(cells, environments, libraries)
    esc = html.escape
    head = "".join(f"<th scope=\"col\">{esc(e)}</th>" for e in environments)
    rows = []
    for lib in libraries:
        tds = []
        for env in environments:
            cell = grid[(lib, env)]
            hover = f"{cell.status}: {cell.reason}" if cell.reason else cell.status
            status_class = cell.status.replace(" ", "-")
            tds.append(f'<td class="{status_class}" data-status="{esc(cell.status)}" title="{esc(hover)}">'
                       f'<span class="status">{esc(cell.status)}{" (probe)" if cell.probe else ""}</span>'
                       + (f'<span class="reason">{esc(cell.reason)}</span>' if cell.reason else "") + "</td>")
        rows.append(f"<tr><th scope=\"row\">{esc(short(lib))}</th>{''.join(tds)}</tr>")
    styles = "".join(f"td.{s.replace(' ', '-')}{{background:{c}}}" for s, c in COLOURS.items())
    legend = "".join(f'<span class="{s.replace(" ", "-")}" style="background:{c}">{esc(s)}</span> '
                     for s, c in COLOURS.items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>
body{{font-family:sans-serif;margin:1.5em}}table{{border-collapse:collapse}}
th,td{{border:1px solid #888;padding:.4em .6em;text-align:left;vertical-align:top}}
td .status{{display:block;font-weight:bold}}td .reason{{display:block;font-size:80%;max-width:22em}}
.legend span{{padding:.2em .5em;margin-right:.3em}}{styles}
</style></head><body>
<h1>{esc(title)}</h1>
<p class="summary">{esc(summary_line(cells))}</p>
<table id="matrix"><thead><tr><th scope="col">library</th>{head}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p class="legend">{legend}</p>
</body></html>
"""


def write_junit(cells: list[Cell], environments: list[str], directory: Path) -> list[Path]:
    """One JUnit file per environment (`matrix-<env>.xml`), a test case per library: pass,
    failure (fail, error), or skipped (incompatible, not applicable) with the reason."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for env in environments:
        own = [c for c in cells if c.environment == env]
        suite = ET.Element("testsuite", name=f"matrix {env}", tests=str(len(own)),
                           failures=str(sum(c.status == FAIL for c in own)),
                           errors=str(sum(c.status == ERROR for c in own)),
                           skipped=str(sum(c.status in (INCOMPATIBLE, NOT_APPLICABLE) for c in own)))
        for cell in own:
            case = ET.SubElement(suite, "testcase", classname=env, name=cell.library)
            if cell.status == FAIL:
                ET.SubElement(case, "failure", message=cell.reason).text = "\n".join(cell.failing)
            elif cell.status == ERROR:
                ET.SubElement(case, "error", message=cell.reason)
            elif cell.status in (INCOMPATIBLE, NOT_APPLICABLE):
                ET.SubElement(case, "skipped", message=f"{cell.status}: {cell.reason}")
        root = ET.Element("testsuites")
        root.append(suite)
        path = directory / ("matrix-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", env.strip("/")) + ".xml")
        ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
        written.append(path)
    return written
