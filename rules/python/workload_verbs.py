"""`graphbuild exec` and `graphbuild try`, and the pipeline of `graphbuild ci gitlab --upgrades`,
run through the verb registry (`graphbuild.api.VerbContext`); declared in `verbs.py`.

exec: the nodes up to the environment's `#load` run through the cache like any node, then the
command runs in a container (`workload.docker_run_args`), its exit status the verb's.
try: the candidate is a fork of the environment (`fork.py`), declared for this command as the
target `ENV.candidate`; its lock node runs, then both environments' test closures, then the
two are compared (`candidates.py`).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import os
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from graphbuild.api import Label, Report, UsageError, VerbContext
from graphbuild.rules.python import candidates
from graphbuild.rules.python.env_image import ImageInfo
from graphbuild.rules.python.environment import EnvironmentInfo
from graphbuild.rules.python.fork import CANDIDATE_SUFFIX, EVERYTHING
from graphbuild.rules.python.workload import WorkloadInfo, docker_run_args, parse_env_flags

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


# -- exec -------------------------------------------------------------------------------------------


def run_exec(ctx: VerbContext, args: argparse.Namespace) -> Report:
    command = list(args.command or [])
    if command[:1] == ["--"]:
        command = command[1:]
    if args.pick:
        # no ENV with --pick: what the parser took for one is the command's first word
        command = [args.environment, *command] if args.environment else command
        if not command:
            raise UsageError("exec --pick: no command to run",
                             hint="graphbuild exec --pick --requires numpy -- python job.py")
        args.environment = _picked(ctx, args)
        if args.environment is None:
            return Report(data={"picked": None}, exit_code=EXIT_FAILED)
    elif args.requires or args.library or args.script:
        raise UsageError("--requires, --library and --script describe a workload for --pick",
                         hint="add --pick (and drop ENV), or drop them")
    if not args.environment:
        raise UsageError("exec needs an environment and a command", hint="graphbuild exec //envs:prod -- python -V")
    if not command:
        raise UsageError(f"exec {args.environment}: no command to run",
                         hint=f"put it after '--': graphbuild exec {args.environment} -- python -V")
    try:
        env = parse_env_flags(args.env_vars)
    except ValueError as err:
        raise UsageError(str(err)) from None
    # -C DIR is "as if started in DIR": DIR is the current directory mounted
    directory = ctx.cwd / os.path.expanduser(args.workdir) if args.workdir else ctx.cwd
    if not directory.is_dir():
        raise UsageError(f"--workdir {args.workdir}: no such directory")
    label = _one(ctx, args.environment, "exec")
    analysis = ctx.analyze([label])
    workload = analysis.providers[label].get(WorkloadInfo)
    if workload is None:
        raise UsageError(f"{label} is not an environment with a base image: there is no image to run in",
                         hint="exec takes an environment(...) that has a base")
    report = ctx.execute([analysis.nodes[workload.load_node]], analysis=analysis)
    loaded = report.outcomes.get(workload.load_node)
    if loaded is None or loaded.status not in ("ran", "cached"):
        failed = [nid for nid, o in report.outcomes.items() if o.status == "failed"]
        ctx.reporter.flush()
        sys.stderr.write(f"error: the image could not be built or loaded ({', '.join(failed) or workload.load_node}"
                         " failed, above); nothing was run\n")
        return Report(data={"environment": str(label), "ran": False}, exit_code=EXIT_FAILED)
    image = loaded.metadata["tags"][0]
    session = getattr(ctx, "session", None)
    argv = docker_run_args(image, command, directory=str(directory.resolve()), resources=workload.resources,
                           network=args.network, env=env, tty=sys.stdin.isatty() and sys.stdout.isatty(),
                           run_id=session.run.id if session is not None else "", label=str(label))
    if args.verbose:
        sys.stderr.write("exec: " + shlex.join(argv) + "\n")
    ctx.reporter.flush()
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        code = subprocess.call(argv)
    except FileNotFoundError:
        raise UsageError("the docker command is not installed (exec runs `docker run`)") from None
    return Report(data={"environment": str(label), "image": image, "command": command, "exit_status": code},
                  exit_code=code)


def _picked(ctx: VerbContext, args: argparse.Namespace) -> str | None:
    """The environment `graphbuild pick` chooses for the workload (said on stderr), or None
    after saying why none qualifies."""
    from graphbuild.rules.python import imports, pick
    from graphbuild.rules.python.matrix_verbs import Host

    if not (args.requires or args.library or args.script):
        raise UsageError("exec --pick needs a workload: --requires, --library or --script (or several)",
                         hint="graphbuild exec --pick --requires 'numpy>=2' -- python job.py")
    requires = pick.parse_requirements(args.requires)
    script_imports = imports.script_imports(ctx.cwd / args.script, args.script) if args.script else {}
    host = Host(ctx)
    library = host.select([args.library], host.workspace.libraries, "library")[0] if args.library else None
    choice = host.pick(requires=requires, library=library, script_imports=script_imports)
    ctx.reporter.flush()
    if choice.chosen is None:
        sys.stderr.write(pick.render(choice) + "\n")
        return None
    others = [c.label for c in choice.ranking if c is not choice.chosen and c.qualifies]
    sys.stderr.write(f"exec: picked {choice.chosen.label}, the smallest environment that can run it"
                     + (f" (also possible: {', '.join(others)})" if others else "") + "\n")
    return choice.chosen.label


def _one(ctx: VerbContext, pattern: str, verb: str) -> Label:
    labels = ctx.labels([pattern])
    if len(labels) != 1:
        raise UsageError(f"{verb} {pattern}: names {len(labels)} targets; name one environment", hint="//envs:prod")
    return labels[0]


# -- try --------------------------------------------------------------------------------------------


def run_try(ctx: VerbContext, args: argparse.Namespace) -> Report:
    with _one_try_per_workspace(ctx):
        return _try(ctx, args)


@contextlib.contextmanager
def _one_try_per_workspace(ctx: VerbContext) -> Iterator[None]:
    """Two `try` at once in one workspace would write the same candidate lock file under each
    other: the second waits for the first (a lock the kernel releases if the process dies)."""
    path = ctx.root / "graphbuild-out" / ".try.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            sys.stderr.write("waiting for another `graphbuild try` in this workspace to finish...\n")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _try(ctx: VerbContext, args: argparse.Namespace) -> Report:
    started = time.monotonic()
    if not args.upgrade and not args.upgrade_all:
        raise UsageError("try needs --upgrade PKG (repeatable) or --all", hint="try //envs:prod --upgrade numpy")
    for text in args.upgrade:
        try:
            if text == EVERYTHING:
                raise ValueError("'*' is written --all")
            candidates.check_upgrade(text)
        except ValueError as err:
            raise UsageError(f"--upgrade: {err}") from None
    env = _one(ctx, args.environment, "try")
    upgrades = [*args.upgrade, *([EVERYTHING] if args.upgrade_all else [])]
    # 1. the candidate's lock, from the environment's (which is never written)
    candidate, outcomes = lock_candidate(ctx, env, upgrades)
    lock_node = f"{candidate}#lock"
    failure = outcomes[lock_node]
    if failure.status not in ("ran", "cached"):
        where = f"{failure.location}: " if failure.location else ""
        code = EXIT_BAD_INPUT if failure.bad_input else EXIT_FAILED
        ctx.reporter.flush()
        if not ctx.json:
            sys.stderr.write(f"error: {where}cannot lock the candidate: {failure.message}\n")
        return Report(data={"environment": str(env), "error": failure.message}, exit_code=code)
    # 2. both environments built and tested: what they share is one node
    analysis = ctx.analyze([env, candidate])
    if ImageInfo not in analysis.providers[env]:
        raise UsageError(f"{env} has no base: there is no image to test a candidate in")
    order = analysis.closure([env, candidate], "test")
    outcomes.update(ctx.execute([analysis.nodes[nid] for nid in order], analysis=analysis).outcomes)
    before, now = analysis.providers[env], analysis.providers[candidate]

    def tests(providers: dict) -> dict[str, str]:
        return {_library_of(providers, nid): nid for nid in providers[ImageInfo].tests}

    comparison = candidates.compare(before[EnvironmentInfo].packages, now[EnvironmentInfo].packages, tests(before),
                                    tests(now), outcomes, analysis.target_nodes[candidate])
    clean = not comparison.regressions and not comparison.broken
    adopted = False
    if args.adopt and clean:
        candidates.adopt(ctx.root / now[EnvironmentInfo].lock_path, ctx.root / before[EnvironmentInfo].lock_path)
        adopted = True
    code = EXIT_OK if clean else EXIT_FAILED
    ran = sum(1 for o in outcomes.values() if o.status == "ran")
    cached = sum(1 for o in outcomes.values() if o.status == "cached")
    elapsed = time.monotonic() - started
    data = {"environment": str(env), "candidate": str(candidate), "upgrade": list(args.upgrade),
            "all": bool(args.upgrade_all), "candidate_lock": now[EnvironmentInfo].lock_path, **comparison.to_json(),
            "adopted": adopted,
            "nodes": [{"id": nid, "status": outcomes[nid].status, "key": outcomes[nid].key,
                       "cached_from": outcomes[nid].cached_from} for nid in [lock_node, *order] if nid in outcomes],
            "summary": {"ran": ran, "cached": cached, "seconds": round(elapsed, 3)}}
    text = candidates.render(comparison, str(env), str(candidate))
    lock_path = before[EnvironmentInfo].lock_path
    if comparison.regressions:
        text += "\nREGRESSED: " + ", ".join(candidates.short(lab) for lab in comparison.regressions)
    elif clean:
        text += f"\nnothing regressed; the candidate's lock is {now[EnvironmentInfo].lock_path}"
        text += f" (adopted: {lock_path} rewritten)" if adopted else f" (`--adopt` writes it as {lock_path})"
    if args.adopt and not clean:
        text += f"\nnot adopted: {lock_path} is unchanged"
    text += f"\n{len(outcomes)} nodes: {ran} ran, {cached} cached in {elapsed:.2f} s"
    return Report(data=data, text=text, exit_code=code)


def lock_candidate(ctx: VerbContext, env: Label, upgrades: list[str]) -> tuple[Label, dict[str, Any]]:
    """Declare `ENV.candidate` (a fork of ENV with `upgrades`) and run its lock node."""
    candidate = _declare_candidate(ctx, env, upgrades)
    analysis = ctx.analyze([candidate], locking=True)
    report = ctx.execute([analysis.nodes[f"{candidate}#lock"]], analysis=analysis)
    return candidate, dict(report.outcomes)


def _declare_candidate(ctx: VerbContext, env: Label, upgrades: list[str]) -> Label:
    """`environment(name = "<env>.candidate", fork = "<env>", upgrade = [...])` in the
    environment's package, for this command only. (VerbContext declares nodes, not targets:
    the loader of the command's session takes it.)"""
    loader = ctx.session.loader  # type: ignore[attr-defined]
    target = loader.target(env)
    if target.rule.name != "environment":
        raise UsageError(f"{env} is a {target.rule.name}, not an environment", hint="//envs:prod")
    name = env.name + CANDIDATE_SUFFIX
    package = loader.package(env.package)
    existing = package.targets.get(name)
    attrs = target.rule.attrs.model_validate({"name": name, "fork": str(env), "upgrade": upgrades},
                                             context={"package": env.package})
    if existing is not None and existing.attrs.fork != env:
        raise UsageError(f"{package.build_file} declares a target {name!r}, the name `try` gives the candidate",
                         hint="rename that target")
    package.targets[name] = type(target)(Label(env.package, name), target.rule, attrs, target.location)
    return Label(env.package, name)


def _library_of(providers: dict, test_node: str) -> str:
    short = test_node.split("#test.", 1)[1]
    for library in providers[EnvironmentInfo].libraries:
        if library.label.rsplit(":", 1)[-1] == short:
            return library.label
    return short


# -- ci gitlab --upgrades -------------------------------------------------------------------------


def upgrades_pipeline(ctx: VerbContext, args: argparse.Namespace) -> dict[str, Any]:
    """The pipeline of `graphbuild ci gitlab --upgrades`: generating it resolves each
    environment's candidate with every package at the newest version its spec allows (one lock,
    nothing built), and a job is made for each environment where something moved: it runs
    `graphbuild try ENV --all` and keeps `reports/try-<env>.json` and `.txt` whatever the outcome
    (a regression fails the job)."""
    gb = args.graphbuild
    loader = ctx.session.loader  # type: ignore[attr-defined]
    environments = []
    for label in ctx.labels(args.targets):
        target = loader.target(label)
        if target.rule.name == "environment" and target.attrs.base is not None and target.attrs.fork is None:
            environments.append(label)
    pipeline: dict[str, Any] = {"stages": ["upgrades"]}
    default: dict[str, Any] = {}
    if args.job_image:
        default["image"] = args.job_image
    if args.before_script:
        default["before_script"] = list(args.before_script)
    if default:
        pipeline["default"] = default
    remote = args.remote_cache or os.environ.get("GRAPHBUILD_REMOTE_CACHE") \
        or ctx.session.workspace.config.get("cache", {}).get("remote")  # type: ignore[attr-defined]
    if remote:
        pipeline["variables"] = {"GRAPHBUILD_REMOTE_CACHE": remote}
    found: dict[Label, dict[str, Any]] = {}
    for label in environments:
        candidate, outcomes = lock_candidate(ctx, label, [EVERYTHING])
        outcome = outcomes[f"{candidate}#lock"]
        if outcome.status not in ("ran", "cached"):
            raise UsageError(f"cannot resolve newer versions for {label}: {outcome.message}")
        directory = ctx.root / label.package
        moved = candidates.moved_between(directory / f"pylock.{label.name}.toml",
                                         directory / f"pylock.{candidate.name}.toml")
        if moved:
            found[label] = moved
    if not found:
        pipeline["no-upgrades"] = {"stage": "upgrades", "script": [
            "echo 'every environment has the newest versions its spec allows'"]}
        return pipeline
    for label, moved in sorted(found.items(), key=lambda item: str(item[0])):
        slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(label).removeprefix("//"))
        report = f"reports/try-{slug}"
        newer = ", ".join(f"{n} {old} -> {new}" for n, (old, new) in sorted(moved.items()))
        target = shlex.quote(str(label))
        pipeline[f"upgrade:{slug}"] = {
            "stage": "upgrades",
            "script": [
                f"echo 'newer versions for {label} when this pipeline was made: {newer[:400]}'",
                "mkdir -p reports",
                # both reports whatever the outcome; the job fails on a regression (exit 1); the
                # second run reuses every result of the first
                f"status=0; {gb} try {target} --all --json > {report}.json || status=$?; "
                f"{gb} try {target} --all -q > {report}.txt || true; exit $status",
            ],
            "artifacts": {"when": "always", "paths": ["reports/"], "expire_in": "30 days"},
        }
    return pipeline


def run_upgrades_pipeline(ctx: VerbContext, args: argparse.Namespace) -> Report:
    import yaml

    pipeline = upgrades_pipeline(ctx, args)
    return Report(data={"pipeline": pipeline},
                  text="# Generated by `graphbuild ci gitlab --upgrades`; run it from a scheduled pipeline.\n"
                       + yaml.safe_dump(pipeline, sort_keys=False, width=120))
