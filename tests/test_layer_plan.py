"""The layer planner on synthetic workspaces (pure logic: no Docker, no uv)."""

from __future__ import annotations

import random

import pytest

from graphbuild.rules.python.layer_plan import DEFAULT_MAX_LAYERS, Package, Plan, plan_layers


def workspace(envs: int, *, seed: int = 1, core: int = 30, pool: int = 400, extra: tuple[int, int] = (5, 60)
              ) -> dict[str, dict[str, Package]]:
    """`envs` environments over one core of `core` packages, each with a random pick of a
    shared pool of others (some in two versions across environments)."""
    rng = random.Random(seed)
    names = [f"p{i:03d}" for i in range(pool)]
    found: dict[str, dict[str, Package]] = {}
    for e in range(envs):
        packages = {f"core{i:02d}": Package(f"core{i:02d}", f"c{i}", direct=i < 5) for i in range(core)}
        for name in rng.sample(names, rng.randint(*extra)):
            version = rng.choice("ab") if int(name[1:]) % 7 == 0 else "a"
            packages[name] = Package(name, f"{name}-{version}", direct=rng.random() < 0.3)
        found[f"env{e:03d}"] = packages
    return found


def layer_sets(plan: Plan) -> dict[str, list[tuple[str, ...]]]:
    return {env: [layer.idents for layer in layers] for env, layers in plan.layers.items()}


def check_plan(plan: Plan, envs: dict[str, dict[str, Package]], reserved: dict[str, int]) -> None:
    for env, packages in envs.items():
        layers = plan.of(env)
        # every package of the environment exactly once, nothing it did not lock
        held = [ident for layer in layers for ident in layer.idents]
        assert sorted(held) == sorted(p.ident for p in packages.values()), env
        assert len(layers) + reserved.get(env, 0) <= plan.max_layers, env
        for layer in layers:
            assert env in layer.environments
        # most shared first
        counts = [len(layer.environments) for layer in layers]
        assert counts == sorted(counts, reverse=True), env


@pytest.mark.parametrize("count", [2, 20, 200])
def test_plan_is_deterministic_capped_and_most_shared_first(count: int) -> None:
    envs = workspace(count)
    reserved = {env: 1 + i % 3 for i, env in enumerate(envs)}
    plan = plan_layers(envs, reserved=reserved)
    check_plan(plan, envs, reserved)
    # the same workspace, environments and packages given in another order: the same plan
    shuffled = list(envs.items())
    random.Random(7).shuffle(shuffled)
    again = plan_layers({env: dict(reversed(list(p.items()))) for env, p in shuffled}, reserved=reserved)
    assert layer_sets(again) == layer_sets(plan)
    assert [[layer.name for layer in again.of(e)] for e in envs] == [[layer.name for layer in plan.of(e)] for e in envs]
    # the core every environment holds comes first in every image, with the same chain under it
    first = plan.of("env000")[0]
    assert len(first.environments) == count
    for env in envs:
        assert plan.of(env)[0].idents == first.idents
        assert plan.chain_is_shared(env, plan.of(env)[0])


@pytest.mark.parametrize("count", [2, 20, 200])
def test_every_image_stays_under_a_small_cap(count: int) -> None:
    envs = workspace(count)
    for cap in (5, 12):
        plan = plan_layers(envs, max_layers=cap, reserved={env: 2 for env in envs})
        check_plan(plan, envs, {env: 2 for env in envs})


def test_default_cap_is_documented_forty() -> None:
    assert DEFAULT_MAX_LAYERS == 40


def test_a_package_alone_gets_its_own_layer_and_small_ones_share_under_the_cap() -> None:
    packages = {f"t{i:02d}": Package(f"t{i:02d}", f"t{i}") for i in range(50)}
    packages["big"] = Package("big", "b", size=50 << 20)
    packages["pinned"] = Package("pinned", "x", direct=True)
    plan = plan_layers({"only": packages}, max_layers=10, reserved={"only": 1})
    layers = plan.of("only")
    assert len(layers) == 9
    own = {layer.packages[0] for layer in layers if len(layer.packages) == 1}
    assert {"big", "pinned"} <= own
    shared = [layer for layer in layers if len(layer.packages) > 1]
    assert len(shared) == 1 and "max_layers" in shared[0].reason
    # the pinned package's layer comes after the transitive ones (it changes more often)
    assert layers[-1].packages != shared[0].packages or layers[-1].direct


def test_one_pin_change_moves_few_layers_of_other_environments() -> None:
    envs = workspace(20)
    before = plan_layers(envs)
    changed = {env: dict(p) for env, p in envs.items()}
    victim = next(name for name, p in changed["env005"].items() if not name.startswith("core"))
    changed["env005"][victim] = Package(victim, "brand-new", direct=True)
    after = plan_layers(changed)
    moved = {env: len(set(layer_sets(after)[env]) - set(layer_sets(before)[env])) for env in envs if env != "env005"}
    # the old version leaves the layer(s) it was in; no other layer of any other image changes
    assert sum(moved.values()) <= 2 * sum(1 for env in envs if victim in envs[env] and env != "env005")
    assert max(moved.values()) <= 2


def test_environments_sharing_nothing_but_the_core() -> None:
    envs = {f"e{i}": {"core": Package("core", "c"), f"own{i}": Package(f"own{i}", "x")} for i in range(3)}
    plan = plan_layers(envs)
    for env in envs:
        assert [layer.packages for layer in plan.of(env)] == [("core",), (f"own{env[1:]}",)]
        assert plan.of(env)[0].environments == ("e0", "e1", "e2")
