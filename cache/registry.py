"""A small client of the OCI distribution API: blobs (HEAD first, then upload), manifests.

A registry is named as references are normalised (`docker.io` for Docker Hub, however it was
written); its API is served by the same host except for Docker Hub's (`api_endpoint`).
Loopback registries are spoken to over plain HTTP (the way Docker treats them); every other
host over HTTPS.

Authentication, as Docker does it: a request first goes with what this client holds for its
scope, and a 401 is answered by its challenge. `Basic`: the registry's credentials
(`registry_auth`) on every request from then on. `Bearer` (token authentication): a token from
the challenge's realm for the request's scope (`repository:NAME:pull` to read,
`repository:NAME:pull,push` to write, plus `pull` on the source repository of a
cross-repository mount), fetched with the credentials (Basic, or the OAuth2 refresh-token grant
for an identity token) or anonymously without any, and kept per scope until it expires; once
the realm is known, a new scope's token is fetched before its first request. A 401 with a
token in hand fetches a fresh one once. Credentials are looked up at the first challenge, so a
registry that asks for none never runs a credential helper.
"""

from __future__ import annotations

import base64
import ipaddress
import re
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from docker.auth import INDEX_NAME, resolve_index_name

from graphbuild.cache import registry_auth as auth
from graphbuild.cache.oci_media import ACCEPT_MANIFESTS, INDEX

_CHUNK = 1 << 20
#: the host serving Docker Hub's registry API (`docker.io` itself serves none): Docker's special case
DOCKER_HUB_ENDPOINT = f"registry-1.{INDEX_NAME}"
#: a token is renewed this long before the registry's token service says it expires
_TOKEN_MARGIN = 10.0
#: what the token service is told the client is (OAuth2 `client_id`)
CLIENT_ID = "graphbuild"
_UNSET: Any = object()


class RegistryError(Exception):
    """A registry is unreachable, refuses, or answers something unexpected."""


def _is_loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]") if not host.startswith("[") else host[1:].split("]")[0]
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def api_endpoint(registry: str) -> str:
    """The host serving `registry`'s API: Docker Hub's is not `docker.io` itself."""
    return DOCKER_HUB_ENDPOINT if resolve_index_name(registry) == INDEX_NAME else registry


def pull_scope(repository: str) -> str:
    return f"repository:{repository}:pull"


def push_scope(repository: str) -> str:
    return f"repository:{repository}:pull,push"


def merge_scopes(*groups: Iterable[str]) -> tuple[str, ...]:
    """Scopes as one canonical tuple: one entry per resource, its actions sorted and merged
    (`repository:a:push,pull` and `repository:a:pull` -> `repository:a:pull,push`)."""
    actions: dict[str, set[str]] = {}
    for group in groups:
        for scope in group:
            resource, sep, names = scope.rpartition(":")
            if not sep or not resource:
                continue
            actions.setdefault(resource, set()).update(a for a in names.split(",") if a)
    return tuple(f"{resource}:{','.join(sorted(names))}" for resource, names in sorted(actions.items()))


def parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    """`Bearer realm="...",service="...",scope="..."` -> ("bearer", {realm, service, scope})."""
    scheme, _, rest = header.strip().partition(" ")
    params = {key.lower(): quoted if quoted or not bare else bare
              for key, quoted, bare in re.findall(r'(\w+)=(?:"([^"]*)"|([^\s,]+))', rest)}
    return scheme.lower(), params


class Registry:
    def __init__(self, host: str, *, timeout: float = 120):
        self.host = resolve_index_name(host)
        endpoint = api_endpoint(self.host)
        self.base = f"{'http' if _is_loopback(endpoint) else 'https'}://{endpoint}"
        self.timeout = timeout
        self.session = requests.Session()
        self._lock = threading.Lock()
        self._basic = False  # the registry asked for Basic credentials
        self._realm: dict[str, str] | None = None  # realm and service of its Bearer challenge
        self._tokens: dict[tuple[str, ...], tuple[str, float]] = {}  # scopes -> (header, renew at)
        self._credentials: Any = _UNSET
        #: the scopes of every token fetched, in order (for tests and for counting round trips)
        self.token_fetches: list[tuple[str, ...]] = []

    # -- transport --------------------------------------------------------------------------

    def _request(self, method: str, url: str, scopes: tuple[str, ...] = (), **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        data = kwargs.get("data")
        try:
            for attempt in (1, 2):
                sent = self._authorization(scopes)
                if sent:
                    headers["Authorization"] = sent
                else:
                    headers.pop("Authorization", None)
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
                if response.status_code != 401 or attempt == 2 or not self._answer(response, scopes, sent):
                    break
                response.close()
                if hasattr(data, "seek"):
                    data.seek(0)
        except requests.ConnectionError as err:
            raise RegistryError(f"registry {self._named()} is not reachable ({_short(err)})") from None
        except requests.Timeout:
            raise RegistryError(f"registry {self._named()} did not answer within {self.timeout} s") from None
        if response.status_code in (401, 403):
            raise RegistryError(self._refusal(response, scopes))
        return response

    def _named(self) -> str:
        """The registry's name, and its API's host when that is another (Docker Hub's)."""
        endpoint = self.base.split("://", 1)[1]
        return self.host if endpoint == self.host else f"{self.host} ({endpoint})"

    def credentials(self) -> auth.Credentials | None:
        """This registry's credentials (looked up once); RegistryError if a source is unusable."""
        if self._credentials is _UNSET:
            try:
                self._credentials = auth.credentials(self.host)
            except auth.CredentialsError as err:
                raise RegistryError(f"credentials for registry {self.host}: {err}") from None
        return self._credentials

    def _authorization(self, scopes: tuple[str, ...]) -> str | None:
        """The Authorization header this client holds (or can fetch unasked) for `scopes`."""
        with self._lock:
            if self._basic:
                creds = self.credentials()
                return _basic_header(creds) if creds else None
            if self._realm is None:
                return None
            key = merge_scopes(scopes)
            held = self._held_token(key)
            return held if held else self._fetch_token(key)

    def _held_token(self, scopes: tuple[str, ...]) -> str | None:
        """A live token granting at least `scopes` (a push token serves the pulls of its repository)."""
        now = time.monotonic()
        exact = self._tokens.get(scopes)
        if exact and exact[1] > now:
            return exact[0]
        for held_scopes, (header, renew_at) in self._tokens.items():
            if renew_at > now and merge_scopes(held_scopes, scopes) == held_scopes:
                return header
        return None

    def _answer(self, response: requests.Response, scopes: tuple[str, ...], sent: str | None) -> bool:
        """Take up a 401's challenge; True when the request is worth sending again."""
        scheme, params = parse_challenge(response.headers.get("WWW-Authenticate", ""))
        with self._lock:
            if scheme == "basic":
                if self._basic or not self.credentials():
                    return False
                self._basic = True
                return True
            if scheme != "bearer" or not params.get("realm"):
                return False
            self._realm = {"realm": params["realm"], "service": params.get("service", "")}
            key = merge_scopes(scopes, params.get("scope", "").split())
            if sent:  # refused (expired, revoked, or short of scope): never send it again
                current = self._held_token(key)
                if current and current != sent:
                    return True  # another thread renewed it meanwhile
                self._tokens = {k: v for k, v in self._tokens.items() if v[0] != sent}
            self._fetch_token(key)
            if key != merge_scopes(scopes):
                self._tokens[merge_scopes(scopes)] = self._tokens[key]
            return True

    def _fetch_token(self, scopes: tuple[str, ...]) -> str:
        """A token for `scopes` from the realm (called with the lock held)."""
        assert self._realm is not None
        realm, service = self._realm["realm"], self._realm["service"]
        creds = self.credentials()
        parts = urlsplit(realm)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise RegistryError(f"registry {self.host} names a token service that is not an HTTP URL: {realm!r}")
        if creds and parts.scheme == "http" and not self.base.startswith("http:"):
            raise RegistryError(f"registry {self.host} asks for credentials to be sent to its token service "
                                f"{realm} over plain HTTP; refused ({creds.describe()} would travel unencrypted)")
        self.token_fetches.append(scopes)
        try:
            if creds and creds.identity_token:
                form = {"grant_type": "refresh_token", "refresh_token": creds.identity_token, "service": service,
                        "scope": " ".join(scopes), "client_id": CLIENT_ID}
                answer = self.session.post(realm, data=form, timeout=self.timeout)
            else:
                query = [("service", service), *(("scope", scope) for scope in scopes)]
                if creds:
                    query.append(("account", creds.username))
                answer = self.session.get(realm, params=query, timeout=self.timeout,
                                          auth=(creds.username, creds.password) if creds else None)
        except requests.RequestException as err:
            raise RegistryError(f"the token service {realm} of registry {self.host} is not reachable "
                                f"({_short(err)})") from None
        if answer.status_code in (401, 403):
            if creds:
                raise RegistryError(f"the token service of registry {self.host} refused {creds.describe()} "
                                    f"({answer.status_code}{_error_text(answer)}); {auth.login_hint(self.host)}")
            raise RegistryError(f"registry {self.host} requires credentials and none were found; "
                                f"{auth.login_hint(self.host)}")
        try:
            body = answer.json() if answer.status_code == 200 else None
            token = body.get("token") or body.get("access_token") if isinstance(body, dict) else None
            lifetime = float(body.get("expires_in") or 60) if isinstance(body, dict) else 60.0
        except (ValueError, TypeError):
            body = token = None
            lifetime = 60.0
        if not token or not isinstance(token, str):
            raise RegistryError(f"the token service {realm} of registry {self.host} answered {answer.status_code} "
                                f"without a token{_error_text(answer)}")
        header = f"Bearer {token}"
        lifetime = max(lifetime, 1.0)
        self._tokens[scopes] = (header, time.monotonic() + max(lifetime - _TOKEN_MARGIN, lifetime / 2))
        return header

    def _refusal(self, response: requests.Response, scopes: tuple[str, ...]) -> str:
        creds = self.credentials()
        what = _describe(scopes)
        detail = f"{response.status_code}{_error_text(response)}"
        if creds is None:
            return (f"registry {self.host} requires credentials to {what} and none were found ({detail}); "
                    f"{auth.login_hint(self.host)}")
        return (f"registry {self.host} refused to let {creds.describe()} {what} ({detail}); check that the user "
                f"may, or {auth.login_hint(self.host)}")

    def _check(self, response: requests.Response, what: str, ok: tuple[int, ...]) -> requests.Response:
        if response.status_code not in ok:
            detail = response.text.strip()[:300]
            raise RegistryError(f"{what}: registry {self.host} answered {response.status_code} {detail}")
        return response

    # -- API --------------------------------------------------------------------------------

    def ping(self, repository: str | None = None, *, push: bool = False) -> None:
        """The registry answers; with a repository, this client may also read it (a repository
        that does not exist yet is fine). With `push`, the token asked for is the push token
        (Docker asks for it up front too): it serves the push's reads, and a client without
        credentials hears that it needs them to push."""
        self._check(self._request("GET", f"{self.base}/v2/"), "ping", (200,))
        if repository:
            scope = push_scope(repository) if push else pull_scope(repository)
            self._check(self._request("GET", f"{self.base}/v2/{repository}/tags/list", (scope,), params={"n": 1}),
                        f"listing {repository}", (200, 404))

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"{self.base}/v2/{repository}/blobs/{digest}", (pull_scope(repository),))
        if response.status_code == 404:
            return False
        self._check(response, f"checking blob {digest[:19]}", (200,))
        return True

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to link a blob it holds in `source` into `repository` (no upload)."""
        scopes = merge_scopes([push_scope(repository), pull_scope(source)])
        response = self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/", scopes,
                                 params={"mount": digest, "from": source})
        if response.status_code == 201:
            return True
        if response.status_code == 202:  # not mounted: an upload session was opened instead; drop it
            location = response.headers.get("Location", "")
            if location:
                self._request("DELETE", self.base + location if location.startswith("/") else location, scopes)
        return False

    def upload_blob(self, repository: str, digest: str, path: Path) -> None:
        scopes = (push_scope(repository),)
        start = self._check(self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/", scopes),
                            "starting an upload", (202,))
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        with open(path, "rb") as data:
            self._check(self._request("PUT", f"{location}{separator}digest={digest}", scopes, data=data,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(path.stat().st_size)}),
                        f"uploading blob {digest[:19]}", (201,))

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        response = self._check(self._request("PUT", f"{self.base}/v2/{repository}/manifests/{reference}",
                                             (push_scope(repository),), data=data,
                                             headers={"Content-Type": media_type}), "pushing the manifest", (201,))
        return response.headers.get("Docker-Content-Digest", "")

    def put_manifest_with_subject(self, repository: str, reference: str, data: bytes, media_type: str) -> bool:
        """Push a manifest that has a `subject`; whether the registry says it indexed it for the
        referrers API (the `OCI-Subject` header of OCI distribution 1.1)."""
        response = self._check(self._request("PUT", f"{self.base}/v2/{repository}/manifests/{reference}",
                                             (push_scope(repository),), data=data,
                                             headers={"Content-Type": media_type}), "pushing the manifest", (201,))
        return bool(response.headers.get("OCI-Subject"))

    def find_manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        """A manifest and its media type, or None when the registry has none by that name."""
        response = self._request("GET", f"{self.base}/v2/{repository}/manifests/{reference}",
                                 (pull_scope(repository),), headers={"Accept": ACCEPT_MANIFESTS})
        if response.status_code == 404:
            return None
        self._check(response, f"reading manifest {repository}:{reference}", (200,))
        return response.content, response.headers.get("Content-Type", "")

    def referrers(self, repository: str, digest: str) -> bytes | None:
        """The referrers index of a manifest (`GET /v2/<name>/referrers/<digest>`), or None when
        the registry has no referrers API."""
        response = self._request("GET", f"{self.base}/v2/{repository}/referrers/{digest}",
                                 (pull_scope(repository),), headers={"Accept": INDEX})
        if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
            return None
        return response.content

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        response = self._check(self._request("GET", f"{self.base}/v2/{repository}/manifests/{reference}",
                                             (pull_scope(repository),), headers={"Accept": ACCEPT_MANIFESTS}),
                               f"reading manifest {repository}:{reference}", (200,))
        return response.content, response.headers.get("Content-Type", ""), response.headers.get(
            "Docker-Content-Digest", "")

    def head_manifest(self, repository: str, reference: str) -> str | None:
        response = self._request("HEAD", f"{self.base}/v2/{repository}/manifests/{reference}",
                                 (pull_scope(repository),), headers={"Accept": ACCEPT_MANIFESTS})
        if response.status_code == 404:
            return None
        self._check(response, f"checking manifest {repository}:{reference}", (200,))
        return response.headers.get("Docker-Content-Digest")

    def blob_chunks(self, repository: str, digest: str) -> Iterator[bytes]:
        response = self._check(self._request("GET", f"{self.base}/v2/{repository}/blobs/{digest}",
                                             (pull_scope(repository),), stream=True),
                               f"downloading blob {digest[:19]}", (200,))
        yield from response.iter_content(_CHUNK)


def _short(err: Exception) -> str:
    text = str(err)
    if "NameResolutionError" in text or "Name or service not known" in text or "Failed to resolve" in text:
        host = re.search(r"host='([^']+)'", text)
        return f"cannot resolve {host.group(1)}" if host else "cannot resolve its name"
    match = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
    return match.group(1) if match else text[:160]


def _basic_header(creds: auth.Credentials) -> str:
    return "Basic " + base64.b64encode(f"{creds.username}:{creds.password}".encode()).decode()


def _describe(scopes: tuple[str, ...]) -> str:
    """What a request's scopes let it do, in words: "push to team/app", "pull from team/app"."""
    if not scopes:
        return "use it"
    for scope in scopes:
        resource, _, actions = scope.rpartition(":")
        if "push" in actions.split(","):
            return f"push to {resource.partition(':')[2]}"
    return f"pull from {scopes[0].rpartition(':')[0].partition(':')[2]}"


def _error_text(response: requests.Response) -> str:
    """`: MESSAGE` from an OCI error body (`{"errors": [{"code", "message"}]}`), or nothing."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        text = first.get("message") or first.get("code") or ""
    except (ValueError, AttributeError, IndexError, TypeError):
        return ""
    return f": {str(text)[:200]}" if text else ""
