"""Candidate upgrades: what `graphbuild try ENV --upgrade PKG` compares and writes.

The candidate is a fork of the environment (fork.py) named `<env>.candidate`, locked into a
lock file of its own (`pylock.<env>.candidate.toml` beside the environment's); the comparison is
over the two environments' providers and their test nodes' outcomes: which packages moved, and
per library, pass or fail before and now. `--adopt` writes the candidate's lock as the
environment's, once nothing regressed.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from graphbuild.rules.python import lockfile
from graphbuild.rules.python.fork import CANDIDATE_SUFFIX, check_upgrade

__all__ = ["CANDIDATE_SUFFIX", "Comparison", "adopt", "check_upgrade", "compare", "moved_between", "moved_packages"]


@dataclass
class Comparison:
    moved: dict[str, tuple[str | None, str | None]]  # package -> (before, now); None: absent
    libraries: dict[str, dict[str, Any]]  # library label -> {before, now, failing, node}
    regressions: list[str] = field(default_factory=list)  # labels of libraries that passed and fail now
    broken: list[str] = field(default_factory=list)  # candidate nodes (not tests) that failed

    def to_json(self) -> dict[str, Any]:
        return {"moved": {n: {"before": b, "now": a} for n, (b, a) in self.moved.items()},
                "libraries": self.libraries, "regressions": self.regressions, "broken": self.broken}


def moved_packages(before: dict[str, dict], now: dict[str, dict]) -> dict[str, tuple[str | None, str | None]]:
    """`EnvironmentInfo.packages` of the environment and of its candidate -> what moved."""
    moved: dict[str, tuple[str | None, str | None]] = {}
    for name in sorted(set(before) | set(now)):
        old = before.get(name, {}).get("version")
        new = now.get(name, {}).get("version")
        if old != new:
            moved[name] = (old, new)
    return moved


def _status(outcome: Any) -> str:
    if outcome is None:
        return "not run"
    if outcome.status in ("ran", "cached"):
        return "pass"
    return "fail" if outcome.status == "failed" else outcome.status


def compare(before: dict[str, dict], now: dict[str, dict], before_tests: dict[str, str], now_tests: dict[str, str],
            outcomes: dict[str, Any], candidate_nodes: list[str]) -> Comparison:
    """`*_tests`: library label -> its test node id in each environment; `outcomes`: node id ->
    outcome of the run; `candidate_nodes`: the candidate's nodes (a failure of one that is not a
    test means the candidate could not be built)."""
    libraries: dict[str, dict[str, Any]] = {}
    regressions = []
    for library in sorted(set(before_tests) | set(now_tests)):
        old = outcomes.get(before_tests.get(library, ""))
        new = outcomes.get(now_tests.get(library, ""))
        entry: dict[str, Any] = {"before": _status(old), "now": _status(new), "node": now_tests.get(library)}
        if new is not None and new.status == "failed":
            entry["failing"] = list(new.metadata.get("failing", [])) or [new.message]
        if new is not None and new.cached_from:
            entry["reused_from"] = new.cached_from
        libraries[library] = entry
        if entry["before"] == "pass" and entry["now"] != "pass":
            regressions.append(library)
    tests = set(now_tests.values())
    broken = [nid for nid in candidate_nodes
              if nid not in tests and nid in outcomes and outcomes[nid].status == "failed"]
    return Comparison(moved_packages(before, now), libraries, regressions, broken)


def short(label: str) -> str:
    """`//libs/x:x` as people write it, `//libs/x`."""
    package, _, name = label.partition(":")
    return package if name and package.rsplit("/", 1)[-1] == name else label


def render(comparison: Comparison, env: str, candidate: str) -> str:
    lines = [f"candidate {candidate} of {env}:"]
    if comparison.moved:
        lines.append("  packages moved:")
        width = max(len(n) for n in comparison.moved)
        for name, (old, new) in comparison.moved.items():
            lines.append(f"    {name:<{width}}  {old or '(absent)'} -> {new or '(removed)'}")
    else:
        lines.append("  no package moved (the lock already has the newest versions the stack allows)")
    if comparison.libraries:
        lines.append("  library tests (before -> now):")
        width = max(len(short(n)) for n in comparison.libraries)
        for library, entry in comparison.libraries.items():
            mark = "  REGRESSED" if library in comparison.regressions else ""
            reused = " (reused: same inputs)" if entry.get("reused_from") else ""
            lines.append(f"    {short(library):<{width}}  {entry['before']} -> {entry['now']}{mark}{reused}")
            for test in entry.get("failing", [])[:10]:
                lines.append(f"      failing: {test}")
    for nid in comparison.broken:
        lines.append(f"  FAILED to build: {nid}")
    return "\n".join(lines)


def adopt(candidate_lock: Path, lock: Path) -> None:
    """Write the candidate's lock as the environment's: the same pins, recorded as made from the
    environment's own spec (without the fork), atomically."""
    document = tomllib.loads(candidate_lock.read_text())
    document["tool"]["graphbuild"]["spec"].pop("fork", None)
    text = lockfile.HEADER + tomli_w.dumps(document)
    lockfile.parse(text)  # what is written is a lock graphbuild reads
    tmp = lock.with_name(f".{lock.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, lock)


def moved_between(lock: Path, candidate_lock: Path) -> dict[str, tuple[str | None, str | None]]:
    """The packages whose versions differ between two lock files."""
    before, now = (lockfile.parse(path.read_text()).packages for path in (lock, candidate_lock))
    return moved_packages(before, now)
