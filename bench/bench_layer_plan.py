"""How much one pin change moves the layer plan of the *other* environments (issue 12).

    .venv/bin/python bench/bench_layer_plan.py [--synthetic 20 200]

For the repository workspace's locks (every environment, planned together as analysis plans
them: //envs:* and the root's //:ci, by label) and synthetic workspaces (the planner tests'
generator), every (environment, package) pair is changed in turn, as a pin change would (a
new wheel of that package in that one environment), and the plan made again. It counts, per
change, the layers of the other environments whose content changed (a layer's digest changes
exactly when its packages do), those among them in *another package* than the changed
environment's, and the layers of the changed environment itself. Pure logic: no build, no
Docker.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from graphbuild.rules.python import lockfile  # noqa: E402
from graphbuild.rules.python.environment import planned_packages  # noqa: E402
from graphbuild.rules.python.layer_plan import Package, plan_layers  # noqa: E402


def example_envs() -> tuple[dict[str, dict[str, Package]], dict[str, int]]:
    envs, reserved = {}, {}
    for package, directory in (("envs", REPO / "envs"), ("", REPO)):
        for path in sorted(directory.glob("pylock.*.toml")):
            lock = lockfile.parse(path.read_text())
            label = f"//{package}:" + path.name.removeprefix("pylock.").removesuffix(".toml")
            envs[label] = planned_packages(lock)
            reserved[label] = 1 + len(lock.spec.get("libraries", []))
    return envs, reserved


def package_of(env: str) -> str:
    return env.partition(":")[0] if env.startswith("//") else ""


def measure(title: str, envs: dict[str, dict[str, Package]], reserved: dict[str, int]) -> None:
    started = time.perf_counter()
    before = plan_layers(envs, reserved=reserved)
    seconds = time.perf_counter() - started
    layer_sets = {env: {layer.idents for layer in before.of(env)} for env in envs}
    others, other_packages, own = [], [], []
    pairs = [(env, name) for env in sorted(envs) for name in sorted(envs[env])]
    if len(pairs) > 400:  # a sample, evenly spread, for the big workspaces
        pairs = pairs[:: len(pairs) // 400]
    for env, name in pairs:
        changed = {e: dict(p) for e, p in envs.items()}
        old = changed[env][name]
        changed[env][name] = Package(name, old.wheel + "-new", old.size, old.direct)
        after = plan_layers(changed, reserved=reserved)
        moved = {e: len({layer.idents for layer in after.of(e)} - layer_sets[e]) for e in envs}
        others.append(sum(v for e, v in moved.items() if e != env))
        other_packages.append(sum(v for e, v in moved.items() if package_of(e) != package_of(env)))
        own.append(moved[env])
    counts = [len(before.of(e)) + reserved.get(e, 0) for e in envs]
    print(f"{title}: {len(envs)} environments, {len({p.ident for e in envs.values() for p in e.values()})} distinct "
          f"packages; layers per image {min(counts)}-{max(counts)} (cap {before.max_layers}); plan made in "
          f"{seconds * 1000:.0f} ms")
    print(f"  one pin change ({len(pairs)} tried): layers of OTHER environments that change: median "
          f"{statistics.median(others)}, mean {statistics.mean(others):.2f}, max {max(others)}; "
          f"{sum(1 for o in others if o == 0)} of {len(others)} changes move none")
    if any(package_of(e) != package_of(next(iter(envs))) for e in envs):
        print(f"  of those, layers of environments of ANOTHER package: median {statistics.median(other_packages)}, "
              f"max {max(other_packages)}; {sum(1 for o in other_packages if o == 0)} of {len(other_packages)} "
              "changes move none")
    print(f"  layers of the changed environment that change: median {statistics.median(own)}, max {max(own)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--synthetic", type=int, nargs="*", default=[20, 200])
    args = parser.parse_args()
    envs, reserved = example_envs()
    measure("repository workspace (//envs:*, //:ci)", envs, reserved)
    from test_layer_plan import workspace

    for count in args.synthetic:
        synthetic = workspace(count)
        measure(f"synthetic workspace of {count}", synthetic, {e: 2 for e in synthetic})


if __name__ == "__main__":
    main()
