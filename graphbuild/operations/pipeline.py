"""The pipeline use case (`graphbuild ci gitlab`): a GitLab CI child pipeline for the targets
(or those a change affects).

One job per target that declares nodes, `needs:` following the target graph so a job starts
as soon as what it depends on is built; every job shares work through the remote cache and
keeps JUnit reports; a final job runs the pushes, and only when every other job passed.

In a merge-request pipeline from a fork every job reads the shared cache and never writes it
(GRAPHBUILD_REMOTE_CACHE_READONLY=1), and nothing is pushed. That is a convenience, not the
trust boundary: the pipeline's YAML is the merge request's to change. The boundary is the
signing key, a protected CI variable that merge-request pipelines never receive, and readers
that accept only entries signed by graphbuild.toml's trusted keys.
"""

from __future__ import annotations

import argparse
import re
import shlex
from dataclasses import dataclass
from typing import Any

import networkx as nx

from graphbuild.errors import EXIT_OK
from graphbuild.labels import Label
from graphbuild.operations.session import REMOTE_ENV, Session

#: GitLab's test for a merge-request pipeline whose source branch lives in another project (a fork)
FORK_MERGE_REQUEST = ("$CI_MERGE_REQUEST_SOURCE_PROJECT_ID && "
                      "$CI_MERGE_REQUEST_SOURCE_PROJECT_ID != $CI_MERGE_REQUEST_PROJECT_ID")


def _job_rules() -> list[dict[str, Any]]:
    """Read-only shared cache for a fork's merge request (job rules: variables set by
    workflow rules are not honoured everywhere, e.g. by gitlab-ci-local)."""
    return [{"if": FORK_MERGE_REQUEST, "variables": {f"{REMOTE_ENV}_READONLY": "1"}}, {"when": "on_success"}]


@dataclass(frozen=True)
class PipelineReport:
    pipeline: dict[str, Any]
    exit_code: int = EXIT_OK


def gitlab(session: Session, args: argparse.Namespace) -> PipelineReport:
    if args.affected_since:
        from graphbuild.operations.affected import affected

        labels = list(affected(session, args.targets, args.affected_since).targets)
    else:
        labels = session.labels(args.targets)
    return PipelineReport(gitlab_pipeline(session, labels, args))


def gitlab_pipeline(session: Session, labels: list[Label], args: argparse.Namespace) -> dict[str, Any]:
    gb = args.graphbuild
    remote = session.remote_url
    variables = {REMOTE_ENV: remote} if remote else {}
    default: dict[str, Any] = {}
    if args.image:
        default["image"] = args.image
    if args.before_script:
        default["before_script"] = list(args.before_script)
    pipeline: dict[str, Any] = {"stages": ["build", "test", "push"]}
    if default:
        pipeline["default"] = default
    if variables:
        pipeline["variables"] = variables
    if not labels:
        pipeline["nothing-affected"] = {"stage": "build", "script": ["echo 'no target is affected by this change'"]}
        return pipeline
    analysis = session.analyze(labels)
    with_nodes = [lab for lab in analysis.targets if analysis.target_nodes.get(lab)]
    if args.affected_since:  # only the affected targets: what they need unchanged is in the shared cache
        affected = set(labels)
        with_nodes = [lab for lab in with_nodes if lab in affected]
    job_of = {lab: _job_name(lab) for lab in with_nodes}
    graph: nx.DiGraph = analysis.target_graph
    pushers: list[str] = []
    test_jobs: list[str] = []
    for label in sorted(with_nodes, key=str):
        phases = {analysis.nodes[nid].phase for nid in analysis.target_nodes[label]}
        verb = "test" if "test" in phases else "build"
        needs = sorted({job_of[dep] for dep in _nearest_with_jobs(graph, label, job_of)})
        job: dict[str, Any] = {
            "stage": verb,
            "needs": needs,
            "script": [f"{gb} {verb} {shlex.quote(str(label))} --junit-dir reports"],
            "rules": _job_rules(),
        }
        if verb == "test":
            job["artifacts"] = {"when": "always", "paths": ["reports/"], "reports": {"junit": "reports/*.xml"}}
            test_jobs.append(job_of[label])
        pipeline[job_of[label]] = job
        if "run" in phases and label in labels:
            pushers.append(str(label))
    if pushers:
        pipeline["push"] = {
            "stage": "push",
            "needs": sorted(job_of.values()),
            "script": [f"{gb} run " + " ".join(shlex.quote(p) for p in pushers)],
            "rules": [{"if": FORK_MERGE_REQUEST, "when": "never"}, {"when": "on_success"}],
        }
    return pipeline


def _nearest_with_jobs(graph: nx.DiGraph, label: Label, job_of: dict[Label, str]) -> set[Label]:
    """The closest dependencies that have jobs (through targets that have none, like py_layer)."""
    found: set[Label] = set()
    stack = list(graph.successors(str(label)))
    seen: set[str] = set()
    while stack:
        dep = stack.pop()
        if dep in seen:
            continue
        seen.add(dep)
        dep_label = Label.parse(dep)
        if dep_label in job_of:
            found.add(dep_label)
        else:
            stack.extend(graph.successors(dep))
    return found


def _job_name(label: Label) -> str:
    return re.sub(r"[^A-Za-z0-9_./:-]", "_", str(label).removeprefix("//")) or "root"
