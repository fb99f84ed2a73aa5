"""Affected targets: the targets a change since git revision REV can affect.

Both revisions are analysed (REV from a temporary checkout of its tracked files) and their
nodes' static fingerprints compared: a target is affected when any node it needs differs.
Precise by construction: editing one target of a BUILD.envs affects that target and what
depends on it, not the whole file; a file that is no node's input affects nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from graphbuild.analysis.analyzer import Analysis, Analyzer
from graphbuild.analysis.fingerprint import fingerprints
from graphbuild.errors import EXIT_OK, GraphbuildError, SpecError, UsageError
from graphbuild.labels import Label
from graphbuild.loading.loader import Loader
from graphbuild.loading.workspace import Workspace

if TYPE_CHECKING:
    from graphbuild.operations.session import Session


@dataclass(frozen=True)
class AffectedReport:
    since: str
    targets: tuple[Label, ...]
    nodes: tuple[str, ...]
    #: said beside the answer (stderr, `warnings` in --json): e.g. that it is coarser than usual
    warnings: tuple[str, ...] = ()
    exit_code: int = EXIT_OK


STALE_LOCKS = ("some lock files are out of date; comparing specs and sources (run 'graphbuild lock' for a "
               "node-precise answer)")


def affected(session: Session, patterns: list[str], since: str) -> AffectedReport:
    """The affected targets and nodes among `patterns`, between `since` and now."""
    current_labels = session.labels(patterns)
    try:
        current = session.analyze(current_labels)
        locking = False
    except SpecError:
        # Typically a lock file not yet rewritten after a spec change: compare what can be
        # compared without locks (specs, sources), and let changes flow up the target graph.
        current = session.analyze(current_labels, locking=True)
        locking = True
    with _checkout(session.workspace.root, since) as old_root:
        old_loader: Loader | None = None
        try:
            old_loader = Loader(Workspace.at(old_root), session.loader.builtin_rules,  # its config, its plugins
                                linked_roots=[session.workspace.root])
            old = Analyzer(old_loader, session.files.digest, locking=locking,
                           linked_roots=[session.workspace.root]).analyze(
                _labels_at(old_loader, current_labels))
        except GraphbuildError as err:
            raise UsageError(f"the spec at {since} does not analyse: {err.render()}",
                             hint="affected needs both revisions to be valid specs") from None
        finally:
            if old_loader is not None:
                old_loader.close()
        old_fp = fingerprints(old)  # node ids and input paths are workspace-relative: comparable
    new_fp = fingerprints(current)
    changed = {nid for nid, fp in new_fp.items() if old_fp.get(nid) != fp}
    if locking:
        touched = {str(current.nodes[nid].label) for nid in changed}
        graph = current.target_graph
        labels = [lab for lab in current_labels
                  if ({str(lab)} | graph.descendants(str(lab))) & touched]
    else:
        labels = [lab for lab in current_labels if _needs(current, lab) & changed]
    warnings = (STALE_LOCKS,) if locking else ()
    return AffectedReport(since, tuple(labels), tuple(sorted(changed)), warnings)


def _needs(analysis: Analysis, label: Label) -> set[str]:
    return set(analysis.closure([label], "run")) | set(analysis.closure([label], "lock"))


def _labels_at(loader: Loader, labels: list[Label]) -> list[Label]:
    """The labels that still exist at the old revision (new targets are affected anyway)."""
    found = []
    for label in labels:
        try:
            loader.target(label)
        except GraphbuildError:
            continue
        found.append(label)
    return found


class _checkout:
    """The tracked files of REV in a temporary directory; ignored paths of the working tree
    (the base image tarball, generated repositories) are linked in, since no revision has them."""

    def __init__(self, root: Path, rev: str):
        self.root = root
        self.rev = rev
        self.tmp: Path | None = None

    def __enter__(self) -> Path:
        git = ["git", "-C", str(self.root)]
        try:
            top = Path(subprocess.run([*git, "rev-parse", "--show-toplevel"], check=True, capture_output=True,
                                      text=True).stdout.strip())
            subprocess.run([*git, "rev-parse", "--verify", "--quiet", f"{self.rev}^{{commit}}"], check=True,
                           capture_output=True)
        except (OSError, subprocess.CalledProcessError):
            raise UsageError(f"{self.rev!r} is not a revision of a git repository at {self.root}",
                             hint="pass a branch, tag or commit: --since main") from None
        self.tmp = Path(tempfile.mkdtemp(prefix="graphbuild-affected-"))
        archive = subprocess.Popen([*git, "archive", "--format=tar", self.rev], stdout=subprocess.PIPE,
                                   cwd=top)
        subprocess.run(["tar", "-x", "-C", str(self.tmp)], stdin=archive.stdout, check=True)
        archive.wait()
        prefix = self.root.resolve().relative_to(top.resolve())
        old_root = self.tmp / prefix
        ignored = subprocess.run([*git, "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
                                 capture_output=True, text=True, cwd=self.root).stdout.splitlines()
        for rel in ignored:
            rel = rel.rstrip("/")
            if not rel or rel.startswith(("graphbuild-out", ".venv")) or "__pycache__" in rel:
                continue
            source, dest = self.root / rel, old_root / rel
            if not dest.exists() and not dest.is_symlink():
                dest.parent.mkdir(parents=True, exist_ok=True)
                os.symlink(source, dest)
        return old_root

    def __exit__(self, *exc: object) -> None:
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
