"""Secrets of the CI a build runs in, kept from every process graphbuild starts.

graphbuild itself reads registry credentials and the remote cache's signing key from its
environment; nothing it starts needs them: uv, build backends (a library's `setup.py` is
code from whoever wrote the library), `genrule` commands, the Starlark evaluator. So every
child's environment is built without them (the test containers get a fixed environment of
their own and never see graphbuild's). Variables the user names in `GRAPHBUILD_SECRET_ENV`
(comma-separated names, e.g. GitLab `id_tokens` variables) are kept out the same way.

Credentials a child does need are left alone: uv's own (`UV_INDEX_<NAME>_PASSWORD`, a
`.netrc`) reach uv as before.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

#: the user's own list of extra names to keep from children
EXTRA_ENV = "GRAPHBUILD_SECRET_ENV"

#: GitLab's predefined secrets (CI_REPOSITORY_URL embeds the job token), the Docker
#: credentials GitLab runners use, and graphbuild's signing key
SECRET_ENV = frozenset({
    "CI_JOB_TOKEN", "CI_BUILD_TOKEN", "CI_JOB_JWT", "CI_JOB_JWT_V1", "CI_JOB_JWT_V2",
    "CI_REGISTRY_PASSWORD", "CI_DEPLOY_PASSWORD", "CI_DEPENDENCY_PROXY_PASSWORD", "CI_REPOSITORY_URL",
    "DOCKER_AUTH_CONFIG",
})
#: every variable whose name starts so (the key itself and the file holding it)
SECRET_PREFIXES = ("GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY",)


def is_secret(name: str, extra: frozenset[str] = frozenset()) -> bool:
    return name in SECRET_ENV or name in extra or name.startswith(SECRET_PREFIXES)


def without_secrets(env: Mapping[str, str]) -> dict[str, str]:
    """`env` without the CI's secrets (and without the names `GRAPHBUILD_SECRET_ENV` lists, in
    `env` or in graphbuild's own environment)."""
    listed = f"{env.get(EXTRA_ENV, '')},{os.environ.get(EXTRA_ENV, '')}"
    extra = frozenset(name.strip() for name in listed.split(",") if name.strip())
    return {name: value for name, value in env.items() if not is_secret(name, extra)}
