"""Registries with Docker's token authentication, end to end: a real Distribution registry with
`auth: token` and the token service it trusts (`scripts/services.sh token-registry`, started
once per machine and reused; scripts/token_server.py), credentials from temp DOCKER_CONFIG
directories, DOCKER_AUTH_CONFIG, GitLab's variables and a credential helper on PATH.

The token service knows two users (`pusher`: pull and push; `reader`: pull only) whose secrets
it wrote at first start into the file it exports; every repository is private. Every test
uses repositories of its own (a uuid in the name).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import stat
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import Result
from conftest import TestWorkspace as Workspace  # (not collected as a test class)
from docker_env import BASE, REPO_ROOT, link_base, parse_exports

from graphbuild.cache import registry as registry_module
from graphbuild.cache.registry import Registry, RegistryError, pull_scope, push_scope
from graphbuild.cache.signing import SigningKey

pytestmark = pytest.mark.docker

CREDENTIAL_VARIABLES = ("DOCKER_CONFIG", "DOCKER_AUTH_CONFIG", "CI_REGISTRY", "CI_REGISTRY_USER",
                        "CI_REGISTRY_PASSWORD", "CI_JOB_TOKEN")


class TokenRegistry:
    def __init__(self, host: str, users: dict[str, dict[str, Any]]):
        self.host = host
        self.users = users

    def password(self, user: str) -> str:
        return self.users[user]["password"]

    def auth(self, user: str, password: str | None = None) -> str:
        return base64.b64encode(f"{user}:{password or self.password(user)}".encode()).decode()

    def config(self, user: str, password: str | None = None) -> dict[str, Any]:
        return {"auths": {self.host: {"auth": self.auth(user, password)}}}

    def secrets(self) -> list[bytes]:
        return [entry[field].encode() for entry in self.users.values() for field in ("password", "refresh_token")]


@pytest.fixture(scope="session")
def token_registry() -> TokenRegistry:
    """`scripts/services.sh token-registry`: under CI a failure fails the test, elsewhere skips it."""
    try:
        proc = subprocess.run(["bash", str(REPO_ROOT / "scripts" / "services.sh"), "token-registry"],
                              capture_output=True, text=True, timeout=900)
        exports = parse_exports(proc.stdout) if proc.returncode == 0 else {}
        if not exports.get("GRAPHBUILD_TOKEN_REGISTRY"):
            raise RuntimeError(f"exit {proc.returncode}: {proc.stderr[-2000:]}")
        users = json.loads(Path(exports["GRAPHBUILD_TOKEN_REGISTRY_USERS"]).read_text())["users"]
    except (OSError, RuntimeError, subprocess.TimeoutExpired, ValueError, KeyError) as err:
        if os.environ.get("CI"):
            pytest.fail(f"the token-auth registry is required under CI: {err}")
        pytest.skip(f"no token-auth registry: {err}")
    return TokenRegistry(exports["GRAPHBUILD_TOKEN_REGISTRY"], users)


@pytest.fixture
def no_credentials(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty DOCKER_CONFIG and no credential variable: nothing from the machine is used."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "no-docker-config"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    return empty


@pytest.fixture
def login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_credentials, token_registry):
    """login(document) writes a temp DOCKER_CONFIG holding `document` and points DOCKER_CONFIG at it."""

    def write(document: dict[str, Any]) -> Path:
        directory = tmp_path / f"docker-config-{uuid.uuid4().hex[:6]}"
        directory.mkdir()
        (directory / "config.json").write_text(json.dumps(document))
        monkeypatch.setenv("DOCKER_CONFIG", str(directory))
        return directory / "config.json"

    return write


def repo(prefix: str = "gbtok") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def blob(tmp_path: Path, text: str) -> tuple[str, Path]:
    path = tmp_path / f"blob-{uuid.uuid4().hex[:6]}"
    path.write_text(text)
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest(), path


# -- the registry client's token flow ----------------------------------------------------------------


def test_a_token_is_fetched_per_scope_and_reused_and_a_mount_asks_for_pull_on_its_source(
        tmp_path, token_registry, login):
    login(token_registry.config("pusher"))
    a, b = repo(), repo()
    digest, path = blob(tmp_path, "layer bytes\n")
    client = Registry(token_registry.host)
    client.ping()
    assert client.has_blob(a, digest) is False
    client.upload_blob(a, digest, path)
    assert client.has_blob(a, digest) is True  # the push token serves the pull: no new token
    assert client.mount_blob(b, digest, a) is True
    assert client.has_blob(b, digest) is True
    assert b"".join(client.blob_chunks(b, digest)) == b"layer bytes\n"
    assert client.token_fetches == [
        (),  # /v2/
        (pull_scope(a),),
        (push_scope(a),),
        tuple(sorted((pull_scope(a), push_scope(b)))),  # the mount: push to b, pull from a
    ]


def test_an_expired_token_is_renewed_and_a_refused_one_is_fetched_again_once(
        tmp_path, token_registry, login, monkeypatch):
    login(token_registry.config("pusher"))
    a = repo()
    digest, path = blob(tmp_path, "renew me\n")
    client = Registry(token_registry.host)
    client.upload_blob(a, digest, path)
    fetched = len(client.token_fetches)
    assert client.has_blob(a, digest) and len(client.token_fetches) == fetched

    now = registry_module.time.monotonic()
    monkeypatch.setattr(registry_module.time, "monotonic", lambda: now + 3600)  # past every token's lifetime
    assert client.has_blob(a, digest)
    assert client.token_fetches[fetched:] == [(pull_scope(a),)]

    # a token the registry no longer accepts (revoked, or signed by a key it dropped): one 401, one new token
    client._tokens = {scopes: ("Bearer not.a.token", expiry) for scopes, (_, expiry) in client._tokens.items()}
    assert client.has_blob(a, digest)
    assert client.token_fetches[fetched + 1:] == [(pull_scope(a),)]


def test_without_credentials_the_error_names_the_registry_and_how_to_log_in(tmp_path, token_registry,
                                                                          no_credentials):
    digest, path = blob(tmp_path, "anonymous\n")
    client = Registry(token_registry.host)
    client.ping()  # the base endpoint takes an anonymous token
    with pytest.raises(RegistryError) as caught:
        client.upload_blob(repo(), digest, path)
    text = str(caught.value)
    assert text.startswith(f"registry {token_registry.host} requires credentials to push to gbtok-")
    assert "none were found (401: authentication required)" in text
    assert f"`docker login {token_registry.host}`" in text and str(no_credentials / "config.json") in text


def test_a_wrong_password_is_refused_by_the_token_service_and_never_printed(tmp_path, token_registry, login):
    path = login(token_registry.config("pusher", "not-the-password"))
    client = Registry(token_registry.host)
    with pytest.raises(RegistryError) as caught:
        client.ping()
    text = str(caught.value)
    assert text.startswith(f"the token service of registry {token_registry.host} refused user 'pusher' from {path} "
                           "(401: invalid username or password)")
    assert "not-the-password" not in text and token_registry.password("pusher") not in text


def test_a_user_without_push_rights_is_told_so(tmp_path, token_registry, login):
    path = login(token_registry.config("reader"))
    client = Registry(token_registry.host)
    digest, blob_path = blob(tmp_path, "read only\n")
    target = repo()
    with pytest.raises(RegistryError) as caught:
        client.upload_blob(target, digest, blob_path)
    assert str(caught.value).startswith(f"registry {token_registry.host} refused to let user 'reader' from {path} "
                                        f"push to {target} (401: authentication required)")
    assert client.has_blob(target, digest) is False  # reading is allowed


def test_an_identity_token_is_exchanged_with_the_oauth2_refresh_grant(tmp_path, token_registry, login):
    login({"auths": {token_registry.host: {"identitytoken": token_registry.users["pusher"]["refresh_token"]}}})
    digest, path = blob(tmp_path, "oauth\n")
    target = repo()
    client = Registry(token_registry.host)
    client.upload_blob(target, digest, path)
    assert client.has_blob(target, digest)
    login({"auths": {token_registry.host: {"identitytoken": "revoked-refresh-token"}}})
    refused = r"refused an identity token from .*config\.json \(401: invalid credentials\)"
    with pytest.raises(RegistryError, match=refused):
        Registry(token_registry.host).ping()


def test_a_credential_helper_on_path_serves_the_registry(tmp_path, token_registry, login, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked"
    helper = bin_dir / "docker-credential-gbtest"
    answer = json.dumps({"ServerURL": token_registry.host, "Username": "pusher",
                         "Secret": token_registry.password("pusher")})
    helper.write_text(f"#!/bin/sh\n[ \"$1\" = get ] || exit 3\ncat >> {asked}\necho >> {asked}\n"
                      f"printf '%s' '{answer}'\n")
    helper.chmod(helper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    login({"credHelpers": {token_registry.host: "gbtest"}})
    digest, path = blob(tmp_path, "helper\n")
    client = Registry(token_registry.host)
    client.upload_blob(repo(), digest, path)
    assert asked.read_text().split() == [token_registry.host]  # asked once per client


# -- graphbuild end to end: push, base images, the remote cache ------------------------------------------

APP = BASE + """
py_layer(name = "core", requirements = ["six==1.16.0"])
environment(name = "app", base = ":base", layers = [":core"], push = "{destination}")
"""


def nodes(result: Result) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in result.json["nodes"]}


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def no_secret_in(result: Result, token_registry: TokenRegistry, *roots: Path) -> None:
    """No secret of the token service in the output, nor in any file graphbuild wrote."""
    for secret in token_registry.secrets():
        assert secret.decode() not in result.stdout + result.stderr
    for root in roots:
        for directory, _, files in os.walk(root):  # (a run's trash may still be going away: skip what goes)
            for name in files:
                path = Path(directory, name)
                try:
                    if path.is_symlink() or path.stat().st_size > 50_000_000:
                        continue
                    data = path.read_bytes()
                except FileNotFoundError:
                    continue
                assert not any(secret in data for secret in token_registry.secrets()), path


@pytest.fixture(scope="module")
def app(tmp_path_factory, registry, token_registry) -> tuple[Workspace, str]:
    """A locked workspace whose environment pushes to `REPO/app:v1` (no registry named: the
    configured one). (conftest's `registry` starts the engine and sets the base tarball's variable.)"""
    tmp = tmp_path_factory.mktemp("token-app")
    ws = Workspace(tmp / "ws", tmp / "cache")
    link_base(ws)
    name = repo("gbtokapp")
    ws.write("envs/BUILD.envs", APP.format(destination=f"{name}/app:v1"))
    ok(ws.gb("lock", "//envs:app"))
    return ws, name


@pytest.mark.network
def test_graphbuild_pushes_with_credentials_from_each_source_and_fails_clearly_without(
        app, token_registry, login, no_credentials, monkeypatch, tmp_path):
    ws, name = app
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", token_registry.host)

    # no credentials: everything builds, the push fails naming the registry and how to log in
    refused = ws.gb("run", "//envs:app", "--json")
    assert refused.exit_code == 1, refused.stderr
    push = nodes(refused)["//envs:app#push"]
    assert push["status"] == "failed"
    assert push["message"].startswith(f"push to {token_registry.host}/{name}/app:v1 failed: registry "
                                      f"{token_registry.host} requires credentials to push to {name}/app and none "
                                      "were found")
    assert f"`docker login {token_registry.host}`" in push["message"]
    assert {n["status"] for nid, n in nodes(refused).items() if nid != "//envs:app#push"} <= {"ran", "cached"}
    text = ws.gb("run", "//envs:app")
    assert text.exit_code == 1 and "Traceback" not in text.stderr
    assert f"pushing to {token_registry.host}/{name}/app:v1: the configured registry (GRAPHBUILD_REGISTRY)" in (
        text.stderr)
    assert Registry(token_registry.host).token_fetches == []  # (a fresh client: nothing shared between runs)

    # a temp DOCKER_CONFIG (docker login's file)
    login(token_registry.config("pusher"))
    pushed = nodes(ok(ws.gb("run", "//envs:app", "--json")))["//envs:app#push"]
    assert pushed["status"] == "ran"
    assert pushed["metadata"]["reference"] == f"{token_registry.host}/{name}/app:v1"
    image_digest = pushed["metadata"]["digest"]
    reader = Registry(token_registry.host)
    # the tag names the release index over the image (its annotations say what was released)
    assert reader.head_manifest(f"{name}/app", "v1") == pushed["metadata"]["tag_digest"]
    assert reader.head_manifest(f"{name}/app", image_digest) == image_digest

    # DOCKER_AUTH_CONFIG (a GitLab runner's variable), with nothing in the Docker config
    monkeypatch.setenv("DOCKER_CONFIG", str(no_credentials))
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps(token_registry.config("pusher")))
    again = nodes(ok(ws.gb("run", "//envs:app", "--json")))["//envs:app#push"]
    assert (again["status"], again["metadata"]["digest"]) == ("ran", image_digest)
    assert again["metadata"]["uploaded_bytes"] == 0  # every blob is there already

    # GitLab's CI_REGISTRY_USER / CI_REGISTRY_PASSWORD for CI_REGISTRY
    monkeypatch.delenv("DOCKER_AUTH_CONFIG")
    monkeypatch.setenv("CI_REGISTRY", token_registry.host)
    monkeypatch.setenv("CI_REGISTRY_USER", "pusher")
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", token_registry.password("pusher"))
    result = ok(ws.gb("run", "//envs:app", "--json"))
    assert nodes(result)["//envs:app#push"]["status"] == "ran"
    no_secret_in(result, token_registry, ws.root, ws.cache)


@pytest.mark.network
def test_a_push_destination_with_a_digest_is_refused_at_its_line(app, token_registry, tmp_path):
    ws, name = app
    build = ws.root / "envs/BUILD.envs"
    text = build.read_text()
    try:
        build.write_text(text.replace(f'push = "{name}/app:v1"', f'push = "{name}/app@sha256:{"0" * 64}"'))
        result = ws.gb("run", "//envs:app")
    finally:
        build.write_text(text)
    assert result.exit_code == 2, result.stderr
    # refused while analysing, before anything is built
    assert f"push: push destination '{name}/app@sha256:{'0' * 64}' has a digest" in result.stderr
    assert f"hint: write '{name}/app'" in result.stderr
    assert "envs/BUILD.envs:4" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.network
def test_a_base_image_in_the_token_registry_is_pinned_by_lock_and_pulled(
        app, token_registry, login, no_credentials, monkeypatch, tmp_path):
    ws, name = app
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", token_registry.host)
    login(token_registry.config("pusher"))
    pushed = nodes(ok(ws.gb("run", "//envs:app", "--json")))["//envs:app#push"]["metadata"]["digest"]

    second = Workspace(tmp_path / "second", tmp_path / "cache2")
    second.write("envs/BUILD.envs", f"""
base_image(name = "up", ref = "{token_registry.host}/{name}/app:v1")
py_layer(name = "more", requirements = ["attrs==23.2.0"])
environment(name = "b", base = ":up", layers = [":more"], libraries = [])
""")
    # without credentials the lock fails, naming the registry and how to log in
    monkeypatch.setenv("DOCKER_CONFIG", str(no_credentials))
    refused = second.gb("lock", "//envs:up")
    assert refused.exit_code == 1 and "Traceback" not in refused.stderr
    assert f"cannot pin {token_registry.host}/{name}/app:v1: registry {token_registry.host} requires credentials " \
           f"to pull from {name}/app" in refused.stderr
    assert not (second.root / "envs/baselock.up.json").exists()

    login(token_registry.config("reader"))  # pulling needs no push right
    ok(second.gb("lock", "//envs/..."))
    pinned = json.loads((second.root / "envs/baselock.up.json").read_text())
    assert pinned["digest"] == pushed
    built = nodes(ok(second.gb("build", "//envs:b", "--json")))
    assert built["//envs:up#pull"]["status"] == "ran"
    client = Registry(token_registry.host)
    base_layers = json.loads(client.get_manifest(f"{name}/app", pushed)[0])["layers"]
    assert [layer["digest"] for layer in pinned["layers"]] == [layer["digest"] for layer in base_layers]
    no_secret_in(ok(second.gb("build", "//envs:b")), token_registry, second.root, second.cache)


GENRULES = """
genrule(name = "a", srcs = ["a.txt"], outs = ["a.out"], cmd = "cat $SRCS > $OUT")
genrule(name = "b", srcs = [":a"], outs = ["b.out"], cmd = "tr a-z A-Z < $SRCS > $OUT")
"""


def test_the_remote_cache_in_the_token_registry(tmp_path, token_registry, login, no_credentials, monkeypatch):
    key = SigningKey.generate()
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(key.pem())
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE", str(key_file))
    remote = f"oci://{token_registry.host}/{repo('gbtokcache')}"
    first = Workspace(tmp_path / "ws1", tmp_path / "cache1")
    first.write("graphbuild.toml", f'[cache]\ntrusted_keys = ["{key.public.line()}"]\n')
    first.write("pkg/BUILD.envs", GENRULES)
    first.write("pkg/a.txt", "alpha\n")

    login(token_registry.config("pusher"))
    wrote = ok(first.gb("build", "//pkg:b", "--json", "--remote-cache", remote))
    assert wrote.ran() == {"//pkg:a#gen", "//pkg:b#gen"}
    assert not [line for line in wrote.stderr.splitlines() if line.startswith("warning")]

    second = Workspace(tmp_path / "ws2", tmp_path / "cache2")
    shutil.copytree(first.root, second.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("graphbuild-out"))
    login(token_registry.config("reader"))
    read = ok(second.gb("build", "//pkg:b", "--json", "--remote-cache", remote, "--remote-cache-readonly"))
    assert {nid: (n["status"], n["cache"]) for nid, n in nodes(read).items()} == {
        "//pkg:a#gen": ("cached", "remote"), "//pkg:b#gen": ("cached", "remote")}
    assert (second.root / "graphbuild-out/pkg/b.out").read_text() == "ALPHA\n"
    no_secret_in(read, token_registry, second.root, second.cache)

    # without credentials: a warning naming the registry and how to log in, and a local build
    monkeypatch.setenv("DOCKER_CONFIG", str(no_credentials))
    third = Workspace(tmp_path / "ws3", tmp_path / "cache3")
    shutil.copytree(first.root, third.root, dirs_exist_ok=True, ignore=shutil.ignore_patterns("graphbuild-out"))
    alone = third.gb("build", "//pkg:b", "--json", "--remote-cache", remote, "--remote-cache-readonly")
    assert alone.exit_code == 0, alone.stderr
    assert alone.ran() == {"//pkg:a#gen", "//pkg:b#gen"}
    warnings = [line for line in alone.stderr.splitlines() if line.startswith("warning")]
    assert len(warnings) == 1, warnings
    assert f"requires credentials to pull from {remote.split('/', 3)[3]}" in warnings[0]
    assert f"`docker login {token_registry.host}`" in warnings[0]
    required = third.gb("build", "//pkg:b", "--remote-cache", remote, "--remote-cache-required")
    assert required.exit_code == 2 and "requires credentials" in required.stderr
