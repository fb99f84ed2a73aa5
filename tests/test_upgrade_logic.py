"""The pure parts of exec, forks and candidate upgrades: the `docker run` command line, `--env`
flags, where an upgrade goes in the layer stack, the comparison of before and now; and the spec
errors of `fork`/`upgrade` (exit 2 at their BUILD.envs line, no traceback)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from graphbuild.cli.parser import command_after_dashes as split_command
from graphbuild.rules.python.candidates import compare, moved_packages, render, short
from graphbuild.rules.python.fork import plan_steps
from graphbuild.rules.python.lockfile import Lock
from graphbuild.rules.python.workload import docker_run_args, parse_env_flags, resource_args


def test_the_docker_command_mounts_the_directory_read_only_with_the_limits_and_flags():
    argv = docker_run_args("img:1", ["python", "-V"], directory="/data", network="host", env={"A": "b"}, tty=True,
                           resources={"memory": 1 << 30, "pids": 64, "cpus": 2.0}, user="1000:1000", label="//e:x")
    assert argv[:3] == ["docker", "run", "--rm"] and "-t" in argv and argv[-3:] == ["img:1", "python", "-V"]
    joined = " ".join(argv)
    for part in ("--mount type=bind,source=/data,target=/work,readonly", "--workdir /work", "--network host",
                 "--memory 1073741824 --memory-swap 1073741824", "--pids-limit 64", "--cpus 2", "--env A=b",
                 "--user 1000:1000", "--cap-drop ALL", "--label org.graphbuild.exec=//e:x"):
        assert part in joined
    plain = docker_run_args("i", ["x"], directory="/d", resources={})
    assert "-t" not in plain and "--network none" in " ".join(plain) and "--memory" not in plain
    with pytest.raises(ValueError, match="network must be one of"):
        docker_run_args("i", ["x"], directory="/d", resources={}, network="bridge")


def test_resources_none_lifts_a_limit():
    assert resource_args({"memory": None, "pids": None, "cpus": None}) == []
    assert resource_args({"cpus": 0.5}) == ["--cpus", "0.5"]


def test_env_flags(monkeypatch):
    monkeypatch.setenv("FROM_HERE", "x y")
    assert parse_env_flags(["A=1", "B=", "FROM_HERE", "C=a=b"]) == {"A": "1", "B": "", "FROM_HERE": "x y", "C": "a=b"}
    for bad in ("1A=2", "=x", "A-B=1"):
        with pytest.raises(ValueError, match="expected NAME=VALUE"):
            parse_env_flags([bad])
    monkeypatch.delenv("NOT_SET_HERE", raising=False)
    with pytest.raises(ValueError, match="not set here"):
        parse_env_flags(["NOT_SET_HERE"])


def test_the_command_is_everything_after_the_first_double_dash():
    assert split_command(["exec", "//e:x", "--network", "host", "--", "sh", "-c", "x", "--", "-q"]) == (
        ["exec", "//e:x", "--network", "host"], ["sh", "-c", "x", "--", "-q"])
    assert split_command(["build", "--", "x"]) == (["build", "--", "x"], None)
    assert split_command(["exec", "//e:x"]) == (["exec", "//e:x"], None)


def _lock() -> Lock:
    layers = [{"label": "//envs:core", "packages": ["numpy", "requests"]},
              {"label": "//envs:ml", "packages": ["scikit-learn", "scipy"]},
              {"label": "libraries", "packages": ["tomli"]}]
    return Lock(packages={}, spec={}, layers=layers)


def test_an_upgrade_goes_into_the_step_holding_its_package_replacing_its_own_requirement():
    steps = [("//envs:core", ["numpy>=2.0,<2.3", "requests"]), ("//envs:ml", ["scikit-learn>=1.5"]),
             ("libraries", ["tomli>=1.1"])]
    planned, first, names = plan_steps(_lock(), steps, ["numpy", "scipy<2"])
    assert first == 0 and names == {"numpy", "scipy"}
    assert planned[0] == ("//envs:core", ["requests", "numpy"])  # the bound on numpy is lifted
    assert planned[1] == ("//envs:ml", ["scikit-learn>=1.5", "scipy<2"])
    assert planned[2] == steps[2]
    assert steps[0][1] == ["numpy>=2.0,<2.3", "requests"]  # the environment's steps are not changed
    _, first, _ = plan_steps(_lock(), steps, ["Tomli"])
    assert first == 2  # core and ml keep their pins: their layers are the environment's own


def _outcome(status: str, failing: tuple[str, ...] = (), cached_from: str | None = None) -> SimpleNamespace:
    return SimpleNamespace(status=status, metadata={"failing": list(failing)}, message="tests failed",
                           cached_from=cached_from)


def test_the_comparison_names_regressions_not_libraries_that_failed_before():
    before = {"tomli": {"version": "1.2.3"}, "six": {"version": "1.16.0"}, "old": {"version": "1"}}
    now = {"tomli": {"version": "2.5.0"}, "six": {"version": "1.16.0"}, "new": {"version": "2"}}
    assert moved_packages(before, now) == {"new": (None, "2"), "old": ("1", None), "tomli": ("1.2.3", "2.5.0")}
    outcomes = {"e#test.a": _outcome("ran"), "c#test.a": _outcome("failed", ("t::test_x",)),
                "e#test.b": _outcome("failed"), "c#test.b": _outcome("failed"),
                "e#test.c": _outcome("cached"), "c#test.c": _outcome("cached", cached_from="e#test.c"),
                "c#image": _outcome("ran")}
    result = compare(before, now, {"//l/a:a": "e#test.a", "//l/b:b": "e#test.b", "//l/c:c": "e#test.c"},
                     {"//l/a:a": "c#test.a", "//l/b:b": "c#test.b", "//l/c:c": "c#test.c"}, outcomes,
                     ["c#image", "c#test.a", "c#test.b", "c#test.c"])
    assert result.regressions == ["//l/a:a"]  # b failed before too: not a regression
    assert result.libraries["//l/a:a"]["failing"] == ["t::test_x"]
    assert result.libraries["//l/c:c"]["reused_from"] == "e#test.c"
    assert result.broken == []
    text = render(result, "e", "c")
    assert "//l/a  pass -> fail  REGRESSED" in text and "tomli  1.2.3 -> 2.5.0" in text
    broken = compare(before, now, {}, {}, {"c#image": _outcome("failed")}, ["c#image"])
    assert broken.broken == ["c#image"] and not broken.regressions
    assert short("//libs/x:x") == "//libs/x" and short("//envs:tools") == "//envs:tools"


@pytest.mark.parametrize("body, line, message", [
    ('environment(\n    name = "x",\n    upgrade = ["numpy"],\n)\n', 3, "upgrade needs fork"),
    ('environment(name = "p")\nenvironment(\n    name = "x",\n    fork = ":p",\n    upgrade = ["numpy>>2"],\n)\n',
     5, "invalid requirement 'numpy>>2'"),
    ('py_layer(name = "core", requirements = [])\nenvironment(\n    name = "x",\n    fork = ":core",\n)\n',
     4, "does not provide ForkableInfo"),
    ('environment(name = "p")\nenvironment(\n    name = "x",\n    fork = ":p",\n)\n', 4,
     "the environment it forks, //envs:p, has no lock file envs/pylock.p.toml"),
])
def test_fork_and_upgrade_mistakes_are_spec_errors_at_their_line(ws, body, line, message):
    ws.write("envs/BUILD.envs", body)
    result = ws.gb("lock", "//envs:x")  # (before anything resolves)
    assert result.exit_code == 2, result.stderr
    assert message in result.stderr
    assert f"envs/BUILD.envs:{line}" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_forks_lock_is_stale_when_its_parents_lock_or_its_upgrades_change():
    from graphbuild.rules.python.lockfile import spec_changes

    base = {"python": "3.11", "platform": "p", "layers": [], "libraries": [], "test_runner": []}
    fork = {"of": "//envs:prod", "lock": "envs/pylock.prod.toml", "upgrade": ["numpy"], "parent_pins": "a"}
    assert spec_changes({**base, "fork": fork}, {**base, "fork": {**fork, "parent_pins": "b"}}, {}) == [
        "the lock of //envs:prod, which it forks, changed since"]
    assert spec_changes({**base, "fork": fork}, {**base, "fork": {**fork, "upgrade": ["numpy", "scipy"]}}, {}) == [
        "upgrade ['numpy'] -> ['numpy', 'scipy']"]
    assert spec_changes(base, {**base, "fork": fork}, {}) == ["fork (none) -> //envs:prod"]
