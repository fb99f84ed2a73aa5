"""A library's own tests, run inside an environment's image through the Docker engine.

The container has no network, a read-only root, a tmpfs for scratch and a timeout; the
library's test files are mounted read-only and JUnit XML is collected.  The node's key is
what the tests depend on (the library, its dependency closure in the environment, the test
runner and the base image), not the whole image, so environments that agree on those share
one result.
"""

from __future__ import annotations

import json
import shutil
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.oci.docker_engine import docker_client, ensure_loaded, image_tags

# pytest's exit codes that the tests themselves caused (failures, errors, nothing collected)
_DETERMINISTIC_EXITS = {1: "tests failed", 2: "test run interrupted (collection error?)",
                        4: "pytest usage error", 5: "no tests were collected"}


def pytest_command(tests: list[str]) -> list[str]:
    return ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--import-mode=importlib",
            "--junitxml=/out/junit.xml", "-o", "junit_family=xunit2", *tests]


@executor("python.image_test", version=1)
def run_library_tests(ctx: ExecContext) -> dict[str, Any]:
    """Keyed inputs: `sources` (files, or a source tar for git libraries), `source_root`, `command`,
    closure digests...; unkeyed: `image_config` (the test image; its name is the image id)."""
    src = ctx.scratch / "src"
    out = ctx.scratch / "out"
    src.mkdir()
    out.mkdir(mode=0o777)
    out.chmod(0o777)
    _stage_sources(ctx, src)
    config = Path(ctx.unkeyed["image_config"])
    image_id = "sha256:" + config.name
    timeout = float(ctx.inputs["timeout"])
    client = docker_client()
    digest = json.loads(Path(ctx.unkeyed["image_index"]).read_bytes())["manifests"][0]["digest"]
    ensure_loaded(client, config, [Path(p) for p in ctx.unkeyed["image_layers"]],
                  image_tags(ctx.unkeyed["image_repository"], digest))
    from docker.errors import APIError, ImageNotFound
    from requests.exceptions import ConnectionError as RequestsConnectionError
    from requests.exceptions import ReadTimeout

    try:
        container = client.containers.run(
            image_id, ctx.inputs["command"], detach=True, network_mode="none", read_only=True,
            tmpfs={"/tmp": "rw,size=512m"}, working_dir="/src",
            volumes={str(src): {"bind": "/src", "mode": "ro"}, str(out): {"bind": "/out", "mode": "rw"}},
            environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1"},
        )
    except (APIError, ImageNotFound) as err:
        raise ActionFailed(f"the Docker engine could not start the test container: {err}") from None
    try:
        try:
            status = container.wait(timeout=timeout)
        except (ReadTimeout, RequestsConnectionError):
            container.kill()
            log = container.logs().decode(errors="replace")
            ctx.log(log)
            raise ActionFailed(f"tests timed out after {timeout:g} s") from None
        log = container.logs().decode(errors="replace")
    finally:
        try:
            container.remove(force=True)
        except APIError:
            pass
    ctx.log(log)
    code = int(status.get("StatusCode", -1))
    report = _junit(out / "junit.xml")
    where = ctx.unkeyed["environment"]
    if code != 0:
        failing = ", ".join(report["failing"][:10]) or "see the log"
        why = _DETERMINISTIC_EXITS.get(code)
        raise ActionFailed(
            f"{why or f'test container exited with {code}'} in {where}: {failing}",
            deterministic=why is not None, metadata={**report, "exit_code": code})
    if (out / "junit.xml").is_file():
        shutil.copyfile(out / "junit.xml", ctx.out("junit.xml"))
    else:
        ctx.out("junit.xml").write_text("")
    ctx.out("log.txt").write_text(log)
    summary = f"{report['tests']} tests passed" + (f", {report['skipped']} skipped" if report["skipped"] else "")
    return {**report, "exit_code": code, "environment": where, "summary": f"{summary} (in {where})"}


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


def _junit(path: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0, "failing": []}
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
    return report
