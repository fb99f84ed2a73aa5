"""The best-practice Dockerfile baseline: BuildKit, uv and a cache mount (uv's Docker guide).

    RUN --mount=type=cache,target=/root/.cache/uv uv pip install --require-hashes -r env.txt

A user of it edits `env.in`, runs `uv pip compile --generate-hashes` (their previous `env.txt`
is uv's preference file), then `docker build`; its time is the two. Debian's Docker 20.10
engine builds it with `DOCKER_BUILDKIT=1` and no `# syntax` line, through Debian's 20.10
client (`/usr/bin/docker`): a newer client without the buildx plugin refuses BuildKit.

uv inside the build is the host's binary, copied into the build context (there is no image to
take it from here). The cache mount has an id of its own per benchmark run, and the build cache
records the run created are removed at the end, one by one (never the engine's whole cache:
other people's builds use it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_36"


def dockerfile(base_image: str, *, bytecode: bool, cache_id: str) -> str:
    compile_bytecode = " UV_COMPILE_BYTECODE=1" if bytecode else ""
    return f"""\
FROM {base_image}
COPY uv /usr/local/bin/uv
COPY ca-certificates.crt /usr/local/share/bench-ca.crt
ENV SSL_CERT_FILE=/usr/local/share/bench-ca.crt UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never{compile_bytecode}
RUN uv venv /opt/venv --python /usr/bin/python3
COPY env.txt /tmp/env.txt
RUN --mount=type=cache,id={cache_id},target=/root/.cache/uv \\
    uv pip install --python /opt/venv/bin/python --require-hashes -r /tmp/env.txt
"""


def compile_requirements(uv: str, uv_cache: Path, directory: Path, requirements: list[str], pin_old: str,
                         pin: str) -> float:
    """`uv pip compile` of the whole environment (`env.in`, `pin` in place of `pin_old`) into
    `env.txt` with hashes, the existing `env.txt` being uv's preferences (as a user's committed
    one is); seconds, wall clock."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "env.in").write_text("".join((pin if r == pin_old else r) + "\n" for r in requirements))
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_OFFLINE")}
    env.update(UV_CACHE_DIR=str(uv_cache), UV_NO_PROGRESS="1")
    started = time.perf_counter()
    # the interpreter named, as graphbuild names it: no search through the PATH's version-manager
    # shims (0.15 s a call on these machines) on either side
    proc = subprocess.run([uv, "pip", "compile", "env.in", "-o", "env.txt", "--generate-hashes",
                           "--python-version", PYTHON, "--python-platform", PLATFORM, "--quiet",
                           "--python", sys.executable],
                          cwd=directory, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"uv pip compile failed: {proc.stderr[-2000:]}")
    return elapsed


def docker_client(env: dict[str, str]) -> str | None:
    """A docker CLI that builds with BuildKit: one with the buildx plugin, or Debian's 20.10."""
    if subprocess.run(["docker", "buildx", "version"], env=env, capture_output=True).returncode == 0:
        return "docker"
    for candidate in ("/usr/bin/docker",):
        proc = subprocess.run([candidate, "version", "--format", "{{.Client.Version}}"], env=env,
                              capture_output=True, text=True)
        if proc.returncode == 0 and proc.stdout.startswith("20."):
            return candidate
    return None


class BuildKitBaseline:
    def __init__(self, work: Path, env: dict[str, str], *, base_image: str, uv: str, uv_cache: Path,
                 requirements: list[str], bytecode: bool, run_id: str):
        self.client = docker_client(env)
        self.env = {**env, "DOCKER_BUILDKIT": "1"}
        self.context = work / f"buildkit-{'bytecode' if bytecode else 'nobytecode'}"
        self.context.mkdir(parents=True, exist_ok=True)
        self.uv, self.uv_cache = uv, uv_cache
        self.requirements = requirements
        self.tag = f"graphbuild-bench-buildkit-{run_id}-{'bc' if bytecode else 'nobc'}"
        (self.context / "Dockerfile").write_text(dockerfile(base_image, bytecode=bytecode,
                                                            cache_id=f"graphbuild-bench-{run_id}"))
        shutil.copyfile(uv, self.context / "uv")
        os.chmod(self.context / "uv", 0o755)
        ca = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
        shutil.copyfile(ca, self.context / "ca-certificates.crt")

    def compile(self, pin_old: str, pin: str) -> float:
        return compile_requirements(self.uv, self.uv_cache, self.context, self.requirements, pin_old, pin)

    @property
    def pinned(self) -> int:
        return sum(1 for line in (self.context / "env.txt").read_text().splitlines() if re.match(r"^\S+==", line))

    def build(self, suffix: str, *, no_cache: bool = False) -> float:
        assert self.client is not None
        cmd = [self.client, "build", "--network", "host", "-t", f"{self.tag}:{suffix}",
               *(["--no-cache"] if no_cache else []), str(self.context)]
        started = time.perf_counter()
        proc = subprocess.run(cmd, env=self.env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0:
            raise SystemExit(f"BuildKit build failed: {proc.stdout[-2000:]}{proc.stderr[-3000:]}")
        return elapsed

    def push(self, suffix: str, registry: str, repository: str) -> dict[str, int]:
        """`docker push` of a built image; the manifest's layer digests -> compressed sizes."""
        ref = f"{registry}/{repository}:{suffix}"
        subprocess.run([self.client or "docker", "tag", f"{self.tag}:{suffix}", ref], env=self.env, check=True,
                       capture_output=True)
        subprocess.run([self.client or "docker", "push", ref], env=self.env, check=True, capture_output=True)
        subprocess.run([self.client or "docker", "rmi", ref], env=self.env, capture_output=True)
        request = urllib.request.Request(f"http://{registry}/v2/{repository}/manifests/{suffix}", headers={
            "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            document = json.loads(response.read())
        sizes = {layer["digest"]: layer["size"] for layer in document["layers"]}
        sizes[document["config"]["digest"]] = document["config"]["size"]
        return sizes

    def remove_images(self, *suffixes: str) -> None:
        for suffix in suffixes:
            subprocess.run([self.client or "docker", "rmi", "-f", f"{self.tag}:{suffix}"], env=self.env,
                           capture_output=True)


def build_cache_ids(env: dict[str, str], client: str) -> set[str]:
    proc = subprocess.run([client, "system", "df", "-v"], env=env, capture_output=True, text=True)
    lines = proc.stdout.split("CACHE ID", 1)[1].splitlines()[1:] if "CACHE ID" in proc.stdout else []
    return {line.split()[0] for line in lines if line.strip()}


def remove_build_cache(env: dict[str, str], client: str, ids: set[str]) -> None:
    """Remove the build cache records this run made (twice: a parent goes once its child has)."""
    for _ in range(2):
        for cache_id in sorted(ids & build_cache_ids(env, client)):
            subprocess.run([client, "builder", "prune", "-a", "-f", "--filter", f"id={cache_id}"], env=env,
                           capture_output=True)
