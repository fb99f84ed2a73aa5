"""Registry credentials: the Docker config (auths, credHelpers, credsStore) through the docker
SDK's resolution, DOCKER_CONFIG, DOCKER_AUTH_CONFIG, GitLab's CI variables; and the pure parts
of the registry client's authentication (challenges, scopes, refusals). No registry needed:
temp config directories and a fake credential helper on PATH."""

from __future__ import annotations

import base64
import json
import os
import stat
import threading
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from graphbuild.cache import registry_auth as auth
from graphbuild.cache.registry import Registry, RegistryError, merge_scopes, parse_challenge
from graphbuild.cache.registry_auth import Credentials, CredentialsError

HOST = "registry.example:5000"
SECRET = "s3cret-Pa55"
VARIABLES = ("DOCKER_CONFIG", "DOCKER_AUTH_CONFIG", "CI_REGISTRY", "CI_REGISTRY_USER", "CI_REGISTRY_PASSWORD",
             "CI_JOB_TOKEN")


def b64(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture(autouse=True)
def clean_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No credential variable from the machine, and a HOME of our own (with no Docker config)."""
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, document: dict | str, name: str = "dc") -> Path:
    """A DOCKER_CONFIG directory holding `document` as config.json."""
    directory = tmp_path / name
    directory.mkdir()
    path = directory / "config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    monkeypatch.setenv("DOCKER_CONFIG", str(directory))
    return path


HELPER = """#!/bin/sh
# docker-credential-{name}: answers `get` from {table}, records what it was asked in {asked}
[ "$1" = get ] || exit 3
read -r server
printf '%s\\n' "$server" >> {asked}
python3 - "$server" <<'EOF'
import json, sys
table = json.load(open({table!r}))
entry = table.get(sys.argv[1])
if entry is None:
    print("credentials not found in native keychain")
    sys.exit(1)
if entry == "crash":
    print("the keychain is locked")
    sys.exit(1)
print(json.dumps({{"ServerURL": sys.argv[1], "Username": entry[0], "Secret": entry[1]}}))
EOF
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """make(name, table) puts docker-credential-NAME on PATH; returns the file listing what it was asked."""

    def make(name: str, table: dict[str, object]) -> Path:
        bin_dir = tmp_path / "bin"
        bin_dir.mkdir(exist_ok=True)
        asked = tmp_path / f"{name}.asked"
        asked.touch()
        (tmp_path / f"{name}.json").write_text(json.dumps(table))
        script = bin_dir / f"docker-credential-{name}"
        script.write_text(HELPER.format(name=name, table=str(tmp_path / f"{name}.json"), asked=asked))
        script.chmod(script.stat().st_mode | stat.S_IXUSR)
        if str(bin_dir) not in os.environ["PATH"].split(os.pathsep):
            monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        return asked

    return make


# -- the Docker config ----------------------------------------------------------------------------


def test_an_auths_entry_gives_the_user_and_password_and_names_its_file(tmp_path, monkeypatch):
    path = docker_config(tmp_path, monkeypatch, {"auths": {HOST: {"auth": b64("ci", SECRET)}}})
    found = auth.credentials(HOST)
    assert (found.username, found.password, found.identity_token) == ("ci", SECRET, "")
    assert found.source == str(path)
    assert found.describe() == f"user 'ci' from {path}"
    assert auth.credentials("other.example") is None


def test_auths_keys_written_as_urls_match_their_host(tmp_path, monkeypatch):
    docker_config(tmp_path, monkeypatch, {"auths": {f"https://{HOST}/v1/": {"auth": b64("ci", SECRET)}}})
    assert auth.credentials(HOST).username == "ci"


@pytest.mark.parametrize("key", ["https://index.docker.io/v1/", "docker.io", "index.docker.io"])
@pytest.mark.parametrize("asked", ["docker.io", "index.docker.io"])
def test_a_docker_hub_login_is_found_under_any_of_docker_hubs_names(tmp_path, monkeypatch, key, asked):
    docker_config(tmp_path, monkeypatch, {"auths": {key: {"auth": b64("hubuser", SECRET)}}})
    assert auth.credentials(asked).username == "hubuser"


def test_a_cred_helper_is_asked_for_its_registry_and_named_as_the_source(tmp_path, monkeypatch, helper):
    asked = helper("fake", {HOST: ["robot", SECRET], "https://index.docker.io/v1/": ["hub", "hubsecret"]})
    path = docker_config(tmp_path, monkeypatch, {"credHelpers": {HOST: "fake", "https://index.docker.io/v1/": "fake"},
                                                 "auths": {HOST: {"auth": b64("stale", "old")}}})
    found = auth.credentials(HOST)
    assert (found.username, found.password) == ("robot", SECRET)  # the helper wins over `auths`
    assert found.source == f"{path} (docker-credential-fake)"
    # Docker Hub is asked for by its index URL, as `docker login` stored it
    assert auth.credentials("docker.io").username == "hub"
    assert asked.read_text().splitlines() == [HOST, "https://index.docker.io/v1/"]


def test_a_creds_store_that_has_nothing_falls_back_to_auths(tmp_path, monkeypatch, helper):
    asked = helper("store", {"other.example": ["x", "y"]})
    docker_config(tmp_path, monkeypatch, {"credsStore": "store", "auths": {HOST: {"auth": b64("ci", SECRET)}}})
    assert auth.credentials(HOST).username == "ci"
    assert asked.read_text().splitlines() == [HOST]
    assert auth.credentials("nowhere.example") is None


def test_a_helper_answering_the_token_user_gives_an_identity_token(tmp_path, monkeypatch, helper):
    helper("fake", {HOST: ["<token>", "refresh-me"]})
    docker_config(tmp_path, monkeypatch, {"credsStore": "fake"})
    found = auth.credentials(HOST)
    assert (found.identity_token, found.password) == ("refresh-me", "")
    assert "refresh-me" not in repr(found) and "refresh-me" not in found.describe()


def test_an_identitytoken_entry_gives_an_identity_token(tmp_path, monkeypatch):
    docker_config(tmp_path, monkeypatch, {"auths": {HOST: {"identitytoken": "refresh-me"}}})
    assert auth.credentials(HOST).identity_token == "refresh-me"


def test_a_helper_missing_from_path_or_failing_is_a_clear_error_without_a_warning(tmp_path, monkeypatch, helper,
                                                                                   capsys):
    path = docker_config(tmp_path, monkeypatch, {"credHelpers": {HOST: "absent"}})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the SDK's warning about PATH must not escape
        with pytest.raises(CredentialsError) as caught:
            auth.credentials(HOST)
    assert str(caught.value).startswith(f"the credential helper docker-credential-absent named in {path} failed "
                                        f"for {HOST}: ")
    assert "not installed or not available in PATH" in str(caught.value)
    helper("broken", {HOST: "crash"})
    docker_config(tmp_path, monkeypatch, {"credHelpers": {HOST: "broken"}}, name="dc2")
    with pytest.raises(CredentialsError, match="the keychain is locked"):
        auth.credentials(HOST)
    assert capsys.readouterr().err == ""


def test_an_empty_auths_entry_is_no_credentials(tmp_path, monkeypatch):
    docker_config(tmp_path, monkeypatch, {"auths": {HOST: {}}})
    assert auth.credentials(HOST) is None


@pytest.mark.parametrize(("text", "says"), [
    ('{"auths": {', "is not valid JSON (line 1, column 12)"),
    ("[1, 2]", "is not a JSON object"),
    (json.dumps({"auths": {HOST: {"auth": "not base64!"}}}), f"the `auth` entry for {HOST} is not base64"),
    (json.dumps({"auths": {HOST: {"auth": base64.b64encode(b"nocolon").decode()}}}), "is not base64"),
    (json.dumps({"auths": {HOST: SECRET}}), f"Invalid configuration for registry {HOST}"),
])
def test_a_broken_config_file_is_an_error_naming_it_and_never_quoting_a_secret(tmp_path, monkeypatch, text, says):
    path = docker_config(tmp_path, monkeypatch, text)
    with pytest.raises(CredentialsError) as caught:
        auth.credentials(HOST)
    assert str(path) in str(caught.value) and says in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_set_docker_config_is_the_only_directory_read(tmp_path, monkeypatch, clean_environment):
    home_config = clean_environment / ".docker" / "config.json"
    home_config.parent.mkdir()
    home_config.write_text(json.dumps({"auths": {HOST: {"auth": b64("home", SECRET)}}}))
    assert auth.credentials(HOST).username == "home"  # unset: the home directory's, as Docker reads
    assert auth.docker_config_file() == home_config
    empty = tmp_path / "empty"
    empty.mkdir()
    monkeypatch.setenv("DOCKER_CONFIG", str(empty))
    assert auth.credentials(HOST) is None  # set: that directory only, even with no config in it
    assert auth.docker_config_file() == empty / "config.json"


# -- DOCKER_AUTH_CONFIG and GitLab's variables ------------------------------------------------------


def test_docker_auth_config_holds_a_whole_config_json(monkeypatch):
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps({"auths": {HOST: {"auth": b64("runner", SECRET)}}}))
    found = auth.credentials(HOST)
    assert (found.username, found.password, found.source) == ("runner", SECRET, "DOCKER_AUTH_CONFIG")


def test_docker_auth_config_may_name_a_cred_helper(monkeypatch, helper):
    helper("fake", {HOST: ["robot", SECRET]})
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps({"credHelpers": {HOST: "fake"}}))
    assert auth.credentials(HOST).source == "DOCKER_AUTH_CONFIG (docker-credential-fake)"


def test_an_empty_docker_auth_config_does_not_read_another_file(monkeypatch, clean_environment):
    """(the SDK reads the default config when handed an empty dict)"""
    home_config = clean_environment / ".docker" / "config.json"
    home_config.parent.mkdir()
    home_config.write_text(json.dumps({"auths": {"other.example": {"auth": b64("home", SECRET)}}}))
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", "{}")
    assert auth.credentials(HOST) is None


def test_invalid_docker_auth_config_is_an_error_that_does_not_print_it(monkeypatch):
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps({"auths": {HOST: {"auth": SECRET}}})[:-1])
    with pytest.raises(CredentialsError) as caught:
        auth.credentials(HOST)
    assert str(caught.value).startswith("DOCKER_AUTH_CONFIG is not valid JSON (line 1, column ")
    assert SECRET not in str(caught.value)


def test_gitlab_registry_variables_serve_ci_registry_only(monkeypatch):
    monkeypatch.setenv("CI_REGISTRY", HOST)
    monkeypatch.setenv("CI_REGISTRY_USER", "gitlab-ci-token")
    monkeypatch.setenv("CI_REGISTRY_PASSWORD", SECRET)
    found = auth.credentials(HOST)
    assert (found.username, found.password, found.source) == (
        "gitlab-ci-token", SECRET, "CI_REGISTRY_USER/CI_REGISTRY_PASSWORD")
    assert auth.credentials("other.example:5000") is None


def test_the_job_token_is_the_fallback_for_ci_registry(monkeypatch):
    monkeypatch.setenv("CI_REGISTRY", HOST)
    monkeypatch.setenv("CI_JOB_TOKEN", SECRET)
    found = auth.credentials(HOST)
    assert (found.username, found.password, found.source) == ("gitlab-ci-token", SECRET, "CI_JOB_TOKEN")
    monkeypatch.delenv("CI_REGISTRY")
    assert auth.credentials(HOST) is None  # without CI_REGISTRY, no registry is the job's


def test_the_sources_are_read_in_order_config_file_then_docker_auth_config_then_ci(tmp_path, monkeypatch):
    monkeypatch.setenv("CI_REGISTRY", HOST)
    monkeypatch.setenv("CI_JOB_TOKEN", "job")
    assert auth.credentials(HOST).source == "CI_JOB_TOKEN"
    monkeypatch.setenv("DOCKER_AUTH_CONFIG", json.dumps({"auths": {HOST: {"auth": b64("runner", "r")}}}))
    assert auth.credentials(HOST).source == "DOCKER_AUTH_CONFIG"
    path = docker_config(tmp_path, monkeypatch, {"auths": {HOST: {"auth": b64("me", "m")}}})
    assert auth.credentials(HOST).source == str(path)
    # each source is asked for the registry: one that has nothing for it passes on
    path.write_text(json.dumps({"auths": {"other.example": {"auth": b64("me", "m")}}}))
    assert auth.credentials(HOST).source == "DOCKER_AUTH_CONFIG"


def test_credentials_never_show_their_secrets():
    creds = Credentials("ci", SECRET, "tok-" + SECRET, "somewhere")
    assert SECRET not in repr(creds) and SECRET not in str(creds) and SECRET not in creds.describe()


def test_the_login_hint_names_docker_login_the_config_and_the_ci_variables(tmp_path, monkeypatch):
    docker_config(tmp_path, monkeypatch, {})
    hint = auth.login_hint(HOST)
    assert f"`docker login {HOST}`" in hint and str(tmp_path / "dc" / "config.json") in hint
    assert "DOCKER_AUTH_CONFIG" in hint and "CI_REGISTRY_USER/CI_REGISTRY_PASSWORD" in hint
    assert "`docker login`" in auth.login_hint("index.docker.io")


# -- the registry client's authentication: the pure parts ---------------------------------------------


def test_challenges_are_parsed_quoted_or_not():
    assert parse_challenge('Bearer realm="https://auth.example/token",service="reg",scope="repository:a:pull"') == (
        "bearer", {"realm": "https://auth.example/token", "service": "reg", "scope": "repository:a:pull"})
    assert parse_challenge('Basic realm="Registry Realm"') == ("basic", {"realm": "Registry Realm"})
    assert parse_challenge("Bearer realm=https://a/t, service=reg") == (
        "bearer", {"realm": "https://a/t", "service": "reg"})
    assert parse_challenge("") == ("", {})


def test_scopes_merge_per_repository_with_sorted_actions():
    assert merge_scopes(["repository:a:push,pull"], ["repository:a:pull", "repository:b:pull"]) == (
        "repository:a:pull,push", "repository:b:pull")
    assert merge_scopes([]) == ()
    assert merge_scopes(["repository:team/app:pull", "garbage"]) == ("repository:team/app:pull",)


def _challenge(header: str) -> requests.Response:
    response = requests.Response()
    response.status_code = 401
    response.headers["WWW-Authenticate"] = header
    return response


def test_credentials_are_never_sent_to_a_plain_http_token_service_of_an_https_registry():
    registry = Registry("registry.example")
    registry._credentials = Credentials("ci", SECRET, source="test")
    with pytest.raises(RegistryError) as caught:
        registry._answer(_challenge('Bearer realm="http://auth.example/token",service="reg"'),
                         ("repository:a:pull",), None)
    assert "over plain HTTP; refused" in str(caught.value) and SECRET not in str(caught.value)
    assert registry.token_fetches == []


def test_a_realm_that_is_not_http_is_refused():
    registry = Registry("registry.example")
    registry._credentials = None
    with pytest.raises(RegistryError, match="not an HTTP URL: 'file:///etc/passwd'"):
        registry._answer(_challenge('Bearer realm="file:///etc/passwd",service="reg"'), (), None)


def test_a_basic_challenge_without_credentials_is_not_retried():
    registry = Registry("registry.example")
    registry._credentials = None
    assert registry._answer(_challenge('Basic realm="r"'), (), None) is False
    registry._credentials = Credentials("ci", SECRET, source="test")
    assert registry._answer(_challenge('Basic realm="r"'), (), None) is True
    assert registry._authorization(()) == "Basic " + b64("ci", SECRET)
    assert registry._answer(_challenge('Basic realm="r"'), (), "Basic x") is False  # refused: not again


def test_a_credentials_error_reaches_the_caller_as_a_registry_error(tmp_path, monkeypatch):
    docker_config(tmp_path, monkeypatch, "{broken")
    registry = Registry(HOST)
    with pytest.raises(RegistryError, match=f"credentials for registry {HOST}: the Docker config .* is not valid JSON"):
        registry.credentials()


# -- a hostile registry and token service (a fake on loopback) ----------------------------------------


class _Fake(BaseHTTPRequestHandler):
    """Answers every registry request with a 401 Bearer challenge; the token endpoint answers
    what the test sets in `token_reply` (status, body)."""

    token_reply: tuple[int, bytes] = (200, b'{"token": "t"}')
    seen: list[str]

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path.startswith("/token"):
            status, body = self.token_reply
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        realm = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.send_response(401)
        self.send_header("WWW-Authenticate", f'Bearer realm="{realm}",service="fake",scope="repository:x:pull"')
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_HEAD = do_GET


@pytest.fixture
def fake_registry():
    handler = type("Handler", (_Fake,), {"seen": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server, handler
    server.shutdown()
    server.server_close()


def test_a_registry_refusing_every_token_is_asked_twice_not_forever(fake_registry):
    server, handler = fake_registry
    registry = Registry(f"127.0.0.1:{server.server_address[1]}", timeout=10)
    registry._credentials = None
    with pytest.raises(RegistryError, match="requires credentials to pull from x and none were found"):
        registry.has_blob("x", "sha256:" + "0" * 64)
    assert [p.split("?")[0] for p in handler.seen] == [
        "/v2/x/blobs/sha256:" + "0" * 64, "/token", "/v2/x/blobs/sha256:" + "0" * 64]
    assert len(registry.token_fetches) == 1


@pytest.mark.parametrize(("reply", "says"), [
    ((200, b"not json"), "answered 200 without a token"),
    ((200, b'{"token": 42}'), "answered 200 without a token"),
    ((200, b"[]"), "answered 200 without a token"),
    ((500, b'{"errors": [{"code": "X", "message": "backend down"}]}'), "answered 500 without a token: backend down"),
])
def test_a_token_service_answering_nonsense_is_a_clear_error(fake_registry, reply, says):
    server, handler = fake_registry
    handler.token_reply = reply
    registry = Registry(f"127.0.0.1:{server.server_address[1]}", timeout=10)
    registry._credentials = None
    with pytest.raises(RegistryError) as caught:
        registry.ping()
    assert says in str(caught.value) and "the token service http://127.0.0.1:" in str(caught.value)
