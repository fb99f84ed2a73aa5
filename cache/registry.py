"""A small client of the OCI distribution API: blobs (HEAD first, then upload), manifests.

Loopback registries are spoken to over plain HTTP (the way Docker treats them); every other
host over HTTPS.  Token (Bearer) and Basic challenges are answered with the credentials of
the user's Docker config.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator
from pathlib import Path

import requests

from graphbuild.cache import registry_auth as auth
from graphbuild.cache.oci_media import ACCEPT_MANIFESTS

_CHUNK = 1 << 20


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


class Registry:
    def __init__(self, host: str, *, timeout: float = 120):
        self.host = host
        self.base = f"{'http' if _is_loopback(host) else 'https'}://{host}"
        self.timeout = timeout
        self.session = requests.Session()
        self._token: str | None = None

    # -- transport --------------------------------------------------------------------------

    def _request(self, method: str, url: str, **kwargs) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if self._token:
            headers["Authorization"] = self._token
        try:
            response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
            if response.status_code == 401 and self._authenticate(response):
                headers["Authorization"] = self._token or ""
                if "data" in kwargs and hasattr(kwargs["data"], "seek"):
                    kwargs["data"].seek(0)
                response = self.session.request(method, url, headers=headers, timeout=self.timeout, **kwargs)
        except requests.ConnectionError as err:
            raise RegistryError(f"registry {self.host} is not reachable ({_short(err)})") from None
        except requests.Timeout:
            raise RegistryError(f"registry {self.host} did not answer within {self.timeout} s") from None
        if response.status_code in (401, 403):
            raise RegistryError(f"registry {self.host} refused {method} {url.split(self.host, 1)[-1]}: "
                                f"{response.status_code} (check your credentials in {auth.docker_config_path()})")
        return response

    def _authenticate(self, response: requests.Response) -> bool:
        challenge = response.headers.get("WWW-Authenticate", "")
        creds = auth.credentials(self.host)
        if challenge.lower().startswith("basic"):
            if not creds:
                return False
            self.session.auth = creds
            self._token = None
            return True
        if challenge.lower().startswith("bearer"):
            params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
            realm = params.pop("realm", None)
            if not realm:
                return False
            try:
                token = requests.get(realm, params=params, auth=creds, timeout=self.timeout)
            except requests.RequestException as err:
                raise RegistryError(f"cannot get a token for {self.host}: {_short(err)}") from None
            if token.status_code != 200:
                return False
            body = token.json()
            self._token = "Bearer " + (body.get("token") or body.get("access_token") or "")
            return True
        return False

    def _check(self, response: requests.Response, what: str, ok: tuple[int, ...]) -> requests.Response:
        if response.status_code not in ok:
            detail = response.text.strip()[:300]
            raise RegistryError(f"{what}: registry {self.host} answered {response.status_code} {detail}")
        return response

    # -- API --------------------------------------------------------------------------------

    def ping(self) -> None:
        self._check(self._request("GET", f"{self.base}/v2/"), "ping", (200,))

    def has_blob(self, repository: str, digest: str) -> bool:
        response = self._request("HEAD", f"{self.base}/v2/{repository}/blobs/{digest}")
        if response.status_code == 404:
            return False
        self._check(response, f"checking blob {digest[:19]}", (200,))
        return True

    def mount_blob(self, repository: str, digest: str, source: str) -> bool:
        """Ask the registry to link a blob it holds in `source` into `repository` (no upload)."""
        response = self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/",
                                 params={"mount": digest, "from": source})
        if response.status_code == 201:
            return True
        if response.status_code == 202:  # not mounted: an upload session was opened instead; drop it
            location = response.headers.get("Location", "")
            if location:
                self._request("DELETE", self.base + location if location.startswith("/") else location)
        return False

    def upload_blob(self, repository: str, digest: str, path: Path) -> None:
        start = self._check(self._request("POST", f"{self.base}/v2/{repository}/blobs/uploads/"),
                            "starting an upload", (202,))
        location = start.headers["Location"]
        if location.startswith("/"):
            location = self.base + location
        separator = "&" if "?" in location else "?"
        with open(path, "rb") as data:
            self._check(self._request("PUT", f"{location}{separator}digest={digest}", data=data,
                                      headers={"Content-Type": "application/octet-stream",
                                               "Content-Length": str(path.stat().st_size)}),
                        f"uploading blob {digest[:19]}", (201,))

    def put_manifest(self, repository: str, reference: str, data: bytes, media_type: str) -> str:
        response = self._check(self._request("PUT", f"{self.base}/v2/{repository}/manifests/{reference}", data=data,
                                             headers={"Content-Type": media_type}), "pushing the manifest", (201,))
        return response.headers.get("Docker-Content-Digest", "")

    def put_manifest_with_subject(self, repository: str, reference: str, data: bytes, media_type: str) -> bool:
        """Push a manifest that has a `subject`; whether the registry says it indexed it for the
        referrers API (the `OCI-Subject` header of OCI distribution 1.1)."""
        response = self._check(self._request("PUT", f"{self.base}/v2/{repository}/manifests/{reference}", data=data,
                                             headers={"Content-Type": media_type}), "pushing the manifest", (201,))
        return bool(response.headers.get("OCI-Subject"))

    def find_manifest(self, repository: str, reference: str) -> tuple[bytes, str] | None:
        """A manifest and its media type, or None when the registry has none by that name."""
        response = self._request("GET", f"{self.base}/v2/{repository}/manifests/{reference}",
                                 headers={"Accept": ACCEPT_MANIFESTS})
        if response.status_code == 404:
            return None
        self._check(response, f"reading manifest {repository}:{reference}", (200,))
        return response.content, response.headers.get("Content-Type", "")

    def referrers(self, repository: str, digest: str) -> bytes | None:
        """The referrers index of a manifest (`GET /v2/<name>/referrers/<digest>`), or None when
        the registry has no referrers API."""
        response = self._request("GET", f"{self.base}/v2/{repository}/referrers/{digest}",
                                 headers={"Accept": "application/vnd.oci.image.index.v1+json"})
        if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
            return None
        return response.content

    def get_manifest(self, repository: str, reference: str) -> tuple[bytes, str, str]:
        response = self._check(self._request("GET", f"{self.base}/v2/{repository}/manifests/{reference}",
                                             headers={"Accept": ACCEPT_MANIFESTS}),
                               f"reading manifest {repository}:{reference}", (200,))
        return response.content, response.headers.get("Content-Type", ""), response.headers.get(
            "Docker-Content-Digest", "")

    def head_manifest(self, repository: str, reference: str) -> str | None:
        response = self._request("HEAD", f"{self.base}/v2/{repository}/manifests/{reference}",
                                 headers={"Accept": ACCEPT_MANIFESTS})
        if response.status_code == 404:
            return None
        self._check(response, f"checking manifest {repository}:{reference}", (200,))
        return response.headers.get("Docker-Content-Digest")

    def blob_chunks(self, repository: str, digest: str) -> Iterator[bytes]:
        response = self._check(self._request("GET", f"{self.base}/v2/{repository}/blobs/{digest}", stream=True),
                               f"downloading blob {digest[:19]}", (200,))
        yield from response.iter_content(_CHUNK)


def _short(err: Exception) -> str:
    text = str(err)
    match = re.search(r"\[Errno \d+\] ([^'\")]+)", text)
    return match.group(1) if match else text[:160]
