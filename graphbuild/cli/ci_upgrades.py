"""`graphbuild ci gitlab --upgrades`: a pipeline for a scheduled GitLab pipeline that tries the
newer versions of every environment's packages (`graphbuild try ENV --all`).

Generating it resolves each environment's candidate (`try`'s first step: one lock of a fork,
nothing built), so the pipeline has a job only for the environments with newer versions
available; each job builds and tests its candidate, keeps the report (`reports/try-*.json`
and the text) as an artifact whatever the outcome, and fails when a library regressed.
"""

from __future__ import annotations

import argparse
import re
import shlex
from typing import Any

from graphbuild.cli.session import REMOTE_ENV, Session
from graphbuild.errors import UsageError
from graphbuild.labels import Label
from graphbuild.reporting.console import ConsoleReporter

STAGE = "upgrades"


def upgrades_pipeline(session: Session, labels: list[Label], args: argparse.Namespace) -> dict[str, Any]:
    from graphbuild.cli.try_ import lock_candidate
    from graphbuild.rules.python.candidates import moved_between

    gb = args.graphbuild
    environments = [lab for lab in labels if session.loader.target(lab).rule.name == "environment"
                    and getattr(session.loader.target(lab).attrs, "base", None) is not None]
    pipeline: dict[str, Any] = {"stages": [STAGE]}
    default: dict[str, Any] = {}
    if args.image:
        default["image"] = args.image
    if args.before_script:
        default["before_script"] = list(args.before_script)
    if default:
        pipeline["default"] = default
    remote = args.remote_cache or session.workspace.config.get("cache", {}).get("remote")
    if remote:
        pipeline["variables"] = {REMOTE_ENV: remote}
    reporter = ConsoleReporter(quiet=True)
    found: dict[Label, dict[str, Any]] = {}
    for label in environments:
        target = session.loader.target(label)
        candidate, outcomes = lock_candidate(session, reporter, target, [], upgrade_all=True)
        outcome = outcomes[f"{candidate}#lock"]
        if not outcome.ok:
            raise UsageError(f"cannot resolve newer versions for {label}: {outcome.message}")
        root = session.workspace.root
        package = label.package
        moved = moved_between(root / package / f"pylock.{label.name}.toml",
                              root / package / f"pylock.{candidate.name}.toml")
        if moved:
            found[label] = moved
    reporter.flush()
    if not found:
        pipeline["no-upgrades"] = {"stage": STAGE, "script": ["echo 'every environment has the newest versions "
                                                              "its spec allows'"]}
        return pipeline
    for label, moved in sorted(found.items(), key=lambda item: str(item[0])):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label).removeprefix("//"))
        report = f"reports/try-{slug}"
        newer = ", ".join(f"{n} {old} -> {new}" for n, (old, new) in sorted(moved.items()))
        pipeline[f"upgrade:{slug}"] = {
            "stage": STAGE,
            "script": [
                f"echo 'newer versions for {label} when this pipeline was made: {newer[:400]}'",
                "mkdir -p reports",
                # the reports are written whatever the outcome; the job fails on a regression (exit 1),
                # the second run reuses every result of the first
                f"status=0; {gb} try {shlex.quote(str(label))} --all --json > {report}.json || status=$?; "
                f"{gb} try {shlex.quote(str(label))} --all -q > {report}.txt || true; exit $status",
            ],
            "artifacts": {"when": "always", "paths": ["reports/"], "expire_in": "30 days"},
        }
    return pipeline
