"""Sharing work between machines (issue 5), measured side by side in one run:

1. the example workspace, `graphbuild test //envs/...`: a cold build writing the shared cache
   vs a second "machine" (another workspace copy, an empty local cache) reading it;
2. a workspace of 20 environments over a shared core: the nodes that run after a one-line
   spec change in one of them (and what `graphbuild affected` says).

    .venv/bin/python bench/bench_remote.py
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from example_copy import copy_example, graphbuild, services_env

from graphbuild.cache.signing import SigningKey, TrustedKeys

ENVIRONMENTS = 20
# tiny pure-Python wheels: environment i pins one of them at one of a few versions
EXTRAS = ["iniconfig==2.0.0", "iniconfig==2.1.0", "attrs==23.2.0", "attrs==24.2.0", "packaging==24.0",
          "packaging==24.1", "pluggy==1.5.0", "tomli==2.0.1", "tomli==2.2.1", "certifi==2024.8.30"]


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    env = services_env()
    registry = env["GRAPHBUILD_REGISTRY"]
    with tempfile.TemporaryDirectory(prefix="graphbuild-bench-remote-") as tmp:
        root = Path(tmp)
        remote = f"oci://{registry}/bench-cache-{uuid.uuid4().hex[:8]}"
        first = copy_example(root / "a", f"bench-{uuid.uuid4().hex[:8]}")
        second = copy_example(root / "b", f"bench-{uuid.uuid4().hex[:8]}")
        # the shared cache reads only entries signed by a trusted key; the writer holds it
        key = SigningKey.generate()
        (root / "signing.pem").write_bytes(key.pem())
        for copy in (first, second):
            config = copy / "graphbuild.toml"
            config.write_text(config.read_text() + f'\n[cache]\ntrusted_keys = ["{key.public.line()}"]\n')
        env = {**env, "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE": str(root / "signing.pem")}
        local_only = copy_example(root / "c", f"bench-{uuid.uuid4().hex[:8]}")
        _, cold_local = graphbuild(["test", "//envs/..."], cwd=local_only,
                                   env={**env, "GRAPHBUILD_CACHE_DIR": str(root / "cache-c")})
        cold, cold_s = graphbuild(["test", "//envs/...", "--remote-cache", remote], cwd=first,
                                  env={**env, "GRAPHBUILD_CACHE_DIR": str(root / "cache-a")})
        warm, warm_s = graphbuild(["test", "//envs/...", "--remote-cache", remote], cwd=second,
                                  env={**env, "GRAPHBUILD_CACHE_DIR": str(root / "cache-b")})
        ran = sum(n["status"] == "ran" for n in warm["nodes"])
        remote_hits = sum(n.get("cache") == "remote" for n in warm["nodes"])
        print("example workspace, `graphbuild test //envs/...` (uv's download cache warm in every case)")
        print(f"  cold, local cache only              {cold_local:6.1f} s")
        cold_ran = sum(n["status"] == "ran" for n in cold["nodes"])
        print(f"  cold, writing the shared cache      {cold_s:6.1f} s  ({cold_ran} nodes ran)")
        print(f"  second machine, shared cache warm   {warm_s:6.1f} s  ({ran} nodes ran, {remote_hits} of "
              f"{len(warm['nodes'])} fetched from the registry)")
        print(f"  speedup over the cold local build   {cold_local / warm_s:6.1f}x")
        signing_cost()
        twenty(root / "twenty", env)


def signing_cost(rounds: int = 2000) -> None:
    """What signing costs a writer and verifying a reader, per entry (a layer node's record)."""
    key = SigningKey.generate()
    trusted = TrustedKeys([key.public])
    record = {"status": "ok", "node": "//envs:app#layer.core", "metadata": {"files": 1234, "bytes": 98765432},
              "outputs": {"layer.tar": ["ab" * 32, 98765432, False], "listing": ["cd" * 32, 4567, False]},
              "output_digest": "ef" * 16, "message": None, "log_tail": "", "log": "01" * 32,
              "duration": 1.25, "created": 1763779000.5}
    inputs = {f"input{i}": ["23" * 16, f"value {i}"] for i in range(12)}
    key_text = "45" * 16
    samples = {"sign": [], "verify": []}
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(rounds):
            signature = key.sign(key_text, record, inputs)
        samples["sign"].append((time.perf_counter() - started) / rounds)
        started = time.perf_counter()
        for _ in range(rounds):
            trusted.check(signature, key_text, record, inputs)
        samples["verify"].append((time.perf_counter() - started) / rounds)
    print("\nsigned entries (Ed25519 over the canonical record), median of 5 x "
          f"{rounds}: sign {statistics.median(samples['sign']) * 1e6:.0f} us, "
          f"verify {statistics.median(samples['verify']) * 1e6:.0f} us per entry")


def twenty(ws: Path, env: dict[str, str]) -> None:
    ws.mkdir()
    (ws / "graphbuild.toml").write_text("")
    lines = ['py_layer(name = "core", requirements = ["six==1.16.0", "idna==3.7"])']
    lines.append('base_image(name = "debian", tarball = "../.bases/base.tar")')
    for i in range(ENVIRONMENTS):
        extra = EXTRAS[i % len(EXTRAS)]
        lines.append(textwrap.dedent(f"""
            py_layer(
                name = "extra{i}",
                over = [":core"],
                requirements = [
                    "{extra}",
                ],
            )
            environment(name = "env{i}", base = ":debian", layers = [":extra{i}"], libraries = ["//libs/tool"])
        """))
    (ws / "envs").mkdir()
    (ws / "envs/BUILD.envs").write_text("\n".join(lines))
    (ws / ".bases").mkdir()
    (ws / ".bases/base.tar").symlink_to(env["GRAPHBUILD_BASE_TARBALL"])
    lib = ws / "libs/tool"
    (lib / "tool").mkdir(parents=True)
    (lib / "tests").mkdir()
    (lib / "BUILD.envs").write_text('py_library(name = "tool")\n')
    (lib / "pyproject.toml").write_text('[project]\nname = "tool"\nversion = "1.0"\ndependencies = ["six"]\n'
                                        '[build-system]\nrequires = ["setuptools>=68"]\n'
                                        'build-backend = "setuptools.build_meta"\n')
    (lib / "tool/__init__.py").write_text("import six\n\ndef answer():\n    return 42\n")
    (lib / "tests/test_tool.py").write_text("import tool\n\ndef test_answer():\n    assert tool.answer() == 42\n")
    subprocess.run(["git", "init", "-q", str(ws)], check=True)
    cache = {**env, "GRAPHBUILD_CACHE_DIR": str(ws.parent / "cache-twenty")}
    _, lock_s = graphbuild(["lock", "//envs/..."], cwd=ws, env=cache)
    first, first_s = graphbuild(["test", "//envs/..."], cwd=ws, env=cache)
    subprocess.run(["git", "-C", str(ws), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(ws), "-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "x"],
                   check=True)
    build = ws / "envs/BUILD.envs"
    build.write_text(build.read_text().replace('"pluggy==1.5.0",', '"pluggy==1.4.0",', 1))
    affected, _ = graphbuild(["affected", "--since", "HEAD"], cwd=ws, env=cache)
    after, after_s = graphbuild(["test", "//envs/...", "--relock"], cwd=ws, env=cache)
    ran = [n["id"] for n in after["nodes"] if n["status"] == "ran" and n["phase"] != "lock"]
    print(f"\n{ENVIRONMENTS} environments over one core, each with a thin layer and a tested library")
    print(f"  lock {lock_s:.1f} s; first `test //envs/...`: {first_s:.1f} s, {len(first['nodes'])} nodes")
    print(f"  one-line change (a pin in one environment's layer): affected = {affected['targets']}")
    print(f"  `test --relock //envs/...`: {after_s:.1f} s; {len(ran)} of {len(after['nodes'])} nodes ran "
          f"(lock nodes excluded, they always run): {ran}")


if __name__ == "__main__":
    main()
