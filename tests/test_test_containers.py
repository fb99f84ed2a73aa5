"""The containers libraries' tests run in, end to end on the real Docker engine:

- tests import the installed wheel, never the sources next to them, and run with the
  library's own pytest configuration and conftest files;
- the summary counts what pytest counts;
- containers are labelled by run; a killed run's are removed by the next run, a live run's never;
- least privilege by default (non-root, no capabilities, no-new-privileges, memory and pids
  limits, no network, read-only root), probed from inside by a test library
  (tests/fixtures/container_probe); `resources` and `test_user` override it.
"""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from docker_env import BASE, PYPROJECT, link_base, nodes, ok

from graphbuild.rules.oci.container import (
    NODE_LABEL,
    OWNER_LABEL,
    RUN_LABEL,
    Resources,
    container_spec_for_tests,
    engine_options,
    is_dead,
    owner,
    parse_memory,
)

if TYPE_CHECKING:
    from conftest import TestWorkspace

PROBE = Path(__file__).parent / "fixtures" / "container_probe"


@pytest.fixture
def services(registry: str) -> None:
    """The engine, the registry and the base tarball (conftest's `registry` starts them)."""


def engine(test):
    """Needs the engine, the registry, the base tarball and the package index."""
    return pytest.mark.docker(pytest.mark.network(pytest.mark.usefixtures("services")(test)))


def environments(ws: TestWorkspace, *bodies: str) -> None:
    link_base(ws)
    text = BASE + 'py_layer(name = "core", requirements = ["six==1.16.0"])\n'
    for body in bodies:
        text += ('\nenvironment(\n    base = ":base",\n    layers = [":core"],\n'
                 f'    test_runner = ["pytest==8.3.4"],\n{body}\n)\n')
    ws.write("envs/BUILD.envs", text)


def library(ws: TestWorkspace, name: str, files: dict[str, str], *, pyproject: str | None = None,
            build: str | None = None) -> None:
    ws.write(f"libs/{name}/BUILD.envs", build or f'py_library(name = "{name}")\n')
    ws.write(f"libs/{name}/pyproject.toml", pyproject or PYPROJECT.format(name=name, deps=""))
    for path, text in files.items():
        ws.write(f"libs/{name}/{path}", text)


# 1. tests import what ships: a flat-layout library whose wheel misses a subpackage fails


@engine
def test_a_flat_layout_library_is_tested_as_installed_not_from_its_sources(ws):
    environments(ws, '    name = "a",\n    libraries = ["//libs/flatlib"],')
    # PYPROJECT packages only "flatlib": setuptools leaves flatlib.sub out of the wheel
    library(ws, "flatlib", {
        "flatlib/__init__.py": "",
        "flatlib/sub/__init__.py": "VALUE = 42\n",
        "tests/__init__.py": "",  # pytest then puts the library's root on sys.path (rootdir-based)
        "tests/test_flat.py": "import flatlib\nfrom flatlib.sub import VALUE\n\n\n"
                              "def test_installed_copy():\n"
                              "    assert flatlib.__file__.startswith('/opt/env/lib/python3.11/site-packages/')\n"
                              "    assert VALUE == 42\n",
    })
    ok(ws.gb("lock", "//envs:a"))
    result = ws.gb("test", "//envs:a", "--json")
    assert result.exit_code == 1, result.stderr
    test = nodes(result)["//envs:a#test.flatlib"]
    assert test["status"] == "failed"
    assert "No module named 'flatlib.sub'" in test["log_tail"]

    ws.write("libs/flatlib/pyproject.toml",
             PYPROJECT.format(name="flatlib", deps="").replace('["flatlib"]', '["flatlib", "flatlib.sub"]'))
    fixed = nodes(ok(ws.gb("test", "//envs:a", "--json")))["//envs:a#test.flatlib"]
    assert fixed["status"] == "ran"
    assert fixed["metadata"]["passed"] == 1


# 2. the library's own pytest configuration, conftest files and import mode; pytest's counts


CONFIGURED_PYPROJECT = PYPROJECT.format(name="configured", deps="") + """
[tool.pytest.ini_options]
python_files = ["check_*.py"]
addopts = "-m 'not slow'"
markers = ["slow: not run by default"]
"""

CONFIGURED_CHECK = """
import pytest
from helpers import double  # a module next to the tests: pytest's default (prepend) import mode

import configured


def test_double(greeting):
    assert double(greeting) == "hihi"


def test_installed():
    assert configured.__file__.startswith("/opt/env/")


@pytest.mark.skip(reason="skipped on purpose")
def test_skipped():
    raise AssertionError


@pytest.mark.slow
def test_deselected_by_the_librarys_addopts():
    raise AssertionError
"""


@engine
def test_the_librarys_pytest_configuration_and_conftest_are_honoured_and_skips_are_not_passes(ws):
    environments(ws, '    name = "a",\n    libraries = ["//libs/configured"],')
    library(ws, "configured", {
        "configured/__init__.py": "",
        "conftest.py": "import pytest\n\n\n@pytest.fixture\ndef greeting():\n    return 'hi'\n",
        "tests/helpers.py": "def double(text):\n    return text * 2\n",
        "tests/check_configured.py": CONFIGURED_CHECK,
    }, pyproject=CONFIGURED_PYPROJECT)
    ok(ws.gb("lock", "//envs:a"))
    result = ok(ws.gb("test", "//envs:a", "--json"))
    test = nodes(result)["//envs:a#test.configured"]
    assert test["status"] == "ran"
    meta = test["metadata"]
    assert (meta["passed"], meta["skipped"], meta["failures"], meta["errors"]) == (2, 1, 0, 0)
    assert test["summary"].startswith("2 passed, 1 skipped (in //envs:a)")


@engine
def test_tests_inside_the_package_the_wheel_installs_are_a_spec_error(ws):
    environments(ws, '    name = "a",\n    libraries = ["//libs/inside"],')
    library(ws, "inside", {"inside/__init__.py": "", "inside/tests/test_x.py": "def test_x():\n    pass\n"},
            build='py_library(name = "inside", tests = ["inside/tests"])\n')
    ok(ws.gb("lock", "//envs:a"))
    result = ws.gb("test", "//envs:a", "--json")
    assert result.exit_code == 2, result.stderr
    test = nodes(result)["//envs:a#test.inside"]
    assert "test path 'inside/tests' is inside 'inside', which the library's wheel installs" in test["message"]


# 3. containers of killed runs are removed by the next run; a live run's never


SLEEPER = "import time\n\n\ndef test_sleeps():\n    time.sleep(900)\n"


def _containers(client, node: str) -> list:
    return client.containers.list(all=True, filters={"label": f"{NODE_LABEL}={node}"})


def _wait_for_container(client, node: str, process) -> object:
    for _ in range(1200):
        found = [c for c in _containers(client, node) if c.status == "running"]
        if found:
            return found[0]
        if process.poll() is not None:
            raise AssertionError(f"graphbuild exited first: {process.communicate()}")
        time.sleep(0.5)
    raise AssertionError(f"no running container for {node}")


@engine
def test_a_killed_runs_test_container_is_removed_by_the_next_run_but_a_live_runs_is_not(ws):
    import docker

    client = docker.from_env()
    slow, quick = "//envs:slow#test.sleeper", "//envs:quick#test.quick"
    environments(ws, '    name = "slow",\n    libraries = ["//libs/sleeper"],\n    test_timeout = 1800,',
                 '    name = "quick",\n    libraries = ["//libs/quick"],')
    library(ws, "sleeper", {"sleeper/__init__.py": "", "tests/test_sleeper.py": SLEEPER})
    library(ws, "quick", {"quick/__init__.py": "", "tests/test_quick.py": "def test_quick():\n    pass\n"})
    ok(ws.gb("lock", "//envs/..."))
    process = ws.gb_process("test", "//envs:slow", start_new_session=True)
    try:
        leftover = _wait_for_container(client, slow, process)
        labels = leftover.labels
        assert labels[RUN_LABEL] and labels[OWNER_LABEL].split("/")[-2] == str(process.pid)
        assert leftover.name.startswith("graphbuild-envs_slow_test.sleeper-")

        # another run meanwhile leaves the live run's container alone
        ok(ws.gb("test", "//envs:quick"))
        leftover.reload()
        assert leftover.status == "running"
        assert process.poll() is None

        process.send_signal(signal.SIGKILL)
        process.communicate()
        leftover.reload()
        assert leftover.status == "running"  # SIGKILL gave graphbuild no chance to remove it

        # the next run that starts a container removes it first
        ws.write("libs/quick/tests/test_quick.py", "def test_quick():\n    assert True\n")
        result = nodes(ok(ws.gb("test", "//envs:quick", "--json")))
        assert result[quick]["status"] == "ran"
        assert client.containers.list(all=True, filters={"label": f"{RUN_LABEL}={labels[RUN_LABEL]}"}) == []
        assert _containers(client, slow) == [] and _containers(client, quick) == []
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
        for container in _containers(client, slow) + _containers(client, quick):
            container.remove(force=True)


def test_only_containers_of_runs_known_to_be_over_are_dead():
    me = owner()
    host, pid, start = me.rsplit("/", 2)
    gone = f"{host}/999999999/1"
    assert not is_dead({RUN_LABEL: "r1", OWNER_LABEL: gone}, None, "r1")  # my own run
    assert is_dead({RUN_LABEL: "r0", OWNER_LABEL: gone}, None, "r1")
    assert not is_dead({RUN_LABEL: "r0", OWNER_LABEL: me}, None, "r1")  # a live process of this host
    assert not is_dead({RUN_LABEL: "r0", OWNER_LABEL: f"{host}/{pid}/{int(start) + 1}"}, lambda r: True, "r1")
    assert is_dead({RUN_LABEL: "r0", OWNER_LABEL: f"{host}/{pid}/{int(start) + 1}"}, None, "r1")  # pid reused
    other_host = f"elsewhere/abcd/{pid}/{start}"
    assert not is_dead({RUN_LABEL: "r0", OWNER_LABEL: other_host}, None, "r1")  # cannot tell: kept
    assert is_dead({RUN_LABEL: "r0", OWNER_LABEL: other_host}, lambda r: False, "r1")  # the registry knows
    assert not is_dead({RUN_LABEL: "r0", OWNER_LABEL: me}, lambda r: False, "r1")  # alive beats the registry

    def broken(run: str) -> bool:
        raise OSError("no registry")

    assert not is_dead({RUN_LABEL: "r0"}, broken, "r1")
    assert not is_dead({}, None, "r1")


# 4. least privilege by default, probed from inside; resources and test_user override it


def _probe_env(uid: int, capeff: str, memory: int, pids: int, exceed: bool = False, cpus: str = "") -> str:
    env = {"PROBE_UID": str(uid), "PROBE_CAPEFF": capeff, "PROBE_MEMORY": str(memory), "PROBE_PIDS": str(pids)}
    if exceed:
        env["PROBE_EXCEED"] = "1"
    if cpus:
        env["PROBE_CPUS"] = cpus
    return "    env = {" + ", ".join(f'"{k}": "{v}"' for k, v in env.items()) + "},"


NO_CAPS = "0000000000000000"
DOCKER_DEFAULT_CAPS = "00000000a80425fb"  # chown, dac_override, fowner, fsetid, kill, setgid, setuid,
# setpcap, net_bind_service, net_raw, sys_chroot, mknod, audit_write, setfcap


@engine
def test_test_containers_are_least_privileged_by_default_and_the_probe_gets_the_documented_answers(ws):
    lib = '    libraries = ["//libs/container_probe"],\n'
    tight = '    resources = {"memory": "256m", "pids": 64, "cpus": 0.5},\n'
    environments(
        ws,
        '    name = "default",\n' + lib + _probe_env(65534, NO_CAPS, 4 << 30, 512),
        '    name = "tight",\n' + lib + tight + _probe_env(65534, NO_CAPS, 256 << 20, 64, True, "0.5"),
        '    name = "rooted",\n' + lib + '    test_user = "root",\n' + _probe_env(0, DOCKER_DEFAULT_CAPS, 4 << 30, 512),
        # the same as tight but for one more process allowed: not the same test
        '    name = "tight2",\n' + lib + tight.replace("64", "65") + _probe_env(65534, NO_CAPS, 256 << 20, 64,
                                                                                 True, "0.5"),
    )
    shutil.copytree(PROBE, ws.root / "libs" / "container_probe")
    ok(ws.gb("lock", "//envs/..."))
    result = ws.gb("test", "//envs:default", "//envs:tight", "//envs:rooted", "--json")
    found = nodes(result)
    tests = {env: found[f"//envs:{env}#test.container_probe"] for env in ("default", "tight", "rooted")}
    assert result.exit_code == 0, {env: (t["status"], t["message"], t.get("log_tail")) for env, t in tests.items()}
    assert {env: (t["status"], t["metadata"]["passed"], t["metadata"]["skipped"]) for env, t in tests.items()} == {
        "default": ("ran", 6, 2), "tight": ("ran", 8, 0), "rooted": ("ran", 6, 2)}

    other = ws.gb("test", "//envs:tight2", "--json")
    assert other.exit_code == 1
    node = nodes(other)["//envs:tight2#test.container_probe"]
    assert (node["status"], node["detail"]) == ("failed", None)
    assert [name.rsplit("::", 1)[-1] for name in node["metadata"]["failing"]] == ["test_limits"]


BAD_RESOURCES = [
    ('resources = {"memory": "lots"}', "resources.memory", "memory must be a size such as"),
    ('resources = {"memory": "1m"}', "resources.memory", "at least 6m"),
    ('resources = {"cpu": 2}', "resources.cpu", "Extra inputs are not permitted"),
    ('resources = {"cpus": 0}', "resources.cpus", "greater than 0"),
    ('resources = {"pids": 0}', "resources.pids", "greater than or equal to 1"),
    ('resources = {"pids": "many"}', "resources.pids", "valid integer"),
    ('test_user = "root; rm -rf /"', "test_user", "expected root, UID, UID:GID or a user name"),
]


@pytest.mark.parametrize(("attr", "path", "message"), BAD_RESOURCES)
def test_invalid_resources_and_test_users_are_spec_errors_at_their_line(ws, attr, path, message):
    ws.write("envs/BUILD.envs", f'py_layer(name = "core", requirements = ["six==1.16.0"])\n\n'
                                f'environment(\n    name = "a",\n    layers = [":core"],\n    {attr},\n)\n')
    result = ws.gb("build", "//envs:a")
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: envs/BUILD.envs:6: "), result.stderr
    assert f"{path}: " in result.stderr and message in result.stderr


def test_resources_parse_sizes_and_map_to_engine_options():
    assert [parse_memory(v) for v in ("4g", "4096m", "4GiB", "4 GB", 4 << 30)] == [4 << 30] * 5
    assert parse_memory("1.5g") == 3 << 29
    assert Resources().model_dump() == {"cpus": None, "memory": 4 << 30, "pids": 512}
    assert Resources(memory="512m", cpus=1.5).memory == 512 << 20
    assert Resources(memory=None, pids=None).model_dump() == {"cpus": None, "memory": None, "pids": None}
    spec = container_spec_for_tests(Resources(cpus=1.5), "65534:65534")
    options = engine_options(spec)
    assert options["user"] == "65534:65534" and options["cap_drop"] == ["ALL"]
    assert options["security_opt"] == ["no-new-privileges"]
    assert options["network_mode"] == "none" and options["read_only"] is True
    assert (options["mem_limit"], options["memswap_limit"], options["pids_limit"]) == (4 << 30, 4 << 30, 512)
    assert options["nano_cpus"] == 1_500_000_000
    root = engine_options(container_spec_for_tests(Resources(memory=None, pids=None), "root"))
    assert root["user"] == "0:0" and "cap_drop" not in root
    assert "mem_limit" not in root and "pids_limit" not in root and "nano_cpus" not in root


def _wheel(path: Path, names: list[str]) -> Path:
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for name in names:
            archive.writestr(name, "")
    return path


def test_the_staged_tree_loses_exactly_what_the_wheel_installs(tmp_path):
    from graphbuild.api import ActionFailed
    from graphbuild.rules.python.image_tests import hide_shipped_code, shipped_names

    wheel = _wheel(tmp_path / "w.whl", [
        "mypkg/__init__.py", "mypkg/sub/mod.py", "helper.py", "fast.cpython-311-x86_64-linux-gnu.so",
        "tests/__init__.py", "extra.pth", "my_pkg-1.0.dist-info/RECORD", "my_pkg-1.0.data/purelib/other/__init__.py",
        "my_pkg-1.0.data/scripts/tool"])
    assert shipped_names(wheel) == {"mypkg", "helper.py", "fast.cpython-311-x86_64-linux-gnu.so", "tests",
                                    "my_pkg", "other"}
    tree = tmp_path / "tree"
    for rel in ("mypkg/__init__.py", "src/other/__init__.py", "src/mypkg/x.py", "helper.py", "My_Pkg/__init__.py",
                "tests/test_a.py", "conftest.py", "pyproject.toml", "docs/index.md", "src/fast.c"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text("")
    hidden = hide_shipped_code(tree, wheel, ["tests"])
    assert hidden == ["My_Pkg", "helper.py", "mypkg", "src/mypkg", "src/other"]
    left = sorted(p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file())
    assert left == ["conftest.py", "docs/index.md", "pyproject.toml", "src/fast.c", "tests/test_a.py"]

    (tree / "mypkg/tests").mkdir(parents=True)
    with pytest.raises(ActionFailed) as err:
        hide_shipped_code(tree, wheel, ["./mypkg/tests/"])
    assert err.value.bad_input and "'./mypkg/tests/' is inside 'mypkg'" in err.value.message
