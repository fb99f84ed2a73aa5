"""Package layers: locked wheels installed on the host for the image's Python, as a deterministic tar.

Files land where the image's environment expects them (`<prefix>/lib/pythonX.Y/site-packages`,
console scripts in `<prefix>/bin` with `#!<prefix>/bin/python`); nothing of the host leaks in
(no host paths, no mtimes, no `__pycache__` compiled by the host unless asked, hash-based then).
Each layer also writes `files.json`, its file list with content digests, which image assembly
uses to refuse layers that overwrite each other.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import sys
import tarfile
import threading
from pathlib import Path
from typing import Any

import xxhash

from graphbuild.api import ActionFailed, ExecContext, executor
from graphbuild.rules.python.bytecode import compile_tree, prestart_worker
from graphbuild.rules.python.uv import run_uv
from graphbuild.rules.tarball import walk_sorted, write_entries, write_tree

#: Bump when the layout of a layer changes (paths, modes, what is stripped).
LAYER_FORMAT = 1
DEFAULT_PREFIX = "/opt/env"
#: The outputs of every layer node: the tar and its file list.
LAYER_OUTPUTS = ("layer.tar", "files.json")


def site_packages(prefix: str, python: str) -> str:
    return f"{prefix}/lib/python{python}/site-packages"


@executor("python.layer", version=6)
def build_layer(ctx: ExecContext) -> dict[str, Any]:
    """Install locked wheels (`pkg:<name>` inputs; one per package node) for the image's Python,
    platform and prefix, compile their bytecode if asked, and write the tar and its listing.

    Unkeyed `prefetch`: the `name @ url --hash` lines of the packages installed with it (the
    other package nodes of the environment). When uv's cache lacks this node's wheel, one uv
    call downloads every one of them that is missing too, so that a cold build makes one bulk
    download rather than one per package node; it cannot change what this node installs."""
    python, platform, prefix = ctx.inputs["python"], ctx.inputs["platform"], ctx.inputs["prefix"]
    packages = {k.removeprefix("pkg:"): v for k, v in ctx.inputs.items() if k.startswith("pkg:")}
    lines = []
    wheels_dir = ctx.scratch / "wheels"
    wheels_dir.mkdir()
    for _, entry in sorted(packages.items()):
        line = wheel_line(entry)
        if line is not None:
            lines.append(line)
        else:  # a wheel built by another node: its file name is its second output
            filename = Path(entry["filename"]).read_text().strip()
            local = wheels_dir / filename
            shutil.copyfile(entry["wheel"], local)
            lines.append(str(local))
    staging = ctx.scratch / "staging"
    (ctx.scratch / "layer.txt").write_text("\n".join(lines) + "\n")
    # hard links into uv's cache (a copy costs 5 s of system time for 360 MB here): the files
    # are only read afterwards; the few edited below are replaced, never written in place
    install = _install("hardlink", staging, python, platform, ctx.scratch / "layer.txt")
    # Locked wheels are immutable: uv's cache first, without asking the index whether they
    # changed (some proxies strip the cache headers that would tell uv); online if one is missing.
    if ctx.inputs.get("bytecode"):
        prestart_worker()  # its interpreter starts while uv installs
    proc = run_uv([*install, "--offline"], cwd=ctx.scratch)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        if _prefetch(ctx, python, platform):
            proc = run_uv([*install, "--offline"], cwd=ctx.scratch)
    if proc.returncode != 0:
        shutil.rmtree(staging, ignore_errors=True)
        proc = run_uv(install, cwd=ctx.scratch)
    ctx.log(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        raise ActionFailed(f"uv could not install the layer's {len(lines)} wheels", details=proc.stderr)
    root = ctx.scratch / "root"
    sp = root / site_packages(prefix, python).lstrip("/")
    bindir = root / f"{prefix}/bin".lstrip("/")
    sp.parent.mkdir(parents=True)
    if (staging / "bin").is_dir():
        shutil.move(staging / "bin", bindir)
        _fix_scripts(bindir, f"{prefix}/bin/python")
    staging.rename(sp)
    _strip_host_state(sp)
    if ctx.inputs.get("bytecode"):
        compile_tree(ctx, root, python)
    sha = write_tree(root, ctx.out("layer.tar"))
    count = write_listing(ctx.out("files.json"), _tree_entries(root))
    return {"sha256": sha, "entries": count, "packages": sorted(packages)}


def _install(link_mode: str, target: Path, python: str, platform: str, requirements: Path) -> list[str]:
    """uv's arguments to install locked wheels into `target` for the image's Python and
    platform. uv is told which interpreter to run as (its own, any: the target's version and
    platform are given), so that it does not search PATH for one: 0.2 s of a 0.25 s install."""
    return ["pip", "install", "--no-deps", "--no-build", "--link-mode", link_mode, "--no-compile", "--quiet",
            "--python", sys.executable, "--target", str(target), "--python-version", python,
            "--python-platform", platform, "-r", str(requirements)]



_PREFETCHED: dict[tuple[str, ...], threading.Lock] = {}
_MISSES: dict[tuple[str, ...], int] = {}
_PREFETCH_GUARD = threading.Lock()


def _prefetch(ctx: ExecContext, python: str, platform: str) -> bool:
    """Fill uv's cache with this node's siblings' wheels (unkeyed `prefetch`) in one uv call,
    once per set per process, from the second node of the set that misses uv's cache on: a
    pin change misses once (its node fetches its own wheel alone), a cold build misses for
    every node (one bulk download then serves all but the first). The installed tree is thrown
    away (hard links into uv's cache: cheap). Whether uv's cache may hold more than before
    (worth another offline try)."""
    lines = tuple(sorted(ctx.unkeyed.get("prefetch") or ()))
    if not lines:
        return False
    with _PREFETCH_GUARD:
        _MISSES[lines] = _MISSES.get(lines, 0) + 1
        if _MISSES[lines] < 2:
            return False
        lock = _PREFETCHED.get(lines)
        first = lock is None
        if first:
            lock = _PREFETCHED[lines] = threading.Lock()
            lock.acquire()
    if not first:
        with lock:  # another node is downloading them: wait for it
            return True
    try:
        work = ctx.scratch / "prefetch"
        work.mkdir()
        (work / "all.txt").write_text("\n".join(lines) + "\n")
        proc = run_uv(_install("hardlink", work / "t", python, platform, work / "all.txt"), cwd=work)
        ctx.log(f"prefetched {len(lines)} wheels into uv's cache (exit {proc.returncode})\n" + proc.stderr[-2000:])
        shutil.rmtree(work, ignore_errors=True)
    finally:
        lock.release()
    return True


def wheel_line(entry: dict[str, Any]) -> str | None:
    """The requirement line uv installs a locked wheel from (None for a wheel built by a node)."""
    if "url" not in entry:
        return None
    return f"{entry['name']} @ {entry['url']} --hash=sha256:{entry['sha256']}"


def _tree_entries(root: Path) -> list[list[Any]]:
    """[kind, path, detail] of everything under `root`, as the layer's tar holds it."""
    entries: list[list[Any]] = []
    for name, path in walk_sorted(root):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            entries.append(["l", name, os.readlink(path)])
        elif stat.S_ISDIR(st.st_mode):
            entries.append(["d", name, None])
        else:
            entries.append(["f", name, f"{_file_digest(path)} {'755' if st.st_mode & 0o111 else '644'}"])
    return entries


def _file_digest(path: Path) -> str:
    digest = xxhash.xxh3_128()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_listing(dest: Path, entries: list[list[Any]]) -> int:
    dest.write_text(json.dumps({"entries": entries}, separators=(",", ":")) + "\n")
    return len(entries)


@executor("python.venv", version=2)
def build_venv_layer(ctx: ExecContext) -> dict[str, Any]:
    """The environment's skeleton: a venv at the prefix using the base image's interpreter."""
    prefix, python, interpreter = ctx.inputs["prefix"], ctx.inputs["python"], ctx.inputs["interpreter"]
    home = str(Path(interpreter).parent)
    cfg = f"home = {home}\ninclude-system-site-packages = false\nversion = {python}\n"
    base = prefix.lstrip("/")
    files = {f"{base}/pyvenv.cfg": (cfg.encode(), 0o644),
             f"{base}/lib/python{python}/site-packages/.keep": (b"", 0o644)}
    links = {f"{base}/bin/python": interpreter, f"{base}/bin/python3": "python",
             f"{base}/bin/python{python}": "python", f"{base}/lib64": "lib"}
    sha = write_entries(ctx.out("layer.tar"), files, links)
    entries: list[list[Any]] = [["f", name, f"{xxhash.xxh3_128_hexdigest(data)} {mode:o}"]
                                for name, (data, mode) in files.items()]
    entries += [["l", name, target] for name, target in links.items()]
    dirs = {"/".join(name.split("/")[:i]) for name, *_ in entries for i in range(1, name.count("/") + 1)}
    write_listing(ctx.out("files.json"), sorted([*entries, *(["d", d, None] for d in dirs)], key=lambda e: e[1]))
    return {"sha256": sha}


def _fix_scripts(bindir: Path, interpreter: str) -> None:
    for script in sorted(bindir.iterdir()):
        if not script.is_file():
            continue
        data = script.read_bytes()
        if data.startswith(b"#!"):
            first, _, rest = data.partition(b"\n")
            if b"python" in first:
                data = b"#!" + interpreter.encode() + b"\n" + rest
        _replace(script, data, 0o755)


def _replace(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Write `path` as a new file: it may be a hard link into uv's cache, which an in-place
    write or chmod would change for every later install."""
    path.unlink()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(path, mode)  # (the umask applied at creation)


def _strip_host_state(site: Path) -> None:
    """Remove what would differ between machines or runs: caches, uv's lock of the target
    directory, and uv's notes on where a local wheel came from (scratch paths, timestamps)."""
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    (site / ".lock").unlink(missing_ok=True)
    for dist_info in site.glob("*.dist-info"):
        dropped = [dist_info / "uv_cache.json"]
        direct_url = dist_info / "direct_url.json"
        if direct_url.is_file() and b'"file://' in direct_url.read_bytes():
            dropped.append(direct_url)
        dropped = [p for p in dropped if p.is_file()]
        for path in dropped:
            path.unlink()
        record = dist_info / "RECORD"
        if dropped and record.is_file():
            names = {f"{dist_info.name}/{p.name}," for p in dropped}
            kept = [line for line in record.read_text().splitlines() if not any(line.startswith(n) for n in names)]
            _replace(record, ("\n".join(kept) + "\n").encode())


@executor("python.layer_merge", version=1)
def merge_layers(ctx: ExecContext) -> dict[str, Any]:
    """One image layer made of several package nodes' tars (input `parts`: their `layer.tar`
    and `files.json`, in order): their members copied as they are, a directory that an earlier
    part already holds skipped, one end-of-archive marker. No file is read twice: the bytes of
    each member are copied from its part, so merging costs what copying the tars does."""
    parts = ctx.inputs["parts"]
    seen_dirs: set[str] = set()
    entries: list[list[Any]] = []
    digest = hashlib.sha256()
    with open(ctx.out("layer.tar"), "wb") as dest:
        def write(data: bytes) -> None:
            digest.update(data)
            dest.write(data)

        for part in parts:
            with open(part["tar"], "rb") as source, tarfile.open(fileobj=source, mode="r:") as tar:
                spans = [(member.offset, member.name, member.isdir()) for member in tar]
                end = tar.offset
                starts = [start for start, _, _ in spans] + [end]
                for (start, name, is_dir), stop in zip(spans, starts[1:], strict=True):
                    if is_dir:
                        if name in seen_dirs:
                            continue
                        seen_dirs.add(name)
                    source.seek(start)
                    remaining = stop - start
                    while remaining:
                        chunk = source.read(min(remaining, 1 << 20))
                        if not chunk:
                            raise ActionFailed(f"package layer {part['tar']} ends early")
                        write(chunk)
                        remaining -= len(chunk)
            entries.extend(json.loads(Path(part["files"]).read_bytes())["entries"])
        write(b"\0" * 1024)
    unique: dict[str, list[Any]] = {}
    for entry in entries:
        previous = unique.setdefault(entry[1], entry)
        if previous != entry:
            raise ActionFailed(f"two packages of one layer ship /{entry[1]} with different content",
                               details="usually one distribution locked twice, or two distributions shipping "
                               "the same module", deterministic=True)
    count = write_listing(ctx.out("files.json"), list(unique.values()))
    return {"sha256": digest.hexdigest(), "entries": count, "parts": len(parts)}
