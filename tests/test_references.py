"""Image references read the way Docker reads them, push destinations, and registry endpoints."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from graphbuild.cache.registry import Registry, api_endpoint
from graphbuild.rules.oci import reference
from graphbuild.rules.oci.reference import InvalidReference, Reference

if TYPE_CHECKING:
    from conftest import TestWorkspace

HEX = "0123456789abcdef" * 4

# -- normalisation ------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    # Docker Hub: no registry named; one component is an official image under library/
    ("python", "docker.io/library/python"),
    ("python:3.11-slim", "docker.io/library/python:3.11-slim"),
    ("team/app", "docker.io/team/app"),
    ("team/sub/app:v1", "docker.io/team/sub/app:v1"),
    ("docker.io/python", "docker.io/library/python"),
    ("docker.io/team/app:v1", "docker.io/team/app:v1"),
    ("docker.io/library/python", "docker.io/library/python"),
    ("index.docker.io/team/app", "docker.io/team/app"),  # the legacy name is the same registry
    ("index.docker.io/python:3", "docker.io/library/python:3"),
    (f"python@sha256:{HEX}", f"docker.io/library/python@sha256:{HEX}"),
    (f"python:3.11@sha256:{HEX}", f"docker.io/library/python:3.11@sha256:{HEX}"),
    # a first component with '.' or ':', or `localhost`, names the registry
    ("localhost/app", "localhost/app"),
    ("localhost:5000/team/app:v1", "localhost:5000/team/app:v1"),
    ("host.name/app", "host.name/app"),
    ("registry.example:443/a/b/c:1.0", "registry.example:443/a/b/c:1.0"),
    ("127.0.0.1:5000/app", "127.0.0.1:5000/app"),
    ("[::1]:5000/team/app:v1", "[::1]:5000/team/app:v1"),
    ("[fe80::1]/app", "[fe80::1]/app"),
    ("Registry/app", "Registry/app"),  # capitals cannot be a repository: Docker reads a host
    # no '/' at all: `localhost:5000` is image `localhost`, tag 5000, as Docker reads it
    ("localhost:5000", "docker.io/library/localhost:5000"),
    ("a.b-c/d__e--f.g_h", "a.b-c/d__e--f.g_h"),
])
def test_references_are_normalised_as_docker_normalises_them(text, expected):
    assert str(reference.parse(text)) == expected


def test_the_parts_of_a_normalised_reference():
    ref = reference.parse(f"python:3.11-slim@sha256:{HEX}")
    assert ref == Reference("docker.io", "library/python", "3.11-slim", f"sha256:{HEX}")
    assert ref.name == "docker.io/library/python"
    assert ref.target == f"sha256:{HEX}"  # the digest wins over the tag
    assert reference.parse("team/app").target == "latest"
    assert reference.parse("team/app:v2").target == "v2"


def test_docker_hub_and_its_legacy_name_are_one_registry_whose_api_has_its_own_host():
    assert reference.parse("docker.io/x/y").host == reference.parse("index.docker.io/x/y").host == "docker.io"
    endpoint = api_endpoint("docker.io")
    assert endpoint == api_endpoint("index.docker.io") != "docker.io"
    assert endpoint.endswith(".docker.io")
    # every other registry serves its API itself; loopback ones over plain HTTP, as Docker does
    assert Registry("docker.io").base == Registry("index.docker.io").base == f"https://{endpoint}"
    assert Registry("docker.io").host == Registry("index.docker.io").host == "docker.io"
    assert Registry("registry.example:5000").base == "https://registry.example:5000"
    assert Registry("localhost:5000").base == "http://localhost:5000"
    assert Registry("127.0.0.1:5000").base == "http://127.0.0.1:5000"
    assert Registry("[::1]:5000").base == "http://[::1]:5000"
    assert Registry("127.9.9.9").base == "http://127.9.9.9"


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "says"), [
    ("", "the reference is empty"),
    ("Python:3", "repository name 'Python' in 'Python:3' must be lowercase (write 'python')"),
    ("registry.example/Team/App", "must be lowercase (write 'team/app')"),
    ("https://registry.example/app", "has a URL scheme; a reference names no scheme (write 'registry.example/app')"),
    ("app:1:2", "invalid tag '1:2'"),
    ("app:-x", "invalid tag '-x'"),
    ("app:" + "x" * 129, "invalid tag"),
    ("app@sha256:abc", "invalid digest 'sha256:abc'"),
    (f"app@sha256:{HEX.upper()}", "invalid digest"),
    (f"app@sha512:{HEX}{HEX}", "only sha256 digests are supported"),
    ("a//b", "invalid repository name 'a//b'"),
    ("a/b/", "invalid repository name"),
    ("-a/b", "invalid repository name '-a/b'"),
    ("a_-b", "invalid repository name"),
    ("host:port/app", "invalid registry 'host:port'"),
    ("[::1/app", "invalid registry '[::1'"),
    ("-bad.host/app", "invalid registry '-bad.host'"),
    ("a.b_c/app", "invalid registry 'a.b_c'"),
    ("registry.example/", "names no repository"),
    ("registry.example/:tag", "names no repository"),
    (" app", "contains white space"),
    ("my app", "contains white space"),
    (HEX, "64 hex digits, which Docker reserves for image IDs"),
    ("x/" + "a" * 300, "longer than 255 characters"),
])
def test_bad_references_say_what_is_wrong_and_how_to_write_one(text, says):
    with pytest.raises(InvalidReference) as caught:
        reference.parse(text)
    assert says in str(caught.value)
    assert "[HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]" in caught.value.hint
    assert isinstance(caught.value, ValueError)


def test_a_bad_base_image_ref_is_a_spec_error_at_its_line_with_a_hint(ws: TestWorkspace):
    ws.write("envs/BUILD.envs", """
        # a base from a registry
        base_image(
            name = "up",
            ref = "Python:3.11",
        )
    """)
    result = ws.gb("build", "//envs:up")
    assert result.exit_code == 2
    assert "envs/BUILD.envs:4" in result.stderr
    assert "repository name 'Python' in 'Python:3.11' must be lowercase (write 'python')" in result.stderr
    assert "[HOST[:PORT]/]REPOSITORY[:TAG][@sha256:DIGEST]" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_base_image_ref_naming_no_registry_is_on_docker_hub_whatever_is_configured(ws, monkeypatch):
    """The configured registry is a push shorthand only: a base is read as Docker reads it."""
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", "localhost:5000")
    ws.write("envs/BUILD.envs", 'base_image(name = "up", ref = "python:3.11-slim")\n')
    result = ws.gb("build", "//envs:up")
    assert result.exit_code == 2 and "no lock file envs/baselock.up.json" in result.stderr
    from graphbuild.rules.oci.base_image import _registry_ref

    class Ctx:
        inputs = {"ref": "python:3.11-slim"}

    assert str(_registry_ref(Ctx())) == "docker.io/library/python:3.11-slim"


# -- push destinations ------------------------------------------------------------------------------


def test_a_destination_naming_its_registry_goes_there_whatever_is_configured(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", "localhost:5000")
    found = reference.destination("registry.example:5000/team/app:v1", tmp_path)
    assert str(found.reference) == "registry.example:5000/team/app:v1"
    assert found.why == "the registry it names"
    assert str(reference.destination("docker.io/team/app", tmp_path).reference) == "docker.io/team/app"


def test_a_destination_without_a_registry_goes_to_the_configured_one(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", "127.0.0.1:5000")
    found = reference.destination("team/prod:latest", tmp_path)
    assert found.reference == Reference("127.0.0.1:5000", "team/prod", "latest")
    assert found.why == "the configured registry (GRAPHBUILD_REGISTRY)"
    # one component stays as written: `library/` is Docker Hub's namespace only
    assert str(reference.destination("prod", tmp_path).reference) == "127.0.0.1:5000/prod"


def test_the_configured_registry_may_come_from_graphbuild_toml_and_the_variable_wins(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHBUILD_REGISTRY", raising=False)
    (tmp_path / "graphbuild.toml").write_text('[push]\nregistry = "[::1]:5000"\n')
    found = reference.destination("team/prod", tmp_path)
    assert str(found.reference) == "[::1]:5000/team/prod"
    assert found.why == "the configured registry ([push] registry of graphbuild.toml)"
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", "localhost:5001")
    assert reference.destination("team/prod", tmp_path).reference.host == "localhost:5001"


def test_without_a_configured_registry_a_hostless_destination_goes_to_docker_hub_as_docker_push_would(
        tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHBUILD_REGISTRY", raising=False)
    found = reference.destination("team/prod:latest", tmp_path)
    assert str(found.reference) == "docker.io/team/prod:latest"
    assert "Docker Hub" in found.why and "GRAPHBUILD_REGISTRY" in found.why
    assert str(reference.destination("prod", tmp_path).reference) == "docker.io/library/prod"


@pytest.mark.parametrize("configured", ["http://localhost:5000", "localhost:5000/prefix", "bad host", "-x"])
def test_a_configured_registry_that_is_no_host_is_an_error_naming_where_it_is_set(tmp_path, monkeypatch, configured):
    monkeypatch.setenv("GRAPHBUILD_REGISTRY", configured)
    with pytest.raises(InvalidReference) as caught:
        reference.destination("team/prod", tmp_path)
    assert f"GRAPHBUILD_REGISTRY is {configured!r}, not a registry: expected HOST[:PORT]" in str(caught.value)


def test_a_destination_with_a_digest_is_refused(tmp_path):
    with pytest.raises(InvalidReference) as caught:
        reference.destination(f"localhost:5000/team/prod@sha256:{HEX}", tmp_path)
    assert "has a digest: a push names a tag" in str(caught.value)
    assert caught.value.hint == "write 'localhost:5000/team/prod'"


# -- properties ----------------------------------------------------------------------------------------

_component = st.from_regex(r"[a-z0-9]{1,6}(?:(?:[._]|__|-{1,2})[a-z0-9]{1,6}){0,2}", fullmatch=True)
_path = st.lists(_component, min_size=1, max_size=3).map("/".join)
_host = st.sampled_from(["", "docker.io/", "index.docker.io/", "localhost/", "localhost:5000/", "reg.example/",
                         "10.0.0.1:443/", "[::1]:5000/", "Upper.case/"])
_tag = st.one_of(st.just(""), st.from_regex(r":[A-Za-z0-9_][A-Za-z0-9_.-]{0,10}", fullmatch=True))
_digest = st.one_of(st.just(""), st.just(f"@sha256:{HEX}"))


@given(_host, _path, _tag, _digest)
def test_normalising_twice_changes_nothing_and_keeps_tag_and_digest(host, path, tag, digest):
    text = host + path + tag + digest
    assume(host or "." not in path.split("/")[0] or "/" not in path)  # else Docker reads a host
    assume(host or len(path) != 64 or any(c not in "0123456789abcdef" for c in path))  # an image ID
    ref = reference.parse(text)
    assert reference.parse(str(ref)) == ref
    assert ref.tag == (tag[1:] or None)
    assert ref.digest == (digest[1:] or None)
    assert ref.repository.endswith(path)
    assert (ref.host == "docker.io") == (host in ("", "docker.io/", "index.docker.io/"))
