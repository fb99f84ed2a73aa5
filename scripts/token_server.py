#!/usr/bin/env python3
"""A token service for a Distribution registry configured with `auth: token`, for graphbuild's
tests of registry authentication (scripts/services.sh starts it beside that registry).

It implements Docker's token authentication as a registry client meets it:

* `GET /token?service=S&scope=repository:NAME:ACTIONS...`, with Basic credentials or none;
* `POST /token`, the OAuth2 form (`grant_type=password` or `refresh_token`), which is how a
  client holding an identity token asks;

and answers with a JWT (RS256, the signing certificate in the `x5c` header) that grants, per
requested repository, the requested actions the user holds. Every repository is private:
an anonymous client gets a token granting nothing, wrong credentials get a 401.

Users live in a JSON file (`--users`), made on first start with random secrets, mode 0600:
`{"users": {"NAME": {"password": ..., "refresh_token": ..., "actions": ["pull", "push"]}}}`;
it holds `pusher` (pull and push) and `reader` (pull only). Requests are logged to stderr
without secrets. Needs only the standard library and `cryptography`.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import os
import secrets
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

DEFAULT_USERS = {"pusher": ["pull", "push"], "reader": ["pull"]}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def load_users(path: Path) -> dict[str, dict]:
    """The users file, created with random secrets when it does not exist."""
    if not path.exists():
        users = {name: {"password": secrets.token_urlsafe(18), "refresh_token": secrets.token_urlsafe(24),
                        "actions": actions} for name, actions in DEFAULT_USERS.items()}
        tmp = path.with_name(f".{path.name}.{os.getpid()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({"users": users}, handle, indent=2)
        os.replace(tmp, path)
    return json.loads(path.read_text())["users"]


class Issuer:
    def __init__(self, key: Path, cert: Path, issuer: str, service: str, lifetime: int):
        self.key = serialization.load_pem_private_key(key.read_bytes(), password=None)
        der = x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(serialization.Encoding.DER)
        self.x5c = [base64.b64encode(der).decode()]
        self.issuer, self.service, self.lifetime = issuer, service, lifetime

    def token(self, subject: str, access: list[dict]) -> str:
        now = int(time.time())
        header = {"typ": "JWT", "alg": "RS256", "x5c": self.x5c}
        claims = {"iss": self.issuer, "sub": subject, "aud": self.service, "exp": now + self.lifetime,
                  "nbf": now - 30, "iat": now, "jti": secrets.token_hex(16), "access": access}
        signing_input = ".".join(b64url(json.dumps(part, separators=(",", ":")).encode())
                                 for part in (header, claims))
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{b64url(signature)}"


def grant(scopes: list[str], allowed: list[str]) -> list[dict]:
    """The access entries for `scopes` (`repository:NAME:pull,push`) that `allowed` permits."""
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind != "repository" or not name:
            continue
        granted = [a for a in actions.split(",") if a in allowed]
        access.append({"type": kind, "name": name, "actions": granted})
    return access


class Handler(BaseHTTPRequestHandler):
    server_version = "graphbuild-token-server"
    issuer: Issuer
    users: dict[str, dict]

    def log_message(self, format: str, *args) -> None:  # (the request line carries no secret)
        sys.stderr.write(f"[token-server] {self.address_string()} {format % args}\n")

    def _reply(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, status: int, code: str, message: str) -> None:
        headers = {"WWW-Authenticate": 'Basic realm="graphbuild-token-server"'} if status == 401 else {}
        self._reply(status, {"errors": [{"code": code, "message": message}]}, headers)

    def _check_password(self, user: str, password: str) -> bool:
        entry = self.users.get(user)
        return bool(entry) and hmac.compare_digest(entry["password"].encode(), password.encode())

    def _issue(self, user: str | None, service: str, scopes: list[str], oauth: bool) -> None:
        if service != self.issuer.service:
            self._refuse(400, "INVALID_SERVICE", f"this token service serves {self.issuer.service!r}")
            return
        allowed = self.users[user]["actions"] if user else []
        access = grant(scopes, allowed)
        token = self.issuer.token(user or "", access)
        granted = " ".join(entry["name"] + ":" + ",".join(entry["actions"]) for entry in access)
        sys.stderr.write(f"[token-server] token for {user or 'anonymous'}: {granted or '(no scope)'}\n")
        issued = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {"access_token": token, "expires_in": self.issuer.lifetime, "issued_at": issued}
        if oauth:
            body["scope"] = " ".join(scopes)
        else:
            body["token"] = token
        self._reply(200, body)

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._reply(200, {"ok": True})
            return
        if url.path != "/token":
            self._refuse(404, "NOT_FOUND", "no such endpoint")
            return
        query = parse_qs(url.query)
        user = None
        header = self.headers.get("Authorization", "")
        if header:
            scheme, _, value = header.partition(" ")
            try:
                name, _, password = base64.b64decode(value, validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                name = password = ""
            if scheme.lower() != "basic" or not self._check_password(name, password):
                self._refuse(401, "UNAUTHORIZED", "invalid username or password")
                return
            user = name
        scopes = [s for value in query.get("scope", []) for s in value.split()]
        self._issue(user, (query.get("service") or [""])[0], scopes, oauth=False)

    def do_POST(self) -> None:
        if urlsplit(self.path).path != "/token":
            self._refuse(404, "NOT_FOUND", "no such endpoint")
            return
        length = int(self.headers.get("Content-Length") or 0)
        form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
        if not form.get("client_id"):
            self._refuse(400, "INVALID_REQUEST", "client_id is required")
            return
        user = None
        if form.get("grant_type") == "password":
            if self._check_password(form.get("username", ""), form.get("password", "")):
                user = form["username"]
        elif form.get("grant_type") == "refresh_token":
            presented = form.get("refresh_token", "").encode()
            user = next((name for name, entry in self.users.items()
                         if hmac.compare_digest(entry["refresh_token"].encode(), presented)), None)
        else:
            self._refuse(400, "UNSUPPORTED_GRANT_TYPE", "grant_type is password or refresh_token")
            return
        if user is None:
            self._refuse(401, "UNAUTHORIZED", "invalid credentials")
            return
        self._issue(user, form.get("service", ""), form.get("scope", "").split(), oauth=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default="127.0.0.1:5002", help="HOST:PORT (loopback)")
    parser.add_argument("--key", type=Path, required=True, help="the signing key (PEM, RSA)")
    parser.add_argument("--cert", type=Path, required=True, help="its certificate (the registry's rootcertbundle)")
    parser.add_argument("--users", type=Path, required=True, help="the users file (made when missing)")
    parser.add_argument("--issuer", required=True)
    parser.add_argument("--service", required=True)
    parser.add_argument("--lifetime", type=int, default=300, help="token lifetime in seconds")
    args = parser.parse_args()
    host, _, port = args.listen.rpartition(":")
    Handler.issuer = Issuer(args.key, args.cert, args.issuer, args.service, args.lifetime)
    Handler.users = load_users(args.users)
    server = ThreadingHTTPServer((host, int(port)), Handler)
    sys.stderr.write(f"[token-server] listening on {args.listen} for service {args.service!r}\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
