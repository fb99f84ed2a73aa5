"""The CI's secrets never reach what graphbuild starts: a build backend (code from whoever wrote
the library), uv, a genrule's command, a library's tests in the image."""

from __future__ import annotations

import os

import pytest

from graphbuild.execution.processes import run_process
from graphbuild.secrets import without_secrets

#: what a GitLab job has, and graphbuild's own signing key
SECRETS = {
    "CI_JOB_TOKEN": "glcbt-job-token-value",
    "CI_REGISTRY_PASSWORD": "registry-password-value",
    "CI_REPOSITORY_URL": "https://gitlab-ci-token:glcbt-job-token-value@gitlab.invalid/team/repo.git",
    "CI_DEPLOY_PASSWORD": "deploy-password-value",
    "DOCKER_AUTH_CONFIG": '{"auths": {"registry.invalid": {"auth": "dXNlcjpzZWNyZXQ="}}}',
    "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY": "MC4CAQAwBQYDK2VwBCIEINotARealKeyButSecretAnyway",
    "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE": "/run/secrets/ci-signing.pem",
    "MY_ID_TOKEN": "an-id-token",  # named by GRAPHBUILD_SECRET_ENV
}
VISIBLE = {"GB_TEST_VISIBLE": "yes", "CI_REGISTRY_USER": "gitlab-ci-token", "CI_PROJECT_PATH": "team/repo",
           "GRAPHBUILD_SECRET_ENV": "MY_ID_TOKEN, OTHER"}

#: an in-tree PEP 517 backend that fails the build if it can read a secret, or cannot read an
#: ordinary variable (so the check cannot pass by seeing no environment at all)
BACKEND = '''
import os
import zipfile

SECRETS = {secrets!r}


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    leaked = sorted(name for name in os.environ if name in SECRETS)
    leaked += sorted(name for name, value in os.environ.items() if value in SECRETS.values() and name not in SECRETS)
    if leaked:
        raise RuntimeError("the build backend can read " + ", ".join(leaked))
    if os.environ.get("GB_TEST_VISIBLE") != "yes":
        raise RuntimeError("the build backend cannot read GB_TEST_VISIBLE")
    name = "leaky-0.1.0-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, name), "w") as wheel:
        wheel.writestr("leaky/__init__.py", "")
        wheel.writestr("leaky-0.1.0.dist-info/METADATA", "Metadata-Version: 2.1\\nName: leaky\\nVersion: 0.1.0\\n")
        wheel.writestr("leaky-0.1.0.dist-info/WHEEL",
                       "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n")
        wheel.writestr("leaky-0.1.0.dist-info/RECORD", "")
    return name
'''

PYPROJECT = """
[project]
name = "leaky"
version = "0.1.0"
requires-python = ">=3.8"

[build-system]
requires = []
build-backend = "backend"
backend-path = ["."]
"""


@pytest.fixture
def ci_environment(monkeypatch):
    for name, value in {**SECRETS, **VISIBLE}.items():
        monkeypatch.setenv(name, value)


def test_the_secrets_are_left_out_of_a_childs_environment_and_nothing_else(ci_environment):
    env = without_secrets(os.environ)
    assert not set(SECRETS) & set(env)
    assert {name: env[name] for name in VISIBLE} == VISIBLE
    assert env["PATH"] == os.environ["PATH"]
    # whatever environment a caller builds, and graphbuild's own (env=None)
    for given in (None, dict(os.environ), {"PATH": os.environ["PATH"], **SECRETS}):
        shown = run_process(["env"], env=given).stdout
        for name, value in SECRETS.items():
            assert f"{name}=" not in shown and value not in shown


def test_a_build_backend_cannot_read_the_ci_secrets(ws, ci_environment):
    ws.write("lib/BUILD.envs", 'py_library(name = "leaky")\n')
    ws.write("lib/pyproject.toml", PYPROJECT)
    (ws.root / "lib/backend.py").write_text(BACKEND.format(secrets=SECRETS))
    ws.write("lib/leaky/__init__.py", "")
    result = ws.gb("build", "//lib:leaky", "--json")
    assert result.exit_code == 0, result.stderr + result.stdout
    built = {n["id"]: n for n in result.json["nodes"]}
    assert [n["status"] for n in built.values()] == ["ran"], built
    assert "leaky-0.1.0-py3-none-any.whl" in str(built), built

    # the same backend with a secret it can read fails the build: the check above can fail
    (ws.root / "lib/backend.py").write_text(BACKEND.format(secrets={**SECRETS, "GB_TEST_VISIBLE": "yes"}))
    leaked = ws.gb("build", "//lib:leaky")
    assert leaked.exit_code == 1, leaked.stderr
    assert "the build backend can read GB_TEST_VISIBLE" in leaked.stderr, leaked.stderr


def test_a_genrule_command_cannot_read_the_ci_secrets(ws, ci_environment):
    ws.write("pkg/BUILD.envs", 'genrule(name = "env", outs = ["env.txt"], cmd = "env > $OUT")\n')
    result = ws.gb("build", "//pkg:env")
    assert result.exit_code == 0, result.stderr
    shown = (ws.root / "graphbuild-out/pkg/env.txt").read_text()
    for name, value in SECRETS.items():
        assert f"{name}=" not in shown and value not in shown
