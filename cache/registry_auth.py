"""Registry credentials: one lookup for pushes, base-image locks and pulls, and the remote cache.

Where they come from, first match wins (README, "Registry credentials"):

1. the Docker config file (`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`): its
   `credHelpers`, `credsStore` and `auths`, resolved by the `docker` SDK (`docker.auth`)
   exactly as `docker login` stored them, Docker Hub's aliases included;
2. `DOCKER_AUTH_CONFIG`, the variable GitLab runners use: a whole config.json as JSON;
3. for the registry named by GitLab's `CI_REGISTRY`: `CI_REGISTRY_USER` and
   `CI_REGISTRY_PASSWORD`, else the job token (`gitlab-ci-token` and `CI_JOB_TOKEN`).

Secrets are handed to the registry client only: never logged, never part of a message (which
names the user and the source), never a node's input.
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from docker import auth as docker_auth
from docker import errors as docker_errors
from docker.utils import config as docker_config

AUTH_CONFIG_ENV = "DOCKER_AUTH_CONFIG"
CI_REGISTRY_ENV = "CI_REGISTRY"
CI_USER_ENV = "CI_REGISTRY_USER"
CI_PASSWORD_ENV = "CI_REGISTRY_PASSWORD"
CI_JOB_TOKEN_ENV = "CI_JOB_TOKEN"
JOB_TOKEN_USER = "gitlab-ci-token"


class CredentialsError(Exception):
    """A credential source is unusable: a config that is not JSON, a helper that fails."""


@dataclass(frozen=True)
class Credentials:
    """What a registry's token service or Basic challenge is answered with. `identity_token` is
    an OAuth2 refresh token (what `docker login` keeps for some registries) used instead of the
    password. `source` says where they were found, for messages; the secrets never print."""

    username: str
    password: str = field(default="", repr=False)
    identity_token: str = field(default="", repr=False)
    source: str = ""

    def describe(self) -> str:
        who = f"user {self.username!r}" if self.username else "an identity token"
        return f"{who} from {self.source}"


def docker_config_file() -> Path:
    """The Docker config file the lookup reads (it may not exist). As with the Docker CLI, a set
    `DOCKER_CONFIG` names the only directory read (the SDK alone would fall back to the home
    directory's config, so a job's empty DOCKER_CONFIG would not hide the machine's logins)."""
    chosen = docker_config.config_path_from_environment()
    if chosen:
        return Path(chosen)
    return Path(docker_config.find_config_file()
                or os.path.join(docker_config.home_dir(), docker_config.DOCKER_CONFIG_FILENAME))


def credentials(registry: str, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials for `registry` (a registry name as references are normalised to:
    `docker.io`, `localhost:5000`...), or None when no source has any.
    Raises CredentialsError when a source that may hold them cannot be read."""
    env = os.environ if environ is None else environ
    registry = docker_auth.resolve_index_name(registry)
    path = docker_config_file()
    if path.is_file():
        found = _from_config(_read_config_file(path), registry, f"{path}")
        if found:
            return found
    text = env.get(AUTH_CONFIG_ENV)
    if text:
        found = _from_config(_parse_auth_config_variable(text), registry, AUTH_CONFIG_ENV)
        if found:
            return found
    return _from_ci_variables(registry, env)


def login_hint(registry: str) -> str:
    """How a user gives graphbuild credentials for `registry`."""
    name = docker_auth.resolve_index_name(registry)
    login = "docker login" if name == docker_auth.INDEX_NAME else f"docker login {name}"
    return (f"log in with `{login}` (stored in {docker_config_file()}; DOCKER_CONFIG chooses another "
            f"directory), or set {AUTH_CONFIG_ENV} to a config.json's JSON, or in GitLab CI "
            f"{CI_USER_ENV}/{CI_PASSWORD_ENV} when {CI_REGISTRY_ENV} is {name}")


# -- the Docker config ---------------------------------------------------------------------------


def _read_config_file(path: Path) -> dict[str, Any] | str:
    """The config's JSON, or the path itself for a legacy `.dockercfg` (the SDK reads those)."""
    try:
        text = path.read_text()
    except OSError as err:
        raise CredentialsError(f"cannot read the Docker config {path}: {err.strerror}") from None
    if path.name == os.path.basename(docker_config.LEGACY_DOCKER_CONFIG_FILENAME):
        return str(path)
    try:
        document = json.loads(text) if text.strip() else {}
    except ValueError as err:
        raise CredentialsError(f"the Docker config {path} is not valid JSON ({_position(err)})") from None
    if not isinstance(document, dict):
        raise CredentialsError(f"the Docker config {path} is not a JSON object")
    return document


def _parse_auth_config_variable(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError as err:  # the message would quote the value: a secret
        raise CredentialsError(f"{AUTH_CONFIG_ENV} is not valid JSON ({_position(err)}); it holds a whole "
                               'Docker config.json: {"auths": {"HOST": {"auth": "BASE64(USER:PASSWORD)"}}}') from None
    if not isinstance(document, dict):
        raise CredentialsError(f"{AUTH_CONFIG_ENV} is not a JSON object; it holds a whole Docker config.json")
    return document


def _position(err: ValueError) -> str:
    line, column = getattr(err, "lineno", None), getattr(err, "colno", None)
    return f"line {line}, column {column}" if line else "not JSON"


def _from_config(document: dict[str, Any] | str, registry: str, source: str) -> Credentials | None:
    if not document:  # (the SDK would read the default config file instead of an empty one)
        return None
    try:
        if isinstance(document, str):
            config = docker_auth.load_config(config_path=document)
        else:  # load_config takes the sections out of the dict it is given
            config = docker_auth.load_config(config_dict=json.loads(json.dumps(document)))
        with warnings.catch_warnings():  # the SDK warns (to stderr) about a helper missing from PATH
            warnings.simplefilter("ignore")
            found = config.resolve_authconfig(registry)
    except docker_errors.InvalidConfigFile as err:
        raise CredentialsError(f"{source}: {err}") from None
    except docker_errors.DockerException as err:  # a credential helper failed
        helper = config.get_credential_store(registry)
        raise CredentialsError(f"the credential helper docker-credential-{helper} named in {source} failed for "
                               f"{registry}: {_helper_error(err)}") from None
    except (ValueError, TypeError, UnicodeDecodeError):  # an `auth` that is not base64 of USER:PASSWORD
        raise CredentialsError(f"{source}: the `auth` entry for {registry} is not base64 of USER:PASSWORD") from None
    if not found:
        return None
    store = config.get_credential_store(registry)
    where = f"{source} (docker-credential-{store})" if "ServerAddress" in found and store else source
    token = found.get("IdentityToken") or ""
    username = found.get("Username") or found.get("username") or ""
    password = found.get("Password") or found.get("password") or ""
    if not (token or username or password):
        return None  # an empty `auths` entry: the helper or store had nothing either
    return Credentials(username, password, token, where)


def _helper_error(err: Exception) -> str:
    cause = err.__cause__ or err
    text = str(cause)
    return text if len(text) < 300 else text[:300] + "..."


# -- GitLab CI -------------------------------------------------------------------------------------


def _from_ci_variables(registry: str, env: Mapping[str, str]) -> Credentials | None:
    ci_registry = env.get(CI_REGISTRY_ENV)
    if not ci_registry or docker_auth.resolve_index_name(ci_registry) != registry:
        return None
    user, password = env.get(CI_USER_ENV), env.get(CI_PASSWORD_ENV)
    if user and password:
        return Credentials(user, password, source=f"{CI_USER_ENV}/{CI_PASSWORD_ENV}")
    if env.get(CI_JOB_TOKEN_ENV):
        return Credentials(JOB_TOKEN_USER, env[CI_JOB_TOKEN_ENV], source=f"{CI_JOB_TOKEN_ENV}")
    return None


__all__ = ["Credentials", "CredentialsError", "credentials", "docker_config_file", "login_hint"]
