"""A library's own tests, run inside an environment's image through the Docker engine.

What the tests see: the test image (the environment plus the test runner), the library's tree
mounted read-only at /src *without the packages its wheel installs* (so `import lib` finds the
installed wheel, what ships, never the source next to the tests), /src as working directory
(pytest finds the library's own configuration and conftest.py files there, as on a developer's
machine), a writable /out for the JUnit report and a tmpfs /tmp. The container runs as a
non-root user with no capabilities, `no-new-privileges`, no network, a read-only root, memory
and process limits and a timeout (see `graphbuild.rules.oci.container`). The node's key holds
everything of that (README: "what a test's key holds").
"""

from __future__ import annotations

import json
import shutil
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.oci.container import (
    container_labels,
    container_name,
    engine_options,
    remove_dead_runs_containers,
    run_identity,
)
from graphbuild.rules.oci.docker_engine import docker_client, ensure_loaded, image_tags

# pytest's exit codes that the tests themselves caused (failures, errors, nothing collected)
_DETERMINISTIC_EXITS = {1: "tests failed", 2: "test run interrupted (collection error?)",
                        4: "pytest usage error", 5: "no tests were collected"}
#: Variables the container gets on top of the image's (a read-only root: no bytecode writes).
CONTAINER_ENV = {"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"}
SOURCE_MOUNT = "/src"
OUT_MOUNT = "/out"
#: Where a library's importable code may sit in its tree: flat layout, or src layout.
_CODE_DIRS = ("", "src")


def pytest_command(tests: list[str]) -> list[str]:
    """pytest as the library's developers run it (their configuration, their import mode),
    plus a JUnit report and no cache writes (the root is read-only)."""
    return ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={OUT_MOUNT}/junit.xml",
            "-o", "junit_family=xunit2", *tests]


@executor("python.image_test", version=4)
def run_library_tests(ctx: ExecContext) -> dict[str, Any]:
    """Keyed inputs: `sources` (files, or a source tar for git libraries), `source_root`, `wheel`,
    `tests`, `command`, `timeout`, `container` (ContainerSpec data), closure digests...;
    unkeyed: `image_config` (the test image; its name is the image id), `image_index`,
    `image_layers`, `image_repository`, `environment`."""
    src = ctx.scratch / "src"
    out = ctx.scratch / "out"
    src.mkdir()
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    _stage_sources(ctx, src)
    hidden = hide_shipped_code(src, Path(ctx.inputs["wheel"]), list(ctx.inputs.get("tests") or []))
    if hidden:
        ctx.log(f"not staged (the wheel installs them): {', '.join(hidden)}")
    config = Path(ctx.unkeyed["image_config"])
    image_id = "sha256:" + config.name
    timeout = float(ctx.inputs["timeout"])
    client = docker_client()
    digest = json.loads(Path(ctx.unkeyed["image_index"]).read_bytes())["manifests"][0]["digest"]
    ensure_loaded(client, config, [Path(p) for p in ctx.unkeyed["image_layers"]],
                  image_tags(ctx.unkeyed["image_repository"], digest))
    from docker.errors import APIError, ImageNotFound, NotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout

    run_id, run_is_alive = run_identity(ctx)
    remove_dead_runs_containers(client, run_id, run_is_alive, ctx.log)
    try:
        container = client.containers.create(
            image_id, ctx.inputs["command"], name=container_name(ctx.node.id),
            labels=container_labels(run_id, ctx.node.id), working_dir=SOURCE_MOUNT,
            volumes={str(src): {"bind": SOURCE_MOUNT, "mode": "ro"}, str(out): {"bind": OUT_MOUNT, "mode": "rw"}},
            environment=dict(CONTAINER_ENV), **engine_options(ctx.inputs["container"]))
    except (APIError, ImageNotFound) as err:
        raise ActionFailed(f"the Docker engine could not create the test container: {err}") from None
    oom = False
    try:
        try:
            container.start()
        except APIError as err:
            raise ActionFailed(f"the Docker engine could not start the test container: {err}") from None
        try:
            status = container.wait(timeout=timeout)
        except (ReadTimeout, RequestsConnectionError):
            container.kill()
            log = container.logs().decode(errors="replace")
            ctx.log(log)
            raise ActionFailed(f"tests timed out after {timeout:g} s") from None
        log = container.logs().decode(errors="replace")
        try:
            container.reload()
            oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        except (APIError, NotFound):
            pass
    finally:
        try:
            container.remove(force=True)
        except (APIError, NotFound):
            pass
    ctx.log(log)
    code = int(status.get("StatusCode", -1))
    report = _junit(out / "junit.xml")
    where = ctx.unkeyed["environment"]
    if code != 0:
        failing = ", ".join(report["failing"][:10]) or "see the log"
        why = _DETERMINISTIC_EXITS.get(code)
        if oom:
            limit = ctx.inputs["container"].get("memory")
            raise ActionFailed(f"the tests ran out of memory in {where} (limit {limit} bytes; raise the "
                               "environment's resources memory)", metadata={**report, "exit_code": code})
        raise ActionFailed(
            f"{why or f'test container exited with {code}'} in {where}: {failing}",
            deterministic=why is not None, metadata={**report, "exit_code": code})
    if (out / "junit.xml").is_file():
        shutil.copyfile(out / "junit.xml", ctx.out("junit.xml"))
    else:
        ctx.out("junit.xml").write_text("")
    ctx.out("log.txt").write_text(log)
    ctx.summarize(f"{summary(report)} (in {where})")
    # the metadata is what the result holds wherever it is reused: another environment sharing
    # the closure, another machine through the shared cache. Where it ran is display only (the
    # summary above); as metadata, it would be part of the output digest dependents key on.
    return {**report, "exit_code": code}


def summary(report: dict[str, Any]) -> str:
    """`N passed[, M skipped]` as pytest counts: JUnit's `tests` includes the skipped ones."""
    text = f"{report['passed']} passed"
    return text + (f", {report['skipped']} skipped" if report["skipped"] else "")


def _stage_sources(ctx: ExecContext, dest: Path) -> None:
    sources = ctx.inputs["sources"]
    if isinstance(sources, list):
        root = ctx.workspace_root / ctx.inputs["source_root"]
        for path in sources:
            target = dest / Path(path).relative_to(root)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    else:
        with tarfile.open(sources) as tar:
            tar.extractall(dest, filter="data")
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def shipped_names(wheel: Path) -> set[str]:
    """The top-level names a wheel installs into site-packages (packages and modules), and the
    distribution's own name as a package (so a wheel that forgot its package entirely does not
    get the source one instead)."""
    found: set[str] = set()
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    for name in names:
        parts = name.split("/")
        if parts[0].endswith(".data") and len(parts) > 2 and parts[1] in ("purelib", "platlib"):
            parts = parts[2:]
        elif parts[0].endswith(".dist-info"):
            found.add(parts[0].removesuffix(".dist-info").rsplit("-", 1)[0])
            continue
        elif parts[0].endswith(".data"):
            continue
        if len(parts) > 1 or not parts[0].endswith(".pth"):
            found.add(parts[0])
    return {n for n in found if n and n not in (".", "..")}


def hide_shipped_code(tree: Path, wheel: Path, tests: list[str]) -> list[str]:
    """Remove from the staged tree what would shadow the installed library: the wheel's
    top-level packages and modules at the root (flat layout) and under `src/`. Returns what
    was removed; a test path inside it is a spec error."""
    names = shipped_names(wheel)
    lowered = {n.lower() for n in names}
    # a test directory the wheel ships as well (`packages = find_packages()` takes `tests`) stays
    wanted = {test.strip("/").removeprefix("./") for test in tests}
    hidden: list[str] = []
    for base in _CODE_DIRS:
        directory = tree / base if base else tree
        if not directory.is_dir():
            continue
        for entry in sorted(directory.iterdir()):
            rel = entry.relative_to(tree).as_posix()
            if rel not in wanted and (entry.name in names or (entry.is_dir() and entry.name.lower() in lowered)):
                hidden.append(rel)
    for test in tests:
        clean = test.strip("/").removeprefix("./")
        inside = [h for h in hidden if clean.startswith(h + "/")]
        if inside:
            raise ActionFailed(
                f"test path '{test}' is inside '{inside[0]}', which the library's wheel installs: tests run "
                "against the installed package from a tree without its sources",
                details="move the tests out of the package, or run the installed copy with "
                        "test_command = [\"python\", \"-m\", \"pytest\", \"--pyargs\", \"PACKAGE\"]",
                bad_input=True)
    for rel in hidden:
        path = tree / rel
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    return hidden


def _junit(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"tests": 0, "passed": 0, "failures": 0, "errors": 0, "skipped": 0, "failing": []}
    if not path.is_file():
        return report
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError:
        return report
    for suite in root.iter("testsuite"):
        for key in ("tests", "failures", "errors", "skipped"):
            report[key] += int(suite.get(key, 0))
    for case in root.iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            report["failing"].append(f"{case.get('classname', '')}::{case.get('name', '')}".strip(":"))
    report["passed"] = max(0, report["tests"] - report["failures"] - report["errors"] - report["skipped"])
    return report
