"""The signatures on shared-cache records (`graphbuild.cache.signing`): the signed payload is
canonical and domain-separated, any change to anything a reader trusts breaks the signature,
and only listed keys are trusted. Also `graphbuild cache keygen` and the key settings."""

from __future__ import annotations

import base64
import copy
import json
import os
import stat
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from graphbuild.cache.oci_media import canonical_json
from graphbuild.cache.signing import DOMAIN, PublicKey, SigningKey, TrustedKeys, Untrusted, signed_payload

KEY = "3f" * 16
RECORD = {
    "status": "ok", "node": "//pkg:b#gen",
    "outputs": {"b.out": ["ab" * 32, 6, False], "c.out": ["cd" * 32, 0, True]},
    "metadata": {"tests": 3, "digest": "sha256:" + "ef" * 32, "nested": {"list": [1, 2.5, None, True]}},
    "output_digest": "01" * 16, "message": None, "log_tail": "ok\nüñí", "log": "23" * 32,
    "duration": 0.125, "created": 1763779000.5,
}
INPUTS = {"cmd": ["45" * 16, "tr a-z A-Z < $SRCS > $OUT"], "srcs": ["67" * 16, ["pkg/a.txt"]]}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


def leaves(value: Any, path: tuple = ()) -> Iterator[tuple]:
    """Every path to a leaf (and to every container) of a JSON value."""
    yield path
    if isinstance(value, dict):
        for name, item in value.items():
            yield from leaves(item, (*path, name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from leaves(item, (*path, index))


def changed(value: Any) -> Any:
    """A different value of a similar shape (same size for strings: a same-size edit)."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value + 1
    if isinstance(value, str):
        return (value[:-1] + ("0" if value[-1:] != "0" else "1")) if value else "x"
    if value is None:
        return 0
    if isinstance(value, list):
        return [*value, None]
    return {**value, "extra": None}


def set_at(document: Any, path: tuple, new: Any) -> None:
    for part in path[:-1]:
        document = document[part]
    document[path[-1]] = new


def get_at(document: Any, path: tuple) -> Any:
    for part in path:
        document = document[part]
    return document


def test_the_payload_is_canonical_and_domain_separated(key):
    payload = signed_payload(key.public.key_id, KEY, RECORD, INPUTS)
    assert payload.startswith(DOMAIN)
    assert payload == DOMAIN + key.public.key_id.encode() + b"\x00" + canonical_json(
        {"inputs": INPUTS, "key": KEY, "record": RECORD})
    # the same values in another order, or parsed back from any JSON spelling: the same bytes
    reordered = json.loads(json.dumps(dict(reversed(list(RECORD.items()))), indent=3))
    assert signed_payload(key.public.key_id, KEY, reordered, dict(reversed(list(INPUTS.items())))) == payload
    # a signature over the JSON alone (no prefix, or another prefix) does not verify here
    trusted = TrustedKeys([key.public])
    for message in (canonical_json({"inputs": INPUTS, "key": KEY, "record": RECORD}),
                    b"other protocol\x00" + payload[len(DOMAIN):]):
        forged = base64.b64encode(key._private.sign(message)).decode()
        with pytest.raises(Untrusted, match="bad signature"):
            trusted.check({"algorithm": "ed25519", "key_id": key.public.key_id, "value": forged}, KEY, RECORD, INPUTS)


def test_a_signature_verifies_and_any_change_to_any_field_breaks_it(key):
    trusted = TrustedKeys([key.public])
    signature = key.sign(KEY, RECORD, INPUTS)
    assert signature["key_id"] == key.public.key_id and signature["algorithm"] == "ed25519"
    assert trusted.check(signature, KEY, RECORD, INPUTS) == key.public
    assert trusted.check(json.loads(json.dumps(signature)), KEY, json.loads(json.dumps(RECORD)),
                         json.loads(json.dumps(INPUTS))) == key.public  # after a round trip through JSON

    checked = 0
    for which, document in (("record", RECORD), ("inputs", INPUTS)):
        for path in leaves(document):
            if not path:
                continue
            record, inputs = copy.deepcopy(RECORD), copy.deepcopy(INPUTS)
            set_at(record if which == "record" else inputs, path, changed(get_at(document, path)))
            with pytest.raises(Untrusted, match="bad signature"):
                trusted.check(signature, KEY, record, inputs)
            checked += 1
        for name in document:  # a field removed, a field added
            smaller = {k: v for k, v in document.items() if k != name}
            with pytest.raises(Untrusted):
                trusted.check(signature, KEY, *((smaller, INPUTS) if which == "record" else (RECORD, smaller)))
        with pytest.raises(Untrusted):
            trusted.check(signature, KEY, *(({**RECORD, "x": 1}, INPUTS) if which == "record"
                                            else (RECORD, {**INPUTS, "x": 1})))
    assert checked > 30
    with pytest.raises(Untrusted, match="bad signature"):
        trusted.check(signature, changed(KEY), RECORD, INPUTS)  # filed under another key
    value = bytearray(base64.b64decode(signature["value"]))
    value[5] ^= 1
    with pytest.raises(Untrusted, match="bad signature"):
        trusted.check({**signature, "value": base64.b64encode(bytes(value)).decode()}, KEY, RECORD, INPUTS)


def test_only_listed_keys_are_trusted_and_every_refusal_says_why(key):
    other = SigningKey.generate()
    trusted = TrustedKeys([key.public])
    by_other = other.sign(KEY, RECORD, INPUTS)
    with pytest.raises(Untrusted, match=f"signed by key '{other.public.key_id}', which .* does not list"):
        trusted.check(by_other, KEY, RECORD, INPUTS)
    # the other key's signature presented under the trusted key's id
    with pytest.raises(Untrusted, match="bad signature"):
        trusted.check({**by_other, "key_id": key.public.key_id}, KEY, RECORD, INPUTS)
    with pytest.raises(Untrusted, match="is unsigned"):
        trusted.check(None, KEY, RECORD, INPUTS)
    for bad in ("x", {}, {"key_id": key.public.key_id}, {"key_id": key.public.key_id, "value": 3},
                {"algorithm": "ed25519", "key_id": key.public.key_id, "value": "not base64!"}):
        with pytest.raises(Untrusted, match="malformed signature"):
            trusted.check(bad, KEY, RECORD, INPUTS)
    with pytest.raises(Untrusted, match="not ed25519"):
        trusted.check({**key.sign(KEY, RECORD, INPUTS), "algorithm": "hmac"}, KEY, RECORD, INPUTS)
    # rotation: both listed, both accepted; nothing listed, nothing accepted
    both = TrustedKeys([key.public, other.public])
    assert both.check(by_other, KEY, RECORD, INPUTS) == other.public
    assert both.check(key.sign(KEY, RECORD, INPUTS), KEY, RECORD, INPUTS) == key.public
    assert not TrustedKeys()
    with pytest.raises(Untrusted):
        TrustedKeys().check(key.sign(KEY, RECORD, INPUTS), KEY, RECORD, INPUTS)


def test_public_keys_parse_only_from_their_documented_form(key):
    line = key.public.line()
    assert line.startswith("ed25519:") and len(line) == len("ed25519:") + 44
    assert PublicKey.parse(line) == key.public
    assert key.public.key_id == PublicKey.parse(line).key_id and len(key.public.key_id) == 16
    for bad, why in (("", "expected 'ed25519:'"), ("rsa:AAAA", "expected 'ed25519:'"),
                     ("ed25519:***", "not valid base64"), ("ed25519:" + base64.b64encode(b"x" * 31).decode(), "31"),
                     (line.removeprefix("ed25519:"), "expected 'ed25519:'")):
        with pytest.raises(ValueError, match=why):
            PublicKey.parse(bad)


def test_private_keys_load_from_pem_or_one_line_and_are_never_shown(key):
    pem = key.pem()
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    one_line = b"".join(pem.splitlines()[1:-1])  # the PEM's body: what a masked CI variable holds
    raw_seed = base64.b64encode(key._private.private_bytes(serialization.Encoding.Raw,
                                                           serialization.PrivateFormat.Raw,
                                                           serialization.NoEncryption()))
    for text in (pem, pem.decode(), one_line, one_line.decode() + "\n", raw_seed):
        assert SigningKey.load(text).public == key.public
    assert key.public.key_id in repr(key) and one_line.decode() not in repr(key) + str(key)
    rsa_like = Ed25519PrivateKey.generate().public_key().public_bytes(serialization.Encoding.PEM,
                                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
    for bad in (b"", b"garbage", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n", rsa_like,
                base64.b64encode(b"x" * 31)):
        with pytest.raises(ValueError, match="not an Ed25519 private key") as err:
            SigningKey.load(bad)
        assert "AAAA" not in str(err.value) and "garbage" not in str(err.value)


# -- the command and the settings ---------------------------------------------------------------


def test_keygen_writes_a_private_file_and_prints_its_public_line(ws, tmp_path):
    target = tmp_path / "keys" / "ci.pem"
    target.parent.mkdir()
    result = ws.gb("cache", "keygen", "-o", str(target))
    assert result.exit_code == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    loaded = SigningKey.load(target.read_bytes())
    assert f'trusted_keys = ["{loaded.public.line()}"]' in result.stdout
    assert loaded.public.key_id in result.stdout
    assert "PRIVATE KEY" not in result.stdout + result.stderr

    again = ws.gb("cache", "keygen", "-o", str(target))
    assert again.exit_code == 2 and "already exists" in again.stderr
    assert SigningKey.load(target.read_bytes()).public == loaded.public  # never overwritten

    as_json = ws.gb("cache", "keygen", "-o", str(tmp_path / "k2.pem"), "--json")
    assert as_json.exit_code == 0
    assert SigningKey.load((tmp_path / "k2.pem").read_bytes()).public.line() == as_json.json["public_key"]
    assert "private_key" not in as_json.json

    printed = ws.gb("cache", "keygen", "--json")
    assert SigningKey.load(printed.json["private_key"]).public.line() == printed.json["public_key"]


def test_keygen_needs_no_workspace(tmp_path, monkeypatch):
    from graphbuild.cli.main import main

    outside = tmp_path / "nowhere"
    outside.mkdir()
    monkeypatch.chdir(outside)
    assert main(["cache", "keygen", "-o", str(outside / "k.pem")]) == 0
    assert (outside / "k.pem").is_file()


def test_bad_trusted_keys_are_reported_with_their_line(ws):
    good = SigningKey.generate().public.line()
    ws.write("graphbuild.toml", f'[cache]\ntrusted_keys = [\n  "{good}",\n  "ed25519:tooshort",\n  "rsa:AAAA",\n]\n')
    ws.write("pkg/BUILD.envs", 'genrule(name = "a", outs = ["a.out"], cmd = "echo a > $OUT")\n')
    result = ws.gb("build", "//pkg:a", "--remote-cache", "oci://127.0.0.1:1/x")
    assert result.exit_code == 2, result.stderr
    assert "graphbuild.toml:4: [cache] trusted_keys[1] 'ed25519:tooshort' is not an Ed25519 public key" in result.stderr
    assert "graphbuild.toml:5: [cache] trusted_keys[2] 'rsa:AAAA'" in result.stderr
    assert "Traceback" not in result.stderr
    ws.write("graphbuild.toml", f'[cache]\ntrusted_keys = "{good}"\n')
    single = ws.gb("build", "//pkg:a", "--remote-cache", "oci://127.0.0.1:1/x")
    assert single.exit_code == 2 and "graphbuild.toml:2: [cache] trusted_keys must be a list" in single.stderr


def test_a_bad_signing_key_is_an_error_that_never_quotes_it(ws, tmp_path, monkeypatch):
    ws.write("graphbuild.toml", f'[cache]\ntrusted_keys = ["{SigningKey.generate().public.line()}"]\n')
    ws.write("pkg/BUILD.envs", 'genrule(name = "a", outs = ["a.out"], cmd = "echo a > $OUT")\n')
    secret = "c2VjcmV0IG1hdGVyaWFsIHRoYXQgaXMgbm90IGEga2V5IGF0IGFsbA=="
    (tmp_path / "bad.pem").write_text(secret + "\n")
    remote = ("--remote-cache", "oci://127.0.0.1:1/x")
    from_file = ws.gb("build", "//pkg:a", *remote, "--remote-cache-signing-key", str(tmp_path / "bad.pem"))
    assert from_file.exit_code == 2
    assert f"the signing key file {tmp_path / 'bad.pem'} (--remote-cache-signing-key) does not hold a usable key" \
        in from_file.stderr
    missing = ws.gb("build", "//pkg:a", *remote, "--remote-cache-signing-key", str(tmp_path / "none.pem"))
    assert missing.exit_code == 2 and "cannot read the signing key file" in missing.stderr
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY", secret)
    from_env = ws.gb("build", "//pkg:a", *remote)
    assert from_env.exit_code == 2 and "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY does not hold" in from_env.stderr
    for result in (from_file, missing, from_env):
        assert secret not in result.stderr + result.stdout and "Traceback" not in result.stderr
    assert "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY" not in os.environ  # taken out for the processes it starts
    # read-only: no key is needed, a bad one is not even read
    (tmp_path / "bad2.pem").write_text("x")
    readonly = ws.gb("build", "//pkg:a", *remote, "--remote-cache-readonly", "--remote-cache-signing-key",
                     str(tmp_path / "bad2.pem"))
    assert readonly.exit_code == 0, readonly.stderr


def test_the_key_file_path_comes_from_the_environment_too(ws, tmp_path, monkeypatch):
    key = SigningKey.generate()
    (tmp_path / "k.pem").write_bytes(key.pem())
    monkeypatch.setenv("GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE", str(tmp_path / "k.pem"))
    ws.write("graphbuild.toml", "[cache]\ntrusted_keys = []\n")
    ws.write("pkg/BUILD.envs", 'genrule(name = "a", outs = ["a.out"], cmd = "echo a > $OUT")\n')
    result = ws.gb("build", "//pkg:a", "--remote-cache", "oci://127.0.0.1:1/x")
    assert result.exit_code == 0, result.stderr
    # the key loaded (it is not trusted: said once), then the registry was found unreachable
    [not_trusted] = [w for w in result.stderr.splitlines() if "is not in [cache] trusted_keys" in w]
    assert key.public.key_id in not_trusted and key.public.line() in not_trusted
    assert "lists no [cache] trusted_keys" in result.stderr
    assert "unavailable" in result.stderr
