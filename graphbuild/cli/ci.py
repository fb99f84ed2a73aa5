"""`graphbuild ci gitlab`: print a GitLab CI child pipeline (see `graphbuild.operations.pipeline`)."""

from __future__ import annotations

import argparse
from typing import Any

from graphbuild.cli.options import add_global_options
from graphbuild.verbs import Verb


def _configure(parser: argparse.ArgumentParser) -> None:
    ci_sub = parser.add_subparsers(dest="ci_system", metavar="SYSTEM", required=True,
                                   parser_class=type(parser))
    gitlab = ci_sub.add_parser("gitlab", help="a GitLab CI child pipeline (YAML on stdout)",
                               description="Print a GitLab CI child pipeline building, testing and pushing the "
                                           "targets, one job per target, sharing work through the remote cache.")
    gitlab.add_argument("targets", nargs="*", default=["//..."], metavar="TARGET", help="default: //...")
    gitlab.add_argument("--affected-since", metavar="REV", help="only targets a change since REV affects")
    gitlab.add_argument("--job-image", "--image", dest="job_image", metavar="REF",
                        help="the image jobs run in, with graphbuild (`graphbuild run //:ci` of graphbuild's "
                             "repository pushes one); a tag is pinned to its digest now (default: the runner's)")
    gitlab.add_argument("--docker-engine", choices=("dind", "kubernetes", "socket"), default=None,
                        help="how jobs reach a Docker engine: dind (GitLab's docker:dind service over TLS, "
                             "the Docker executor), kubernetes (the same service in the job's pod), socket "
                             "(the runner mounts the host's /var/run/docker.sock); default: dind with "
                             "--job-image, else nothing (the runner's shell has one)")
    gitlab.add_argument("--dind-image", default="docker:dind", metavar="REF",
                        help="the Docker-in-Docker service's image (default: docker:dind)")
    gitlab.add_argument("--before-script", action="append", default=[], metavar="CMD",
                        help="a command run before each job; repeatable")
    gitlab.add_argument("--graphbuild", default="graphbuild", metavar="CMD", help="how jobs call graphbuild")
    gitlab.add_argument("--upgrades", action="store_true",
                        help="instead: a pipeline for a scheduled run trying newer versions of each environment's "
                             "packages (`graphbuild try ENV --all`), a job per environment that has some")
    add_global_options(gitlab, on_verb=True)


def run(ctx: Any, args: argparse.Namespace) -> Any:
    from graphbuild.cli.registry import rule_hook

    if args.upgrades:  # candidate upgrades are the Python rules' to find
        return rule_hook("ci.upgrades")(ctx, args)
    from graphbuild.operations.pipeline import gitlab
    from graphbuild.reporting.pipeline import rendered

    # reading image references is the OCI rules' business
    pin = rule_hook("ci.pin_job_image") if args.job_image else None
    return rendered(gitlab(ctx.session, args, pin_job_image=pin))


VERBS = [Verb("ci", "generate CI pipelines", _configure, run)]
