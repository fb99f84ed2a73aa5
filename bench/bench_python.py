"""Benchmark Python package layers: graphbuild vs the floor (uv + tar) and vs `docker build`.

    python bench/bench_python.py [--repeat 3] [--keep DIR] [--no-docker] [--no-profile] [--online-warm]
                                 [--results FILE]

In one run, in a temp dir (nothing of the user's caches is used or touched):

1. writes a workspace with a `core` py_layer (numpy, pandas, scipy, pydantic, requests,
   matplotlib...) and a thin `ml` layer over it (scikit-learn, `tqdm==4.66.4`), one
   `environment` over `ml` (no base: layers only), ~50 packages; times `graphbuild lock`;
2. times `graphbuild build -j 2` cold (fresh graphbuild cache and fresh UV_CACHE_DIR) and
   warm (fresh graphbuild cache, warm uv cache; median of --repeat), with bytecode on (the
   default) and off (`bytecode = False`);
3. times the floor: `uv pip install --target --no-deps` of the same lock (warm uv cache),
   a deterministic `tar` and its sha256 (median of --repeat); prints warm / floor;
4. changes the one pin (tqdm 4.66.4 -> 4.66.5), times `graphbuild build --relock` (median of
   --repeat, each from the same warm cache and old lock) and checks that the only build node
   that ran is the layer holding tqdm (PASS/FAIL);
5. with a Docker engine (`scripts/workspace-env.sh`): times `docker build` (legacy builder) of
   a Dockerfile that `pip install`s the same lock, cold and after the same pin change;
6. with Docker: import time of numpy+pandas+sklearn in a read-only container from the built
   layers, with and without bytecode (one warm-up run, then the median of --import-runs);
5b. with Docker: the BuildKit + uv + cache-mount Dockerfile (`bench/buildkit.py`), bytecode off
   and on (`UV_COMPILE_BYTECODE=1`): cold, then after each pin change `uv pip compile` of the
   whole environment + `docker build`; every repetition changes the pin to a new version
   (4.66.5, 4.66.6, 4.67.0...), on graphbuild's side too, so no builder replays a build; and
   beside each graphbuild rebuild, one `uv pip compile` of the whole environment (the relock's
   yardstick);
8. with Docker and a registry: the same layers on the Debian base, pushed by graphbuild before
   and after the pin change (the bytes the second push moves), and BuildKit's image pushed
   before and after (the bytes of its layers that are new);
7. (unless --no-profile) replays the steps of each layer's executor, bytecode on and off, to
   show where a warm build's time goes: uv install, cleanup, bytecode compile (the executor's
   own `compile_tree`), tar + sha256, blob-store hash; and, outside the sum, the scratch tree's
   removal and compiles of every file (-j 1, as before commit 7e62cf9, and -j 0).

Warm builds, the floor and the replayed steps run uv with UV_OFFLINE=1 (unless --online-warm):
the package index here is reached through a proxy that drops PyPI's cache headers (files on
PyPI are `max-age=365000000, immutable`), so uv would revalidate every cached wheel URL over
the network, and about one DNS lookup in six stalls for 5 s on these machines. Offline, a
warm build does what it would do against PyPI itself: no network at all.

The code under test is the checkout this script runs from; the script prints a warning when
graphbuild's sources changed while it ran (other people's edits), since results then mix two
versions.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import buildkit
from buildkit import compile_requirements

from graphbuild.cache.blobs import sha256_file
from graphbuild.rules.python.bytecode import compile_tree
from graphbuild.rules.python.layers import _strip_host_state, site_packages
from graphbuild.rules.python.platforms import best_wheel
from graphbuild.rules.python.uv import uv_bin
from graphbuild.rules.tarball import write_tree

REPO = Path(__file__).resolve().parent.parent
PYTHON = "3.11"
PLATFORM = "x86_64-manylinux_2_36"
PREFIX = "/opt/env"
ENV = "//envs:bench"
#: the node of the package whose pin changes: with a node per package, the only one a pin change runs
TQDM_NODE = f"{ENV}#pkg.tqdm"
BASE_IMAGE = "graphbuild-base:bookworm-python3"
PIN_OLD = "tqdm==4.66.4"
#: the pin after the change, one version per repetition: no builder can replay an earlier build
PIN_VERSIONS = ["tqdm==4.66.5", "tqdm==4.66.6", "tqdm==4.67.0", "tqdm==4.67.1"]
PIN_NEW = PIN_VERSIONS[0]
SHIP_ENV = "//envs:ship"
WARM_GOAL, REBUILD_GOAL = 1.5, 10.0
#: issue 12's goals: rebuild after one pin change vs BuildKit + uv (bytecode off / on) and vs the naive Dockerfile
BUILDKIT_GOALS, NAIVE_GOAL = {"nobytecode": 3.0, "bytecode": 8.0}, 15.0
IMPORTS = "numpy, pandas, sklearn"

# Direct requirements are pinned so that reruns resolve (almost) the same set; their
# dependencies still resolve at run time. scipy is listed in `core` on purpose: the heavy
# numeric stack sits in the lower layer, `ml` stays thin.
CORE = [
    "numpy==2.4.6", "pandas==3.1.1", "scipy==1.17.1", "pydantic==2.14.3", "requests==2.34.2",
    "matplotlib==3.11.2", "pyyaml==6.0.3", "jinja2==3.1.6", "click==8.5.1", "rich==15.0.0",
    "httpx==0.28.1", "attrs==26.1.0", "tabulate==0.10.0", "python-dotenv==1.2.4", "orjson==3.13.0",
    "fsspec==2026.9.0", "tenacity==9.2.1", "platformdirs==4.14.7", "filelock==4.2.11",
    "pytz==2026.6", "cachetools==8.0.1",
]
ML = ["scikit-learn==1.9.1", PIN_OLD]


def build_envs(*, bytecode: bool, pin: str, ship: str | None = None) -> str:
    """The workspace; with `ship` (a registry repository prefix), also `ship`: the same layers
    on the Debian base, pushed (for the bytes a push moves)."""
    def reqs(items: list[str]) -> str:
        return "".join(f'        "{r}",\n' for r in items)

    ml = [pin if r == PIN_OLD else r for r in ML]
    flag = "" if bytecode else "    bytecode = False,\n"
    text = (f'py_layer(\n    name = "core",\n    requirements = [\n{reqs(CORE)}    ],\n)\n\n'
            f'py_layer(\n    name = "ml",\n    over = [":core"],\n    requirements = [\n{reqs(ml)}    ],\n)\n\n'
            f'environment(\n    name = "bench",\n    layers = [":ml"],\n{flag})\n')
    if ship:
        text += (f'\nbase_image(name = "base", tarball = "../.bases/base.tar")\n\n'
                 f'environment(\n    name = "ship",\n    base = ":base",\n    layers = [":ml"],\n'
                 f'    push = "{ship}/ship:v1",\n{flag})\n')
    return text


@dataclass
class Timed:
    seconds: float
    stdout: str
    stderr: str

    def json(self) -> Any:
        return json.loads(self.stdout)


def timed(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
          check: bool = True) -> Timed:
    started = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
    elapsed = time.perf_counter() - started
    if check and proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd[:4])} ... exited with {proc.returncode}")
    return Timed(elapsed, proc.stdout, proc.stderr)


def sources_digest() -> str:
    """Digest of graphbuild's sources (engine, rules, cache) in this checkout, to notice edits mid-run."""
    digest = hashlib.sha256()
    for path in sorted(p for d in ("graphbuild", "rules", "cache") for p in (REPO / d).rglob("*.py")):
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def git_head() -> str:
    proc = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"], capture_output=True, text=True)
    return proc.stdout.strip() or "?"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def fmt(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f} s"


@dataclass
class Workspace:
    root: Path
    bytecode: bool
    ship: str | None = None  # a registry repository prefix: the `ship` environment is declared

    def write(self, pin: str) -> None:
        (self.root / "envs").mkdir(parents=True, exist_ok=True)
        (self.root / "graphbuild.toml").touch()
        (self.root / "envs/BUILD.envs").write_text(build_envs(bytecode=self.bytecode, pin=pin, ship=self.ship))

    @property
    def lock_path(self) -> Path:
        return self.root / "envs/pylock.bench.toml"

    def gb(self, verb: str, *args: str, cache: Path, uv_cache: Path, jobs: int, offline: bool = False,
           services: dict[str, str] | None = None) -> Timed:
        env = {k: v for k, v in (services or os.environ).items()
               if k not in ("GRAPHBUILD_CACHE_DIR", "VIRTUAL_ENV", "UV_OFFLINE", "DOCKER_BUILDKIT")}
        env["UV_CACHE_DIR"] = str(uv_cache)
        if offline:
            env["UV_OFFLINE"] = "1"
        cmd = [sys.executable, "-m", "graphbuild", verb, *args, "--json", "--cache-dir", str(cache),
               "-C", str(self.root)]
        if verb != "lock":
            cmd += ["-j", str(jobs)]
        return timed(cmd, env=env, cwd=self.root)


def build_report(result: Timed) -> dict[str, Any]:
    doc = result.json()
    nodes = {n["id"]: n for n in doc["nodes"] if n["phase"] != "lock"}
    locks = [n for n in doc["nodes"] if n["phase"] == "lock"]
    return {"wall": result.seconds, "engine": doc["summary"]["seconds"],
            "lock": sum(n["duration"] or 0 for n in locks),
            "ran": sorted(nid for nid, n in nodes.items() if n["status"] == "ran"),
            "durations": {nid: n["duration"] for nid, n in nodes.items()},
            "outputs": {nid: n["outputs"].get("layer.tar") for nid, n in nodes.items()},
            "lock_changed": next((n["metadata"].get("changed") for n in locks), None)}


# ------------------------------------------------------------------------------ the lock


def locked_lines(lock_path: Path, names: list[str] | None = None) -> list[str]:
    """`name @ url --hash=sha256:...` for the lock's packages (the wheel graphbuild would pick)."""
    data = tomllib.loads(lock_path.read_text())
    lines = []
    for package in sorted(data["packages"], key=lambda p: p["name"]):
        if names is not None and package["name"] not in names:
            continue
        wheel = best_wheel(package.get("wheels", []), PYTHON, PLATFORM)
        if wheel is None:
            raise SystemExit(f"{package['name']} has no wheel for {PLATFORM}: the floor needs wheels only")
        lines.append(f"{package['name']} @ {wheel['url']} --hash=sha256:{wheel['hashes']['sha256']}")
    return lines


def lock_layers(lock_path: Path) -> dict[str, list[str]]:
    data = tomllib.loads(lock_path.read_text())
    return {layer["label"].rsplit(":", 1)[-1]: layer["packages"] for layer in data["tool"]["graphbuild"]["layers"]}


def lock_versions(lock_path: Path) -> dict[str, str]:
    return {p["name"]: p.get("version", "") for p in tomllib.loads(lock_path.read_text())["packages"]}


# ------------------------------------------------------------------------------ the floor


def uv_target_cmd(target: Path, requirements: Path, *extra: str, link_mode: str = "copy") -> list[str]:
    return [uv_bin(), "pip", "install", "--target", str(target), "--no-deps", "--python-version", PYTHON,
            "--python-platform", PLATFORM, "--link-mode", link_mode, *extra, "-r", str(requirements)]


def uv_env(uv_cache: Path, offline: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "UV_OFFLINE")}
    env.update(UV_CACHE_DIR=str(uv_cache), UV_NO_PROGRESS="1")
    if offline:
        env["UV_OFFLINE"] = "1"
    return env


def floor_once(work: Path, requirements: Path, uv_cache: Path, *, offline: bool,
               bytecode: bool = False, link_mode: str = "copy") -> dict[str, float]:
    """uv install --target + [compileall] + deterministic tar + sha256, each timed. `copy` is the
    floor as BENCHMARKS.md defined it (what the layer executor did until it hard-linked too);
    `hardlink` is uv's default on Linux."""
    target, tar = work / "floor", work / "floor.tar"
    shutil.rmtree(target, ignore_errors=True)
    tar.unlink(missing_ok=True)
    times: dict[str, float] = {}
    times["install"] = timed(uv_target_cmd(target, requirements, "--quiet", link_mode=link_mode),
                             env=uv_env(uv_cache, offline)).seconds
    if bytecode:
        started = time.perf_counter()
        layer_compile(target)
        times["compile"] = time.perf_counter() - started
    times["tar"] = timed(["tar", "--sort=name", "--mtime=@0", "--owner=0", "--group=0", "--numeric-owner",
                          "-cf", str(tar), "-C", str(target), "."]).seconds
    started = time.perf_counter()
    sha256_file(tar)  # hashlib (OpenSSL): ~3x faster here than coreutils' sha256sum
    times["sha256"] = time.perf_counter() - started
    times["total"] = sum(times.values())
    times["bytes"] = tar.stat().st_size
    shutil.rmtree(target, ignore_errors=True)
    tar.unlink(missing_ok=True)
    return times


def layer_compile(root: Path) -> None:
    """Bytecode exactly as the layer executor compiles it (rules/python/bytecode.py `compile_tree`)."""
    compile_tree(types.SimpleNamespace(log=lambda message: None), root, PYTHON)  # type: ignore[arg-type]


def compile_cmd(root: Path, *, jobs: int) -> list[str]:
    """compileall of every file (test suites included), as the layer executor did before 7e62cf9 (-j 1)."""
    return [sys.executable, "-m", "compileall", "-q", "-j", str(jobs), "--invalidation-mode", "unchecked-hash",
            "-s", str(root), "-p", "/", str(root)]


def compile_env() -> dict[str, str]:
    return {**os.environ, "PYTHONHASHSEED": "0"}


# ------------------------------------------------------------------------------ profile


def profile_layer(work: Path, packages: list[str], lock_path: Path, uv_cache: Path, *,
                  bytecode: bool, offline: bool) -> dict[str, float]:
    """Replay what the python.layer executor does for one layer, step by step."""
    scratch = work / "profile"
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir()
    requirements = scratch / "layer.txt"
    requirements.write_text("\n".join(locked_lines(lock_path, packages)) + "\n")
    staging, root = scratch / "staging", scratch / "root"
    install = uv_target_cmd(staging, requirements, "--no-build", "--no-compile", "--quiet", link_mode="hardlink")
    times: dict[str, float] = {}
    times["uv install"] = timed(install, env=uv_env(uv_cache, offline)).seconds
    started = time.perf_counter()
    sp = root / site_packages(PREFIX, PYTHON).lstrip("/")
    sp.parent.mkdir(parents=True)
    if (staging / "bin").is_dir():
        shutil.move(staging / "bin", root / f"{PREFIX}/bin".lstrip("/"))
    staging.rename(sp)
    _strip_host_state(sp)
    times["move + strip host state"] = time.perf_counter() - started
    if bytecode:
        started = time.perf_counter()
        layer_compile(root)
        times["bytecode compile (bytecode.py `compile_tree`)"] = time.perf_counter() - started
    started = time.perf_counter()
    write_tree(root, scratch / "layer.tar")
    times["write_tree: tar + sha256 (Python tarfile)"] = time.perf_counter() - started
    started = time.perf_counter()
    sha256_file(scratch / "layer.tar")
    times["blob store: sha256 of the tar again"] = time.perf_counter() - started
    times["sum"] = sum(times.values())
    started = time.perf_counter()
    shutil.rmtree(root)
    times["(not in the sum: rmtree of the scratch tree, a background thread's since 7e62cf9)"] = (
        time.perf_counter() - started)
    if bytecode:  # other compiles, not in the sum, each on a fresh tree
        timed(install, env=uv_env(uv_cache, offline))
        times["(not in the sum: compileall -j 1 of every file, the executor before 7e62cf9)"] = timed(
            compile_cmd(staging, jobs=1), env=compile_env(), check=False).seconds
        _strip_host_state(staging)
        times["(not in the sum: compileall -j 0 of every file)"] = timed(
            compile_cmd(staging, jobs=0), env=compile_env(), check=False).seconds
    shutil.rmtree(scratch, ignore_errors=True)
    return times


# ------------------------------------------------------------------------------ docker


def docker_env() -> dict[str, str] | None:
    """The environment `docker` needs here, from scripts/workspace-env.sh; None without an engine."""
    if shutil.which("docker") is None:
        log("no docker CLI: skipping the Docker comparison and the import times")
        return None
    proc = subprocess.run(["bash", str(REPO / "scripts/workspace-env.sh")], capture_output=True, text=True)
    if proc.returncode != 0:
        log(f"scripts/workspace-env.sh failed ({proc.stderr.strip()[-300:]}): skipping Docker")
        return None
    env = dict(os.environ)
    for line in proc.stdout.splitlines():
        match = re.match(r"export (\w+)=(.*)$", line.strip())
        if match:
            env[match.group(1)] = match.group(2).strip("'\"")
    env["DOCKER_BUILDKIT"] = "0"
    if subprocess.run(["docker", "image", "inspect", BASE_IMAGE], env=env, capture_output=True).returncode != 0:
        log(f"image {BASE_IMAGE} not found in the engine: skipping Docker")
        return None
    return env


DOCKERFILE = f"""\
FROM {BASE_IMAGE}
COPY ca-certificates.crt /usr/local/share/bench-ca.crt
ENV PIP_CERT=/usr/local/share/bench-ca.crt REQUESTS_CA_BUNDLE=/usr/local/share/bench-ca.crt \\
    SSL_CERT_FILE=/usr/local/share/bench-ca.crt PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \\
    PIP_DEFAULT_TIMEOUT=180
RUN python3 -m venv /opt/venv
COPY env.txt /tmp/env.txt
RUN /opt/venv/bin/pip install --no-deps --require-hashes -r /tmp/env.txt
"""


def docker_context(work: Path, lines: list[str]) -> Path:
    context = work / "docker"
    context.mkdir(exist_ok=True)
    (context / "Dockerfile").write_text(DOCKERFILE)
    ca = Path(os.environ.get("SSL_CERT_FILE") or "/etc/ssl/certs/ca-certificates.crt")
    shutil.copyfile(ca, context / "ca-certificates.crt")
    (context / "env.txt").write_text("\n".join(lines) + "\n")
    return context


def docker_build(env: dict[str, str], context: Path, tag: str, *, no_cache: bool) -> float:
    cmd = ["docker", "build", "--network", "host", "-t", tag, *(["--no-cache"] if no_cache else []), str(context)]
    return timed(cmd, env=env).seconds


def place_file(source: Path, dest: Path) -> None:
    """`dest` holds `source`'s bytes (a hard link, else a copy): graphbuild reads no file outside
    the workspace, so the base tarball is put into it."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.unlink(missing_ok=True)
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)


def _is_package_tar(node_id: str) -> bool:
    """The nodes whose tars, extracted together, make the environment (merged layers repeat them)."""
    return node_id.startswith(f"{ENV}#") and (node_id.endswith("#layer.venv") or "#pkg." in node_id)


def clone_cache(src: Path, dst: Path) -> None:
    """Copy a graphbuild cache dir; its blobs are immutable, so hard links do for them."""
    shutil.copytree(src, dst, ignore=lambda d, names: ["blobs"] if Path(d) == src else [])
    shutil.copytree(src / "blobs", dst / "blobs", copy_function=os.link)


def extract_layers(cache: Path, digests: list[str], dest: Path) -> Path:
    dest.mkdir(parents=True)
    for digest in digests:
        subprocess.run(["tar", "-xf", str(cache / "blobs/sha256" / digest), "-C", str(dest)], check=True)
    return dest / PREFIX.lstrip("/")


def import_seconds(env: dict[str, str], env_dir: Path) -> float:
    """Seconds `import numpy, pandas, sklearn` takes in a fresh read-only container (measured inside)."""
    code = f"import time; t = time.perf_counter(); import {IMPORTS}; print(time.perf_counter() - t)"
    out = timed(["docker", "run", "--rm", "--read-only", "--network", "none", "-v", f"{env_dir}:{PREFIX}:ro",
                 BASE_IMAGE, f"{PREFIX}/bin/python", "-c", code], env=env).stdout
    return float(out.strip().splitlines()[-1])


# ------------------------------------------------------------------------------ main


@dataclass
class Results:
    data: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value

    def __getitem__(self, key: str) -> Any:
        return self.data.get(key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs of each warm build and floor (median)")
    parser.add_argument("-j", "--jobs", type=int, default=2, help="graphbuild -j (default 2)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR (new or empty) and keep it (default: a temp dir)")
    parser.add_argument("--import-runs", type=int, default=3, help="timed import runs per variant (median)")
    parser.add_argument("--online-warm", action="store_true",
                        help="let uv revalidate cached wheels in warm builds and the floor (default: UV_OFFLINE=1)")
    parser.add_argument("--no-docker", action="store_true", help="skip the Docker comparison and import times")
    parser.add_argument("--no-profile", action="store_true", help="skip replaying the layer steps")
    parser.add_argument("--results", type=Path, metavar="FILE", help="also write the figures as JSON")
    args = parser.parse_args(argv)
    if args.keep:
        if args.keep.exists() and any(args.keep.iterdir()):
            parser.error(f"--keep {args.keep}: not empty (every cache in it must start empty)")
        args.keep.mkdir(parents=True, exist_ok=True)
        return bench(args, args.keep.resolve())
    with tempfile.TemporaryDirectory(prefix="gb-bench-python-") as tmp:
        return bench(args, Path(tmp))


def bench(args: argparse.Namespace, work: Path) -> int:
    res = Results()
    res["commit"] = git_head()
    sources = sources_digest()
    res["machine"] = (f"nproc={os.cpu_count()}, Python {platform.python_version()}, "
                      f"{platform.system()} {platform.release()} {platform.machine()}, "
                      f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}, "
                      f"{subprocess.run([uv_bin(), '--version'], capture_output=True, text=True).stdout.strip()}")
    log(f"working in {work}; {res['machine']}")
    # graphbuild's own bytecode, as a regular install (and scripts/setup.sh) writes it: without
    # it, every CLI start compiles the rules again where PYTHONDONTWRITEBYTECODE is set (0.1 s)
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-j", "0", *(str(REPO / d) for d in
                    ("graphbuild", "rules", "cache"))], check=True, capture_output=True)
    on, off = Workspace(work / "ws-bytecode", True), Workspace(work / "ws-nobytecode", False)
    on.write(PIN_OLD)
    off.write(PIN_OLD)
    counter = iter(range(1000))

    def fresh(kind: str) -> Path:
        return work / f"{kind}-{next(counter)}"

    # 1. lock (fresh uv cache: resolving from the index)
    log("locking")
    lock = on.gb("lock", ENV, cache=fresh("gbcache"), uv_cache=fresh("uvcache-lock"), jobs=args.jobs)
    shutil.copyfile(on.lock_path, off.lock_path)
    layers = lock_layers(on.lock_path)
    versions = lock_versions(on.lock_path)
    res["lock"] = lock.seconds
    res["packages"] = len(versions)
    res["layers"] = {name: len(pkgs) for name, pkgs in layers.items()}
    log(f"locked {len(versions)} packages in {lock.seconds:.2f} s: "
        + ", ".join(f"{k} {v}" for k, v in res["layers"].items()))

    # 2. cold and warm builds, and (3) beside each warm build without bytecode the floor, with
    # copies and with hard links, so that the ratios compare runs made under the same load
    all_lines = locked_lines(on.lock_path)
    requirements = work / "floor.txt"
    requirements.write_text("\n".join(all_lines) + "\n")
    floors: dict[str, list[dict[str, float]]] = {"copy": [], "hardlink": []}
    warm_caches: dict[bool, tuple[Path, Path]] = {}
    for ws in (on, off):
        label = "bytecode" if ws.bytecode else "nobytecode"
        uv_cache = fresh(f"uvcache-{label}")
        log(f"cold build ({label})")
        cold = build_report(ws.gb("build", ENV, cache=fresh("gbcache"), uv_cache=uv_cache, jobs=args.jobs))
        warm_runs = []
        for i in range(args.repeat):
            if warm_caches.get(ws.bytecode):  # keep only the last warm graphbuild cache
                shutil.rmtree(warm_caches[ws.bytecode][0])
            cache = fresh("gbcache")
            log(f"warm build ({label}) {i + 1}/{args.repeat}")
            warm_runs.append(build_report(ws.gb("build", ENV, cache=cache, uv_cache=uv_cache, jobs=args.jobs,
                                                offline=not args.online_warm)))
            warm_caches[ws.bytecode] = (cache, uv_cache)
            if not ws.bytecode:
                for mode, runs in floors.items():
                    log(f"floor, {mode} {i + 1}/{args.repeat}")
                    runs.append(floor_once(work, requirements, uv_cache, offline=not args.online_warm,
                                           link_mode=mode))
        res[f"cold_{label}"] = cold
        res[f"warm_{label}"] = {"wall": statistics.median(r["wall"] for r in warm_runs),
                                "walls": [r["wall"] for r in warm_runs], "last": warm_runs[-1]}
        res[f"layer_bytes_{label}"] = sum(
            (warm_caches[ws.bytecode][0] / "blobs/sha256" / d).stat().st_size
            for nid, d in warm_runs[-1]["outputs"].items() if d and _is_package_tar(nid))

    # 3. the floor (measured beside the warm builds above)
    uv_warm = warm_caches[True][1]
    res["floor"] = {"wall": statistics.median(f["total"] for f in floors["copy"]), "runs": floors["copy"]}
    res["floor_hardlink"] = {"wall": statistics.median(f["total"] for f in floors["hardlink"]),
                             "runs": floors["hardlink"]}
    log("floor with bytecode (compiled as layers.py does)")
    res["floor_bytecode"] = floor_once(work, requirements, uv_warm, offline=not args.online_warm, bytecode=True)

    # 6a. extract the warm builds' layers now (blobs of the pre-change lock)
    docker = None if args.no_docker else docker_env()
    env_dirs: dict[bool, Path] = {}
    if docker:
        for bytecode, (cache, _) in warm_caches.items():
            outputs = res[f"warm_{'bytecode' if bytecode else 'nobytecode'}"]["last"]["outputs"]
            digests = [d for nid, d in sorted(outputs.items()) if d and _is_package_tar(nid)]
            env_dirs[bytecode] = extract_layers(cache, digests, fresh("rootfs"))

    # 7. where the time goes (before the pin changes: same lock as the warm builds)
    if not args.no_profile:
        profiles = {}
        for name in ("core", "ml"):
            for bytecode in (True, False):
                log(f"profiling layer {name}, bytecode {'on' if bytecode else 'off'}")
                profiles[f"{name}, bytecode {'on' if bytecode else 'off'}"] = profile_layer(
                    work, layers[name], on.lock_path, uv_warm, bytecode=bytecode, offline=not args.online_warm)
        res["profile"] = profiles

    # 4. change one pin, rebuild with --relock (uv cache warm, index metadata included); side by
    # side, one `uv pip compile` of the whole environment (the relock's goal: no more than that)
    repeat = min(args.repeat, len(PIN_VERSIONS))
    for ws in (on, off):
        label = "bytecode" if ws.bytecode else "nobytecode"
        cache, uv_cache = warm_caches[ws.bytecode]
        log(f"warming uv's index metadata ({label}): lock, nothing changed")
        res[f"relock_noop_{label}"] = ws.gb("lock", ENV, cache=cache, uv_cache=uv_cache, jobs=args.jobs).seconds
        compile_dir = work / f"compile-{label}"
        compile_requirements(uv_bin(), uv_cache, compile_dir, CORE + ML, PIN_OLD, PIN_OLD)  # the committed env.txt
        compiled = (compile_dir / "env.txt").read_bytes()
        # each repetition starts from the same state: the old pin, its lock, the warm graphbuild cache
        # (the uv cache keeps what earlier runs downloaded: other tqdm wheels, a few kB)
        old_lock = ws.lock_path.read_bytes()
        pristine = fresh("gbcache-before-change")
        clone_cache(cache, pristine)
        rebuilds, compiles = [], []
        for i in range(repeat):
            pin = PIN_VERSIONS[i]
            if i:
                shutil.rmtree(cache)
                clone_cache(pristine, cache)
                ws.write(PIN_OLD)
                ws.lock_path.write_bytes(old_lock)
            (compile_dir / "env.txt").write_bytes(compiled)
            ws.write(pin)
            log(f"rebuild after {PIN_OLD} -> {pin} ({label}) {i + 1}/{repeat}, and `uv pip compile` of it all")
            if i % 2:  # alternate which one goes first
                compiles.append(compile_requirements(uv_bin(), uv_cache, compile_dir, CORE + ML, PIN_OLD, pin))
            rebuild = build_report(ws.gb("build", "--relock", ENV, cache=cache, uv_cache=uv_cache, jobs=args.jobs))
            if not i % 2:
                compiles.append(compile_requirements(uv_bin(), uv_cache, compile_dir, CORE + ML, PIN_OLD, pin))
            rebuild["pass"] = rebuild["ran"] == [TQDM_NODE] and rebuild["lock_changed"] == {
                "tqdm": [PIN_OLD.split("==")[1], pin.split("==")[1]]}
            rebuilds.append(rebuild)
        shutil.rmtree(pristine)
        median = sorted(rebuilds, key=lambda r: r["wall"])[(len(rebuilds) - 1) // 2]
        res[f"rebuild_{label}"] = {**median, "pass": all(r["pass"] for r in rebuilds),
                                   "lock_median": statistics.median(r["lock"] for r in rebuilds),
                                   "runs": [{k: r[k] for k in ("wall", "lock", "durations", "ran")} for r in rebuilds]}
        res[f"compile_{label}"] = {"median": statistics.median(compiles), "runs": compiles}

    # 5. docker build, cold and after the same pin change
    if docker:
        tag = f"graphbuild-bench-python-{os.getpid()}-{int(time.time())}"
        new_lines = locked_lines(on.lock_path)
        changed = sorted(set(new_lines) - set(all_lines))
        log(f"docker build, cold ({len(all_lines)} packages)")
        context = docker_context(work, all_lines)
        try:
            res["docker_cold"] = docker_build(docker, context, f"{tag}:cold", no_cache=True)
            (context / "env.txt").write_text("\n".join(new_lines) + "\n")
            rebuilds = []
            for i in range(args.repeat):
                if i:  # drop the rebuilt image: its pip layer goes, the cold image's layers stay cached
                    subprocess.run(["docker", "rmi", "-f", f"{tag}:rebuild"], env=docker, capture_output=True)
                log(f"docker build after the pin change ({len(changed)} line(s) of env.txt changed) "
                    f"{i + 1}/{args.repeat}")
                rebuilds.append(docker_build(docker, context, f"{tag}:rebuild", no_cache=False))
            res["docker_rebuild"] = statistics.median(rebuilds)
            res["docker_rebuilds"] = rebuilds
            res["docker_noop"] = docker_build(docker, context, f"{tag}:rebuild", no_cache=False)
        finally:
            for suffix in ("rebuild", "cold"):
                subprocess.run(["docker", "rmi", "-f", f"{tag}:{suffix}"], env=docker, capture_output=True)

        # 5b. BuildKit + uv + a cache mount: `uv pip compile` + `docker build`, each pin change a new version
        run_id = f"{os.getpid()}-{int(time.time())}"
        client = buildkit.docker_client(docker)
        if client is None:
            log("no docker client that builds with BuildKit: skipping the BuildKit baseline")
        else:
            cache_before = buildkit.build_cache_ids(docker, client)
            try:
                for bytecode in (False, True):
                    label = "bytecode" if bytecode else "nobytecode"
                    bk = buildkit.BuildKitBaseline(work, docker, base_image=BASE_IMAGE, uv=uv_bin(),
                                                   uv_cache=warm_caches[bytecode][1], requirements=CORE + ML,
                                                   bytecode=bytecode, run_id=run_id)
                    bk.compile(PIN_OLD, PIN_OLD)
                    compiled = (bk.context / "env.txt").read_bytes()
                    log(f"BuildKit + uv ({label}): cold build ({bk.pinned} pins)")
                    cold = bk.build("cold", no_cache=True)
                    runs = []
                    for i in range(repeat):
                        (bk.context / "env.txt").write_bytes(compiled)
                        log(f"BuildKit + uv ({label}) after {PIN_OLD} -> {PIN_VERSIONS[i]} {i + 1}/{repeat}")
                        compile_s = bk.compile(PIN_OLD, PIN_VERSIONS[i])
                        build_s = bk.build(f"rebuild-{i}")
                        runs.append({"compile": compile_s, "build": build_s, "total": compile_s + build_s})
                    median = sorted(runs, key=lambda r: r["total"])[(len(runs) - 1) // 2]
                    res[f"buildkit_{label}"] = {"cold": cold, "median": median, "runs": runs, "pins": bk.pinned}
                    registry = docker.get("GRAPHBUILD_REGISTRY")
                    if registry:
                        repository = f"graphbuild-bench-{run_id}/buildkit-{label}"
                        before = bk.push("cold", registry, repository)
                        after = bk.push("rebuild-0", registry, repository)
                        res[f"buildkit_push_{label}"] = {
                            "image": sum(after.values()),
                            "new": sum(size for digest, size in after.items() if digest not in before),
                            "layers": len(after) - 1}
                    bk.remove_images("cold", *(f"rebuild-{i}" for i in range(repeat)))
            finally:
                buildkit.remove_build_cache(docker, client, buildkit.build_cache_ids(docker, client) - cache_before)

        # 6b. import times in a read-only container
        for bytecode, env_dir in env_dirs.items():
            label = "bytecode" if bytecode else "nobytecode"
            log(f"import {IMPORTS} ({label}): one warm-up run, then {args.import_runs}")
            import_seconds(docker, env_dir)
            runs = [import_seconds(docker, env_dir) for _ in range(args.import_runs)]
            res[f"import_{label}"] = {"median": statistics.median(runs), "runs": runs}

    # 8. bytes a push moves after the pin change: the same layers on the Debian base, pushed
    if docker and docker.get("GRAPHBUILD_REGISTRY") and os.environ.get("GRAPHBUILD_BASE_TARBALL", docker.get(
            "GRAPHBUILD_BASE_TARBALL")):
        tarball = Path(docker.get("GRAPHBUILD_BASE_TARBALL") or os.environ["GRAPHBUILD_BASE_TARBALL"])
        prefix = f"graphbuild-bench-{os.getpid()}-{int(time.time())}"
        for ws in (on, off):
            label = "bytecode" if ws.bytecode else "nobytecode"
            cache, uv_cache = warm_caches[ws.bytecode]
            ws.ship = prefix + f"-{label}"
            place_file(tarball, ws.root / ".bases/base.tar")
            ws.write(PIN_OLD)
            log(f"push ({label}): the first push of //envs:ship")
            first = ws.gb("run", "--relock", SHIP_ENV, cache=cache, uv_cache=uv_cache, jobs=args.jobs,
                          services=docker)
            ws.write(PIN_NEW)
            log(f"push ({label}) after {PIN_OLD} -> {PIN_NEW}")
            second = ws.gb("run", "--relock", SHIP_ENV, cache=cache, uv_cache=uv_cache, jobs=args.jobs,
                           services=docker)
            nodes = {n["id"]: n for n in second.json()["nodes"]}
            push = nodes[f"{SHIP_ENV}#push"]["metadata"]
            first_push = {n["id"]: n for n in first.json()["nodes"]}[f"{SHIP_ENV}#push"]["metadata"]
            res[f"ship_{label}"] = {
                "wall": second.seconds,
                "ran": sorted(nid.split("#", 1)[1] for nid, n in nodes.items()
                              if n["status"] == "ran" and n["phase"] != "lock"),
                "first_uploaded": first_push["uploaded_bytes"],
                "uploaded": push["uploaded_bytes"], "sbom": push["sbom_bytes"], "manifests": push["manifest_bytes"],
                "ml_layer": nodes[f"{SHIP_ENV}#compress.pkg.tqdm"]["metadata"]["size"],
                "layers": len(json.loads((cache / "blobs/sha256" / nodes[f"{SHIP_ENV}#image"]["outputs"][
                    "manifest.json"]).read_bytes())["layers"]),
                "config": len((cache / "blobs/sha256" / nodes[f"{SHIP_ENV}#image"]["outputs"]["config.json"])
                              .read_bytes()),
            }

    res["sources_changed"] = sources_digest() != sources
    if args.results:
        args.results.write_text(json.dumps(res.data, indent=2, default=str) + "\n")
    print_report(res, args)
    ok = all(res[f"rebuild_{label}"]["pass"] for label in ("bytecode", "nobytecode"))
    return 0 if ok else 1


def print_report(res: Results, args: argparse.Namespace) -> None:
    def row(what: str, value: str, notes: str = "") -> None:
        print(f"| {what} | {value} | {notes} |")

    floor = res["floor"]["wall"]
    floor_bc = res["floor_bytecode"]
    print()
    print(f"Python layers: {res['packages']} packages ("
          + ", ".join(f"{k}: {v}" for k, v in res["layers"].items()) + f"), graphbuild -j {args.jobs}, "
          f"median of {args.repeat} where noted")
    print(f"machine: {res['machine']}")
    print("warm builds, floor and replayed steps: " + ("uv online (--online-warm)" if args.online_warm
                                                       else "UV_OFFLINE=1 (wheels from the warm uv cache only)"))
    print(f"code: {res['commit']} (HEAD of {REPO}; uncommitted edits included)")
    if res["sources_changed"]:
        print("WARNING: graphbuild's sources changed during this run: the figures mix two versions; run again")
    print()
    print("| measurement | wall | notes |")
    print("|---|---:|---|")
    row("`graphbuild lock` (fresh uv cache)", fmt(res["lock"]), f"{res['packages']} packages")
    for label, title in (("nobytecode", "bytecode off"), ("bytecode", "bytecode on (default)")):
        cold, warm = res[f"cold_{label}"], res[f"warm_{label}"]
        durations = warm["last"]["durations"]
        row(f"cold build, {title}", fmt(cold["wall"]), "fresh graphbuild cache + fresh uv cache")
        row(f"warm build, {title}", f"**{fmt(warm['wall'])}**",
            f"fresh graphbuild cache, warm uv cache; runs {', '.join(f'{w:.2f}' for w in warm['walls'])}; "
            f"{sum(1 for n in durations if '#pkg.' in n)} package nodes, "
            f"{sum(v or 0 for n, v in durations.items() if '#pkg.' in n):.2f} s in all; "
            f"layers {res[f'layer_bytes_{label}'] / 1e6:.0f} MB")
    for key, how in (("floor", "copies (as defined since issue 3)"), ("floor_hardlink", "hard links (uv's default)")):
        runs = res[key]["runs"]
        last = runs[-1]
        floor_runs = ", ".join(f"{r['total']:.2f}" for r in runs)
        row(f"floor: uv install --target with {how} + tar + sha256", f"**{fmt(res[key]['wall'])}**",
            f"runs {floor_runs}, each beside a warm build without bytecode; last: install {last['install']:.2f} s, "
            f"tar {last['tar']:.2f} s, sha256 {last['sha256']:.2f} s; {last['bytes'] / 1e6:.0f} MB")
    row("floor + bytecode compiled as layers.py does", fmt(floor_bc["total"]),
        f"compile {floor_bc['compile']:.2f} s; {floor_bc['bytes'] / 1e6:.0f} MB; one run")
    for label in ("nobytecode", "bytecode"):
        rebuild = res[f"rebuild_{label}"]
        runs = ", ".join(f"{r['wall']:.2f} (lock {r['lock']:.2f}, tqdm {r['durations'][TQDM_NODE]:.2f})"
                         for r in rebuild["runs"])
        row(f"rebuild after {PIN_OLD} -> {PIN_NEW}, {label.replace('no', 'no ')}", f"**{fmt(rebuild['wall'])}**",
            f"`build --relock`; build nodes ran: {', '.join(n.split('#')[1] for n in rebuild['ran']) or 'none'} "
            f"({'PASS' if rebuild['pass'] else 'FAIL'}); median run: lock node {rebuild['lock']:.2f} s, pkg.tqdm "
            f"{rebuild['durations'][TQDM_NODE]:.2f} s, outside the engine timer (CLI start) "
            f"{rebuild['wall'] - rebuild['engine']:.2f} s; runs {runs}; a no-op `lock` before: "
            f"{res[f'relock_noop_{label}']:.2f} s")
    if res["docker_cold"] is not None:
        row("`docker build` cold (legacy builder, pip)", fmt(res["docker_cold"]), "--no-cache")
        row("`docker build` after the same pin change", f"**{fmt(res['docker_rebuild'])}**",
            f"every package reinstalled; runs {', '.join(f'{r:.2f}' for r in res['docker_rebuilds'])}")
        row("`docker build`, nothing changed", fmt(res["docker_noop"]), "")
    if res["import_bytecode"] is not None:
        for label in ("nobytecode", "bytecode"):
            imp = res[f"import_{label}"]
            row(f"`import {IMPORTS}`, read-only container, {label.replace('no', 'no ')}",
                f"**{fmt(imp['median'])}**", f"median of {', '.join(f'{r:.2f}' for r in imp['runs'])} "
                "(after one warm-up run)")
    if res["profile"]:
        profiles: dict[str, dict[str, float]] = res["profile"]
        steps = list(dict.fromkeys(step for prof in profiles.values() for step in prof))
        print()
        print("Where a warm layer build's time goes (the python.layer executor's steps replayed, one layer alone):")
        print()
        print("| step | " + " | ".join(profiles) + " |")
        print("|---|" + "---:|" * len(profiles))
        for step in steps:
            print(f"| {step} | " + " | ".join(fmt(prof.get(step)) for prof in profiles.values()) + " |")

    print()
    print("Goals:")
    for label in ("nobytecode", "bytecode"):
        ratio = res[f"warm_{label}"]["wall"] / floor
        note = "" if label == "nobytecode" else " (the floor compiles no bytecode; compiling is extra work)"
        print(f"  warm build / floor, {label.replace('no', 'no ')}: {ratio:.2f}x "
              f"(goal <= {WARM_GOAL}x: {'MET' if ratio <= WARM_GOAL else 'NOT MET'}){note}")
    print(f"  warm build / floor with hard links, no bytecode: "
          f"{res['warm_nobytecode']['wall'] / res['floor_hardlink']['wall']:.2f}x (no goal; what uv's default costs)")
    print(f"  warm build, bytecode on / (floor + the same compile): "
          f"{res['warm_bytecode']['wall'] / floor_bc['total']:.2f}x")
    for label in ("nobytecode", "bytecode"):
        rebuild = res[f"rebuild_{label}"]
        print(f"  only the layer holding the pin rebuilt, {label.replace('no', 'no ')}: "
              f"{'PASS' if rebuild['pass'] else 'FAIL'} (ran: {rebuild['ran']}, lock changed: "
              f"{rebuild['lock_changed']})")
        if res["docker_rebuild"] is not None:
            speedup = res["docker_rebuild"] / rebuild["wall"]
            best = min(res["docker_rebuilds"]) / min(r["wall"] for r in rebuild["runs"])
            print(f"  docker rebuild / graphbuild rebuild, {label.replace('no', 'no ')}: {speedup:.1f}x "
                  f"(goal >= {REBUILD_GOAL:.0f}x: {'MET' if speedup >= REBUILD_GOAL else 'NOT MET'}); "
                  f"fastest / fastest: {best:.1f}x")
    print_side_by_side(res, args)
    if res["import_bytecode"] is not None:
        print(f"  import speedup with bytecode: "
              f"{res['import_nobytecode']['median'] / res['import_bytecode']['median']:.1f}x")


def print_side_by_side(res: Results, args: argparse.Namespace) -> None:
    """Issue 12's comparisons: the rebuild after one pin change against BuildKit + uv and the
    naive Dockerfile, the relock against one `uv pip compile`, the bytes a push moves."""
    labels = ("nobytecode", "bytecode")
    print()
    print(f"Rebuild after one pin change ({PIN_OLD} -> a new version each repetition), side by side, medians:")
    print()
    print("| | bytecode off | bytecode on |")
    print("|---|---:|---:|")

    def cells(values: list[str]) -> str:
        return " | ".join(values)

    gb = [res[f"rebuild_{label}"]["wall"] for label in labels]
    print(f"| graphbuild `build --relock` (CLI wall) | {cells([fmt(v) for v in gb])} |")
    print(f"| of which the lock node | {cells([fmt(res[f'rebuild_{label}']['lock_median']) for label in labels])} |")
    print(f"| one `uv pip compile` of the whole environment (--generate-hashes) | "
          f"{cells([fmt(res[f'compile_{label}']['median']) for label in labels])} |")
    bk = [res[f"buildkit_{label}"] for label in labels]
    if all(bk):
        print("| BuildKit + uv + cache mount: `uv pip compile` + `docker build` | "
              + cells([f"{b['median']['compile']:.2f} + {b['median']['build']:.2f} = **{b['median']['total']:.2f} s**"
                       for b in bk]) + " |")
        print(f"| BuildKit + uv, cold (`--no-cache`, empty cache mount) | {cells([fmt(b['cold']) for b in bk])} |")
    if res["docker_rebuild"] is not None:
        print(f"| naive Dockerfile (legacy builder, `pip install`, no cache; pip compiles bytecode) | "
              f"{fmt(res['docker_rebuild'])} | {fmt(res['docker_rebuild'])} |")
    print()
    print("Goals (issue 12), ratios of the medians above:")
    for label, wall in zip(labels, gb, strict=True):
        name = label.replace("no", "no ")
        relock = res[f"rebuild_{label}"]["lock_median"] / res[f"compile_{label}"]["median"]
        print(f"  relock (lock node) / one uv pip compile, {name}: {relock:.2f}x "
              f"(goal <= 1.0x: {'MET' if relock <= 1.0 else 'NOT MET'})")
        if res[f"buildkit_{label}"]:
            ratio = res[f"buildkit_{label}"]["median"]["total"] / wall
            goal = BUILDKIT_GOALS[label]
            print(f"  BuildKit + uv / graphbuild, {name}: {ratio:.2f}x (goal >= {goal:.0f}x: "
                  f"{'MET' if ratio >= goal else 'NOT MET'})")
        if res["docker_rebuild"] is not None:
            ratio = res["docker_rebuild"] / wall
            print(f"  naive Dockerfile / graphbuild, {name}: {ratio:.1f}x (goal >= {NAIVE_GOAL:.0f}x: "
                  f"{'MET' if ratio >= NAIVE_GOAL else 'NOT MET'})")
    for label in labels:
        ship, bkpush = res[f"ship_{label}"], res[f"buildkit_push_{label}"]
        if not ship:
            continue
        name = label.replace("no", "no ")
        pushed = ship["uploaded"] + ship["sbom"] + ship["manifests"]
        bound = ship["ml_layer"] + ship["config"] + ship["manifests"]
        met = "MET" if pushed <= 1.2 * bound else "NOT MET"
        print(f"  bytes pushed after the pin change, {name}: graphbuild {pushed / 1e6:.2f} MB (blobs "
              f"{ship['uploaded'] / 1e6:.2f} MB + SBOM {ship['sbom'] / 1e3:.1f} kB + manifests {ship['manifests']} B; "
              f"the changed package's layer `pkg.tqdm` compressed: {ship['ml_layer'] / 1e6:.3f} MB; "
              f"{pushed / bound:.2f}x layer + config + manifests (goal <= 1.2x: {met}); "
              f"{ship['layers']} layers in the image)"
              + (f"; BuildKit {bkpush['new'] / 1e6:.1f} MB of a {bkpush['image'] / 1e6:.1f} MB image "
                 f"({bkpush['layers']} layers)" if bkpush else ""))
        print(f"    graphbuild nodes that ran: {', '.join(ship['ran'])}; "
              f"first push {ship['first_uploaded'] / 1e6:.1f} MB")



if __name__ == "__main__":
    sys.exit(main())
