"""Registry credentials from the user's Docker config (`auths`, `credHelpers`, `credsStore`).

Secrets are returned to the caller and never logged or put in a node's inputs.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path


def docker_config_path() -> Path:
    return Path(os.environ.get("DOCKER_CONFIG", Path.home() / ".docker")) / "config.json"


def credentials(host: str) -> tuple[str, str] | None:
    """(username, secret) for `host`, or None when the config has nothing for it."""
    try:
        config = json.loads(docker_config_path().read_text())
    except (OSError, ValueError):
        return None
    helper = config.get("credHelpers", {}).get(host) or config.get("credsStore")
    if helper:
        found = _from_helper(helper, host)
        if found:
            return found
    for key, entry in config.get("auths", {}).items():
        if _host_of(key) == host and entry.get("auth"):
            user, _, secret = base64.b64decode(entry["auth"]).decode().partition(":")
            return user, secret
    return None


def _from_helper(helper: str, host: str) -> tuple[str, str] | None:
    try:
        proc = subprocess.run([f"docker-credential-{helper}", "get"], input=host, text=True,
                              capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        return None
    return data.get("Username", ""), data.get("Secret", "")


def _host_of(key: str) -> str:
    return key.removeprefix("https://").removeprefix("http://").split("/", 1)[0]
