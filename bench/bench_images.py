"""Images and tests on the example workspace (issue 4): test runs executed vs the naive
environments x libraries, and the bytes a second environment's push uploads vs its size.

    .venv/bin/python bench/bench_images.py
"""

from __future__ import annotations

import argparse
import tempfile
import uuid
from pathlib import Path

from example_copy import copy_example, graphbuild, services_env


def main() -> None:
    argparse.ArgumentParser(description=__doc__).parse_args()
    env = services_env()
    with tempfile.TemporaryDirectory(prefix="graphbuild-bench-images-") as tmp:
        root = Path(tmp)
        prefix = f"bench-{uuid.uuid4().hex[:8]}"
        ws = copy_example(root / "ws", prefix)
        env_all = {**env, "GRAPHBUILD_CACHE_DIR": str(root / "cache")}
        report, seconds = graphbuild(["test", "//envs/..."], cwd=ws, env=env_all)
        tests = [n for n in report["nodes"] if n["kind"] == "python.test"]
        envs = {n["label"] for n in tests}
        ran = [n for n in tests if n["status"] == "ran"]
        print(f"cold `graphbuild test //envs/...` of the example workspace: {seconds:.1f} s")
        print(f"test nodes: {len(tests)} (environments x their libraries, over {len(envs)} environments); "
              f"test runs executed: {len(ran)}; reused: {len(tests) - len(ran)}")
        for node in tests:
            print(f"  {node['id']:<40} {node['status']:<7} {node.get('cached_from') or ''}")

        print("\npushes, one environment at a time, to fresh repositories of one registry:")
        print(f"{'environment':<12} {'image size':>12} {'uploaded':>12} {'mounted/skipped':>16}")
        for name in ("prod", "dev", "ml", "research"):
            run, _ = graphbuild(["run", f"//envs:{name}"], cwd=ws, env=env_all)
            push = next(n for n in run["nodes"] if n["id"].endswith("#push"))
            image = next(n for n in run["nodes"] if n["id"].endswith("#image"))
            meta = push["metadata"]
            size = image["metadata"].get("size") or 0
            print(f"{name:<12} {size / 1e6:>9.1f} MB {meta['uploaded_bytes'] / 1e6:>9.1f} MB "
                  f"{(meta['mounted_bytes'] + meta['skipped_bytes']) / 1e6:>13.1f} MB")


if __name__ == "__main__":
    main()
