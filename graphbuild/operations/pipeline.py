"""The pipeline use case (`graphbuild ci gitlab`): a GitLab CI child pipeline for the targets
(or those a change affects).

One job per target that declares nodes, `needs:` following the target graph so a job starts
as soon as what it depends on is built; every job shares work through the remote cache and
keeps JUnit reports; a final job runs the pushes, and only when every other job passed.

Jobs run on a stock runner with the Docker executor: every job runs in the job image (graphbuild
and what it drives, built by graphbuild from this repository's `//:ci` and named by digest) and
reaches a Docker engine the way the runner offers one (`--docker-engine`): GitLab's docker:dind
service over TLS (the default), the same in a Kubernetes pod, or the runner host's socket.
Registry credentials are never in the YAML: graphbuild reads GitLab's own variables at run time.

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
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from graphbuild.errors import EXIT_OK
from graphbuild.graph import DiGraph
from graphbuild.labels import Label
from graphbuild.operations import REMOTE_ENV

if TYPE_CHECKING:
    from graphbuild.operations.session import Session

#: GitLab's test for a merge-request pipeline whose source branch lives in another project (a fork)
FORK_MERGE_REQUEST = ("$CI_MERGE_REQUEST_SOURCE_PROJECT_ID && "
                      "$CI_MERGE_REQUEST_SOURCE_PROJECT_ID != $CI_MERGE_REQUEST_PROJECT_ID")


#: Where dind writes its TLS certificates: the server's under it, the client's in `client/`,
#: a volume the runner shares between the service and the job (GitLab's documented set-up)
CERTS = "/certs"
#: the local cache inside the project's directory, which the engine's service sees too
#: (graphbuild-out/ is never a workspace input)
SHARED_CACHE = "$CI_PROJECT_DIR/graphbuild-out/.cache"
#: --docker-engine: the variables a job needs to reach the engine, and whether it is a service
ENGINES: dict[str, dict[str, Any]] = {
    # the Docker executor links the service to the job under its alias
    # (and mounts the builds directory into it: the cache, where test trees are staged for the
    # test containers' bind mounts, goes there so the engine sees the same paths)
    "dind": {"service": True, "variables": {"DOCKER_HOST": "tcp://docker:2376", "DOCKER_TLS_CERTDIR": CERTS,
                                            "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": f"{CERTS}/client",
                                            "GRAPHBUILD_CACHE_DIR": SHARED_CACHE}},
    # services share the job's pod (and its build volume): the engine is on localhost; the
    # certificates need an emptyDir volume at /certs/client in the runner's config; the pod
    # starts without waiting for the service, so the jobs wait for the engine
    "kubernetes": {"service": True, "variables": {"DOCKER_HOST": "tcp://localhost:2376",
                                                  "DOCKER_TLS_CERTDIR": CERTS, "DOCKER_TLS_VERIFY": "1",
                                                  "DOCKER_CERT_PATH": f"{CERTS}/client",
                                                  "GRAPHBUILD_CACHE_DIR": SHARED_CACHE}},
    # the runner mounts the host's engine socket (jobs then control that engine: trusted runners
    # only); test containers' bind mounts are host paths, so the runner mounts a host directory
    # at the same path and GRAPHBUILD_CACHE_DIR points into it (a runner setting, not the YAML's)
    "socket": {"service": False, "variables": {}},
}
#: before each job with an engine service: wait (up to a minute) until the engine answers
WAIT_FOR_ENGINE = ('for i in $(seq 60); do python -c "import docker; docker.from_env().ping()" 2>/dev/null && break; '
                   'sleep 1; done')


def _job_rules() -> list[dict[str, Any]]:
    """Read-only shared cache for a fork's merge request (job rules: variables set by
    workflow rules are not honoured everywhere, e.g. by gitlab-ci-local)."""
    return [{"if": FORK_MERGE_REQUEST, "variables": {f"{REMOTE_ENV}_READONLY": "1"}}, {"when": "on_success"}]


@dataclass(frozen=True)
class PipelineReport:
    pipeline: dict[str, Any]
    exit_code: int = EXIT_OK


def gitlab(session: Session, args: argparse.Namespace, *,
           pin_job_image: Callable[[str], str] | None = None) -> PipelineReport:
    """`pin_job_image`: the job image's reference pinned to its digest (needed with --job-image)."""
    if args.affected_since:
        from graphbuild.operations.affected import affected

        labels = list(affected(session, args.targets, args.affected_since).targets)
    else:
        labels = session.labels(args.targets)
    return PipelineReport(gitlab_pipeline(session, labels, args, pin_job_image))


def gitlab_pipeline(session: Session, labels: list[Label], args: argparse.Namespace,
                    pin_job_image: Callable[[str], str] | None = None) -> dict[str, Any]:
    gb = args.graphbuild
    remote = session.remote_url
    engine_name = args.docker_engine or ("dind" if args.job_image else None)
    engine = ENGINES[engine_name] if engine_name else {"service": False, "variables": {}}
    variables = {REMOTE_ENV: remote} if remote else {}
    variables.update(engine["variables"])
    default: dict[str, Any] = {}
    if args.job_image:
        if pin_job_image is None:
            raise TypeError("--job-image needs pin_job_image")
        default["image"] = pin_job_image(args.job_image)
    if engine["service"]:
        default["services"] = [{"name": args.dind_image, "alias": "docker"}]
    before = ([WAIT_FOR_ENGINE] if engine["service"] and args.job_image else []) + list(args.before_script)
    if before:
        default["before_script"] = before
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
    graph = analysis.target_graph
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


def _nearest_with_jobs(graph: DiGraph, label: Label, job_of: dict[Label, str]) -> set[Label]:
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
