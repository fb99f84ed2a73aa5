"""Signatures on shared-cache records: only results written by a holder of a trusted key are used.

A writer signs, with Ed25519, the bytes `signed_payload(key_id, key, record, inputs)`:

    DOMAIN  key_id  NUL  canonical JSON of {"inputs": ..., "key": ..., "record": ...}

that is, exactly what a reader trusts when it uses the entry: the action key it is filed
under, the result record (output sha256s and sizes, metadata, output digest, log digest,
status) and the named inputs (what `why` shows). The domain prefix keeps a signature made
for anything else (another format, another version) from ever verifying here; the key id in
the payload binds the signature to the key the reader looked up. Readers verify against the
public keys listed in graphbuild.toml (`[cache] trusted_keys`) and nothing else.

A key id is the first 16 hex digits of the sha256 of the raw 32-byte public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from graphbuild.cache.oci_media import canonical_json

DOMAIN = b"graphbuild remote-cache record signature v1\x00"
ALGORITHM = "ed25519"
PUBLIC_PREFIX = "ed25519:"
KEY_FORMS = ("a PEM 'PRIVATE KEY' block, or one line of base64 (the PEM's body, or a raw 32-byte seed), "
             "as `graphbuild cache keygen` writes")


class Untrusted(Exception):
    """A record's signature is missing, by a key not trusted, or does not verify; `reason` says which."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


def key_id_of(raw_public: bytes) -> str:
    return hashlib.sha256(raw_public).hexdigest()[:16]


def signed_payload(key_id: str, key: str, record: Mapping[str, Any], inputs: Mapping[str, Any]) -> bytes:
    """The exact bytes a record's signature covers (see the module docstring)."""
    if not key_id.isascii() or "\x00" in key_id:
        raise ValueError(f"invalid key id {key_id!r}")
    return DOMAIN + key_id.encode("ascii") + b"\x00" + canonical_json(
        {"inputs": inputs, "key": key, "record": record})


@dataclass(frozen=True)
class PublicKey:
    raw: bytes

    @property
    def key_id(self) -> str:
        return key_id_of(self.raw)

    def line(self) -> str:
        """The form graphbuild.toml lists: `ed25519:` and the base64 of the 32 raw bytes."""
        return PUBLIC_PREFIX + base64.b64encode(self.raw).decode()

    @staticmethod
    def parse(text: str) -> PublicKey:
        """A `trusted_keys` entry; ValueError saying what is wrong."""
        if not isinstance(text, str) or not text.startswith(PUBLIC_PREFIX):
            raise ValueError("expected 'ed25519:' followed by the base64 of a 32-byte public key")
        try:
            raw = base64.b64decode(text.removeprefix(PUBLIC_PREFIX).strip(), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the part after 'ed25519:' is not valid base64") from None
        if len(raw) != 32:
            raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
        return PublicKey(raw)

    def verify(self, signature: bytes, message: bytes) -> bool:
        try:
            Ed25519PublicKey.from_public_bytes(self.raw).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


class SigningKey:
    """A writer's private key. It is never printed: repr and str show the key id only."""

    def __init__(self, private: Ed25519PrivateKey):
        self._private = private
        self.public = PublicKey(private.public_key().public_bytes(serialization.Encoding.Raw,
                                                                  serialization.PublicFormat.Raw))

    def __repr__(self) -> str:
        return f"SigningKey(key_id={self.public.key_id})"

    __str__ = __repr__

    @staticmethod
    def generate() -> SigningKey:
        return SigningKey(Ed25519PrivateKey.generate())

    @staticmethod
    def load(text: str | bytes) -> SigningKey:
        """A key as `graphbuild cache keygen` writes it (PEM), or one line of base64: the PEM's
        body (PKCS#8) or a raw 32-byte seed. ValueError (never quoting the key) when not."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        data = data.strip()
        try:
            if data.startswith(b"-----BEGIN"):
                private = serialization.load_pem_private_key(data, password=None)
            else:
                raw = base64.b64decode(b"".join(data.split()), validate=True)
                if len(raw) == 32:
                    private = Ed25519PrivateKey.from_private_bytes(raw)
                else:
                    private = serialization.load_der_private_key(raw, password=None)
        except (ValueError, TypeError, binascii.Error, UnsupportedAlgorithm):
            raise ValueError(f"not an Ed25519 private key: expected {KEY_FORMS}") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise ValueError(f"not an Ed25519 private key (another algorithm): expected {KEY_FORMS}")
        return SigningKey(private)

    def pem(self) -> bytes:
        return self._private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption())

    def sign(self, key: str, record: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, str]:
        """The signature document stored beside the record."""
        key_id = self.public.key_id
        value = self._private.sign(signed_payload(key_id, key, record, inputs))
        return {"algorithm": ALGORITHM, "key_id": key_id, "value": base64.b64encode(value).decode()}


class TrustedKeys:
    """The public keys whose signatures readers accept."""

    def __init__(self, keys: Iterable[PublicKey] = ()):
        self._by_id = {key.key_id: key for key in keys}

    def __bool__(self) -> bool:
        return bool(self._by_id)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, key_id: object) -> bool:
        return key_id in self._by_id

    def check(self, signature: Any, key: str, record: Mapping[str, Any], inputs: Mapping[str, Any]) -> PublicKey:
        """The trusted key that signed (key, record, inputs); Untrusted with the reason otherwise."""
        if signature is None:
            raise Untrusted("is unsigned")
        if not isinstance(signature, dict) or not isinstance(signature.get("key_id"), str) \
                or not isinstance(signature.get("value"), str):
            raise Untrusted("has a malformed signature")
        if signature.get("algorithm") != ALGORITHM:
            raise Untrusted(f"is signed with {str(signature.get('algorithm'))[:20]!r}, not {ALGORITHM}")
        key_id = signature["key_id"]
        public = self._by_id.get(key_id)
        if public is None:
            raise Untrusted(f"is signed by key {key_id[:16]!r}, which graphbuild.toml's [cache] trusted_keys "
                            f"does not list")
        try:
            value = base64.b64decode(signature["value"], validate=True)
        except (binascii.Error, ValueError):
            raise Untrusted("has a malformed signature") from None
        if not public.verify(value, signed_payload(key_id, key, record, inputs)):
            raise Untrusted(f"has a bad signature (key {key_id}): its record or inputs changed after signing")
        return public
