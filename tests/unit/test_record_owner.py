"""One owner for the stored records: only `graphbuild/records.py` builds or takes apart the
serialised form of an action result or a run. Everything else goes through `ActionResult`,
`RunRecord` and `RunEntry`, so changing the layout means changing one module."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWNER = ROOT / "graphbuild" / "records.py"
#: the engine and the stores (rules name their own output files; they never see a record)
SCANNED = [ROOT / "graphbuild", ROOT / "cache"]

FORBIDDEN = {
    "a record's output list taken apart": r"""\[\s*["']outputs["']\s*\]|\.get\(\s*["']outputs["']""",
    "a record's output digest by name": r"""["']output_digest["']""",
    "a record's log blob by name": r"""\[\s*["']log["']\s*\]|\.get\(\s*["']log["']""",
    "a record's metadata by name": r"""\[\s*["']metadata["']\s*\]""",
    "a record dict read": r"""\brecord\s*\[|\brecord\.get\(""",
    "a run's node rows by name": r"""\[\s*["']nodes["']\s*\]""",
    "a run row read by position": (r"""\b(previous|before)\[\d\]|\b(left|right)\[1\]\[\d\]"""
                                   r"""|key, status, cached_from, \*"""),
    "a summary hidden in metadata": r"""metadata\.get\(\s*["']summary["']|metadata\[\s*["']summary["']""",
    "a corrupt blob passed as metadata": r"""["']_corrupt["']""",
    "a test report known by its file name": r"""junit\.xml""",
}


def _sources() -> list[Path]:
    return sorted(p for base in SCANNED for p in base.rglob("*.py") if p != OWNER)


def test_only_the_record_module_reads_or_writes_the_serialised_records():
    found = []
    for path in _sources():
        for number, line in enumerate(path.read_text().splitlines(), 1):
            for what, pattern in FORBIDDEN.items():
                if re.search(pattern, line):
                    found.append(f"{path.relative_to(ROOT)}:{number}: {what}: {line.strip()}")
    assert not found, "use graphbuild.records (ActionResult, RunRecord) instead:\n" + "\n".join(found)


def test_the_check_catches_what_it_is_meant_to_catch():
    """The patterns above match the code they forbid (a check that cannot fail is no check)."""
    samples = {
        "a record's output list taken apart": 'for sha, size, _ in record["outputs"].values():',
        "a record's output digest by name": 'digest = stored["output_digest"]',
        "a record's log blob by name": 'if stored.get("log"):',
        "a record's metadata by name": 'meta = stored["metadata"]',
        "a record dict read": 'if record["status"] == "ok":',
        "a run's node rows by name": 'for nid in run["nodes"]:',
        "a run row read by position": "old_key = before[0]",
        "a summary hidden in metadata": 'text = outcome.metadata.get("summary")',
        "a corrupt blob passed as metadata": 'metadata={"_corrupt": err.digest}',
        "a test report known by its file name": 'report = outcome.outputs.get("junit.xml")',
    }
    assert set(samples) == set(FORBIDDEN)
    for what, line in samples.items():
        assert re.search(FORBIDDEN[what], line), what
