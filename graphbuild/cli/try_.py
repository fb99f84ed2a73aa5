"""`graphbuild try ENV --upgrade PKG [--upgrade REQ] [--adopt]`: test a candidate upgrade.

The candidate is a fork of ENV (`ENV.candidate`, the rules' `fork`/`upgrade` attributes) with a
lock file of its own; it is locked, built and tested like any environment, so layers it shares
with ENV are ENV's nodes and test results whose inputs did not change are reused. The rules
compare it with ENV (`graphbuild.rules.python.candidates`). Exit 0: nothing regressed; 1: a
library that passed fails now (or the candidate could not be built); 2: bad input.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Iterator

from graphbuild.cli.output import emit_json
from graphbuild.cli.session import Session
from graphbuild.errors import EXIT_BAD_INPUT, EXIT_BUILD_FAILED, EXIT_OK, UsageError
from graphbuild.labels import Label
from graphbuild.loading.loader import Target
from graphbuild.reporting.console import ConsoleReporter

_HELP = "lock a candidate of an environment with some packages moved forward, test every library in it, compare"


def add_parser(sub: argparse._SubParsersAction, parent: argparse.ArgumentParser) -> None:
    parser = sub.add_parser("try", parents=[parent], help=_HELP, description=_HELP + ". Exit 0 when nothing "
                            "regressed, 1 when a library that passed fails now, 2 on bad input.")
    parser.add_argument("environment", metavar="ENV", help="the environment (//envs:prod)")
    parser.add_argument("--upgrade", action="append", default=[], metavar="REQ",
                        help="a package to move forward: NAME (the newest the stack allows) or a requirement "
                             "(\"pandas>=2.2\"); repeatable")
    parser.add_argument("--all", action="store_true", dest="upgrade_all",
                        help="every package to the newest version the environment's spec allows (what "
                             "`graphbuild lock --upgrade` would take); what scheduled pipelines run")
    parser.add_argument("--adopt", action="store_true",
                        help="when nothing regressed, write the candidate's lock as the environment's")
    parser.set_defaults(handler=run_try)


def run_try(session: Session, args: argparse.Namespace) -> int:
    reporter = ConsoleReporter(verbose=args.verbose, quiet=args.quiet or args.json)
    try:
        with _one_try_per_workspace(session):
            return _try(session, args, reporter)
    finally:
        reporter.flush()


@contextlib.contextmanager
def _one_try_per_workspace(session: Session) -> Iterator[None]:
    """Two `try` at once in one workspace would write the same candidate lock file under each
    other: the second waits for the first (a lock the kernel releases if the process dies)."""
    import fcntl

    import xxhash

    path = session.cache.tmp / f"try-{xxhash.xxh3_64_hexdigest(str(session.workspace.root).encode())}.lock"
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


def _try(session: Session, args: argparse.Namespace, reporter: ConsoleReporter) -> int:
    from graphbuild.cli.build import _execute
    from graphbuild.rules.python import candidates
    from graphbuild.rules.python.env_image import ImageInfo
    from graphbuild.rules.python.environment import EnvironmentInfo

    started = time.monotonic()
    if not args.upgrade and not args.upgrade_all:
        raise UsageError("try needs --upgrade PKG (repeatable) or --all", hint="try //envs:prod --upgrade numpy")
    for text in args.upgrade:
        try:
            candidates.check_upgrade(text)
        except ValueError as err:
            raise UsageError(f"--upgrade: {err}") from None
    labels = session.labels([args.environment])
    if len(labels) != 1:
        raise UsageError(f"try {args.environment}: names {len(labels)} targets; name one environment")
    env = labels[0]
    target = session.loader.target(env)
    if target.rule.name != "environment":
        raise UsageError(f"{env} is a {target.rule.name}, not an environment", hint="try //envs:prod --upgrade numpy")
    # 1. the candidate's lock, from the environment's (which is never written)
    candidate, outcomes = lock_candidate(session, reporter, target, list(args.upgrade), args.upgrade_all)
    lock_node = f"{candidate}#lock"
    if not outcomes[lock_node].ok:
        failure = outcomes[lock_node]
        where = f"{failure.location}: " if failure.location else ""
        _say(args, f"error: {where}cannot lock the candidate: {failure.message}")
        code = EXIT_BAD_INPUT if failure.bad_input else EXIT_BUILD_FAILED
        if args.json:
            emit_json({"command": "try", "environment": str(env), "error": failure.message, "exit_code": code})
        return code
    # 2. both environments built and tested: what they share is one node
    analysis = session.analyze([env, candidate])
    order = analysis.closure([env, candidate], "test")
    outcomes.update(_execute(session, reporter, analysis, order, []))
    before, now = analysis.providers[env], analysis.providers[candidate]
    if ImageInfo not in before:
        raise UsageError(f"{env} has no base: there is no image to test a candidate in")

    def tests(providers: dict) -> dict[str, str]:
        return {_library_of(providers, nid): nid for nid in providers[ImageInfo].tests}

    comparison = candidates.compare(before[EnvironmentInfo].packages, now[EnvironmentInfo].packages, tests(before),
                                    tests(now), outcomes, analysis.target_nodes[candidate])
    clean = not comparison.regressions and not comparison.broken
    adopted = False
    if args.adopt and clean:
        root = session.workspace.root
        candidates.adopt(root / now[EnvironmentInfo].lock_path, root / before[EnvironmentInfo].lock_path)
        adopted = True
    code = EXIT_OK if clean else EXIT_BUILD_FAILED
    ran = sum(1 for o in outcomes.values() if o.status == "ran")
    cached = sum(1 for o in outcomes.values() if o.status == "cached")
    if args.json:
        emit_json({"command": "try", "environment": str(env), "candidate": str(candidate),
                   "upgrade": list(args.upgrade), "all": args.upgrade_all,
                   "candidate_lock": now[EnvironmentInfo].lock_path,
                   **comparison.to_json(), "adopted": adopted, "exit_code": code,
                   "nodes": [{"id": nid, "status": outcomes[nid].status, "key": outcomes[nid].key,
                              "cached_from": outcomes[nid].cached_from} for nid in [lock_node, *order]
                             if nid in outcomes],
                   "summary": {"ran": ran, "cached": cached, "seconds": round(time.monotonic() - started, 3)}})
        return code
    reporter.flush()
    text = candidates.render(comparison, str(env), str(candidate))
    if comparison.regressions:
        text += "\nREGRESSED: " + ", ".join(candidates.short(lab) for lab in comparison.regressions)
    elif clean:
        text += f"\nnothing regressed; the candidate's lock is {now[EnvironmentInfo].lock_path}"
        text += (f" (adopted: {before[EnvironmentInfo].lock_path} rewritten)" if adopted
                 else f" (`--adopt` writes it as {before[EnvironmentInfo].lock_path})")
    if args.adopt and not clean:
        text += f"\nnot adopted: {before[EnvironmentInfo].lock_path} is unchanged"
    sys.stdout.write(text + f"\n{len(outcomes)} nodes: {ran} ran, {cached} cached in "
                     f"{time.monotonic() - started:.2f} s\n")
    return code


def _library_of(providers: dict, test_node: str) -> str:
    """The library label a test node of an environment tests."""
    from graphbuild.rules.python.environment import EnvironmentInfo

    short = test_node.split("#test.", 1)[1]
    for library in providers[EnvironmentInfo].libraries:
        if library.label.rsplit(":", 1)[-1] == short:
            return library.label
    return short


def lock_candidate(session: Session, reporter: ConsoleReporter, target: Target, upgrades: list[str],
                   upgrade_all: bool = False) -> tuple[Label, dict]:
    """Declare the candidate of `target` and run its lock node: its label and the outcomes."""
    from graphbuild.cli.build import _execute

    candidate = _declare_candidate(session, target, upgrades)
    analysis = session.analyze([candidate], locking=True)
    outcomes = _execute(session, reporter, analysis, [f"{candidate}#lock"], [],
                        options={"upgrade": upgrade_all})
    return candidate, outcomes


def _declare_candidate(session: Session, target: Target, upgrades: list[str]) -> Label:
    """`environment(name = "<env>.candidate", fork = "<env>", upgrade = [...])`, in the
    environment's package for this command only."""
    from graphbuild.rules.python.candidates import CANDIDATE_SUFFIX

    label = target.label
    name = label.name + CANDIDATE_SUFFIX
    package = session.loader.package(label.package)
    if name in package.targets:
        raise UsageError(f"{package.build_file} declares a target {name!r}, the name `try` gives the candidate",
                         hint="rename that target")
    attrs = target.rule.attrs.model_validate({"name": name, "fork": str(label), "upgrade": upgrades},
                                             context={"package": label.package})
    package.targets[name] = Target(Label(label.package, name), target.rule, attrs, target.location)
    return Label(label.package, name)


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        sys.stderr.write(text + "\n")


__all__ = ["add_parser", "run_try"]
