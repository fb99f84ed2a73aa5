"""Compressed layers, SBOMs and the documents a push writes, without a Docker engine.

The compressors and the OCI documents are pure functions, tested on bytes; the compression
nodes are tested through graphbuild on small environments over an empty base tarball (which
needs the package index for the layers, not the engine). `test_shipping.py` does the same
end to end through the real engine and registry.
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import random
import shutil
import subprocess
import sys
import tarfile
import threading
import types
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from graphbuild.cache import oci_media as media
from graphbuild.rules.oci import artifacts
from graphbuild.rules.oci.compress import Compression, compression_problem, write_gzip, write_zstd
from graphbuild.rules.python.sbom import SbomComponent, render

if TYPE_CHECKING:
    from conftest import Result, TestWorkspace

PY = f"{sys.version_info[0]}.{sys.version_info[1]}"


def ok(result: Result) -> Result:
    assert result.exit_code == 0, result.stderr + result.stdout
    return result


def sample(size: int, seed: int = 7) -> bytes:
    """Half text-like (compressible), half random (not): compressors must handle both."""
    rng = random.Random(seed)
    words = [bytes(rng.choice(b"abcdefghij ") for _ in range(rng.randint(2, 9))) for _ in range(500)]
    text = b" ".join(rng.choice(words) for _ in range(size // 10))[: size // 2]
    return text + rng.randbytes(size - len(text))


def gzipped(data: bytes, *, level: int = 6, threads: int = 2) -> bytes:
    out = io.BytesIO()
    write_gzip(io.BytesIO(data), out, level=level, threads=threads)
    return out.getvalue()


def zstded(data: bytes, *, level: int = 3, threads: int = 2) -> bytes:
    out = io.BytesIO()
    write_zstd(io.BytesIO(data), out, level=level, threads=threads, size=len(data))
    return out.getvalue()


# 1. the compressors: deterministic, standard, the same for any number of threads


@pytest.mark.parametrize("size", [0, 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 * (1 << 20) + 12345])
def test_gzip_is_the_same_bytes_for_any_number_of_threads_and_gunzip_reads_it(size):
    data = sample(size)
    one, four = gzipped(data, threads=1), gzipped(data, threads=4)
    assert one == four
    assert gzip.decompress(one) == data
    # the header: no file name, mtime 0, no extra flags at level 6, OS "unknown"
    assert one[:10] == b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"
    if shutil.which("gzip"):
        assert subprocess.run(["gzip", "-dc"], input=one, capture_output=True, check=True).stdout == data
    if size > 1 << 20:  # blocks share their dictionary: nearly as small as one stream
        assert len(one) <= len(gzip.compress(data, compresslevel=6, mtime=0)) * 1.01 + 64


def test_gzip_levels_change_the_bytes_and_are_marked_in_the_header():
    data = sample(300_000)
    fast, best = gzipped(data, level=1), gzipped(data, level=9)
    assert fast[8:9] == b"\x04" and best[8:9] == b"\x02"
    assert fast != best
    assert gzip.decompress(fast) == gzip.decompress(best) == data


def test_zstd_is_the_same_bytes_for_any_number_of_threads_and_zstd_reads_it():
    import zstandard

    data = sample(3 * (1 << 20) + 7)
    one, three = zstded(data, threads=1), zstded(data, threads=3)
    assert one == three
    assert zstandard.ZstdDecompressor().decompress(one) == data
    if shutil.which("zstd"):
        assert subprocess.run(["zstd", "-dc"], input=one, capture_output=True, check=True).stdout == data


def test_compression_settings_are_checked_with_what_is_allowed():
    assert Compression().level == 6 and Compression().media_type == media.LAYER_TAR_GZIP
    assert Compression("zstd").level == 3 and Compression("zstd").media_type == media.LAYER_TAR_ZSTD
    assert Compression("none").media_type == media.LAYER_TAR
    assert compression_problem("brotli", None) == (
        "layer_compression must be one of 'gzip', 'zstd', 'none', not 'brotli'")
    assert "between 1 and 9" in compression_problem("gzip", 12)
    assert "between 1 and 19" in compression_problem("zstd", 0)
    assert "needs a compression" in compression_problem("none", 3)
    assert compression_problem("zstd", 19) is None


# 2. the documents a push writes


def test_the_sbom_artifact_refers_to_the_image_and_the_fallback_index_keeps_other_referrers(tmp_path):
    image = media.canonical_json({"schemaVersion": 2, "layers": []})
    sbom = tmp_path / "sbom.json"
    sbom.write_text('{"bomFormat": "CycloneDX"}')
    artifact = artifacts.sbom_manifest(sbom, image)
    document = json.loads(artifact)
    assert document["artifactType"] == media.CYCLONEDX_JSON
    assert document["config"] == {"mediaType": media.EMPTY, "size": 2,
                                  "digest": "sha256:" + hashlib.sha256(b"{}").hexdigest()}
    assert document["subject"] == {"mediaType": media.MANIFEST, "digest": media.sha256_digest(image),
                                   "size": len(image)}
    assert document["layers"][0]["digest"] == media.sha256_digest(sbom.read_bytes())
    assert artifacts.fallback_tag(media.sha256_digest(image)) == "sha256-" + hashlib.sha256(image).hexdigest()

    first = artifacts.with_referrer(None, artifact)
    assert first is not None
    listed = json.loads(first)["manifests"]
    assert listed == [{"mediaType": media.MANIFEST, "digest": media.sha256_digest(artifact), "size": len(artifact),
                       "artifactType": media.CYCLONEDX_JSON}]
    assert artifacts.with_referrer(first, artifact) is None  # listed already: nothing to write
    signature = {"mediaType": media.MANIFEST, "digest": "sha256:" + "ab" * 32, "size": 10,
                 "artifactType": "application/vnd.dev.cosign.artifact.sig.v1+json"}
    theirs = media.canonical_json({"schemaVersion": 2, "mediaType": media.INDEX, "manifests": [signature]})
    merged = json.loads(artifacts.with_referrer(theirs, artifact) or b"")
    assert [m["digest"] for m in merged["manifests"]] == [signature["digest"], media.sha256_digest(artifact)]
    assert artifacts.with_referrer(b"<html>not json", artifact) == first  # garbage there: a new index


def test_the_release_index_is_recognised_only_for_what_graphbuild_tagged():
    manifest = media.canonical_json({"schemaVersion": 2, "layers": [1]})
    notes = {media.REVISION: "a" * 40, artifacts.TARGET_ANNOTATION: "//envs:a"}
    index = artifacts.release_index(manifest, architecture="amd64", annotations=notes)
    entry = json.loads(index)["manifests"][0]
    assert entry["platform"] == {"architecture": "amd64", "os": "linux"}
    assert artifacts.released_image(index, media.INDEX) == (media.sha256_digest(manifest), notes)
    assert artifacts.released_image(index, media.MANIFEST) is None
    foreign = artifacts.release_index(manifest, architecture="amd64", annotations={media.REVISION: "b" * 40})
    assert artifacts.released_image(foreign, media.INDEX) is None  # someone else's index: replaced, not kept
    assert artifacts.released_image(b"{", media.INDEX) is None


@pytest.mark.parametrize(("url", "public"), [
    ("https://user:s3cret@git.example.invalid/team/repo.git", "https://git.example.invalid/team/repo.git"),
    ("https://token@git.example.invalid/repo", "https://git.example.invalid/repo"),
    ("git@git.example.invalid:team/repo.git", "git@git.example.invalid:team/repo.git"),
    ("../.repos/lib.git", "../.repos/lib.git"),
    ("", ""),
])
def test_urls_lose_their_credentials(url, public):
    assert artifacts.public_url(url) == public


# 3. the SBOM document


def _components() -> list[SbomComponent]:
    return [
        SbomComponent(name="six", version="1.16.0", kind="pypi", sha256="1" * 64),
        SbomComponent(name="attrs", version="23.2.0", kind="pypi", sha256="2" * 64, depends_on=("six",)),
        SbomComponent(name="research-tools", version="0.1.0", kind="git", label="//envs:research_tools",
                      url="https://me:pw@git.example.invalid/research.git", commit="c" * 40),
    ]


def _render(components: list[SbomComponent], tmp_path: Path) -> dict[str, Any]:
    wheel = tmp_path / ("3" * 64)
    wheel.write_bytes(b"wheel")
    inputs = [{**c.as_input(), "wheel": wheel if c.kind != "pypi" else None} for c in components]
    return json.loads(render("envs/research", inputs, None))


def test_the_sbom_is_valid_cyclonedx_deterministic_and_names_what_it_lists(tmp_path):
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    document = _render(_components(), tmp_path)
    text = json.dumps(document)
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    assert _render(list(reversed(_components())), tmp_path) == document  # order of the input: no change
    by_name = {c["name"]: c for c in document["components"]}
    assert by_name["six"]["purl"] == "pkg:pypi/six@1.16.0"
    assert by_name["six"]["hashes"] == [{"alg": "SHA-256", "content": "1" * 64}]
    git = by_name["research-tools"]
    assert git["purl"].startswith("pkg:generic/research-tools@0.1.0?vcs_url=")
    assert "c" * 40 in git["purl"] and "pw" not in text and "me:" not in text
    assert git["hashes"] == [{"alg": "SHA-256", "content": "3" * 64}]
    assert {"ref": "attrs", "dependsOn": ["six"]} in document["dependencies"]
    # the image depends on what nothing else depends on (six is reached through attrs)
    assert {"ref": "image:envs/research", "dependsOn": ["attrs", "research-tools"]} in document["dependencies"]
    assert document["metadata"]["component"] == {"bom-ref": "image:envs/research", "name": "envs/research",
                                                 "type": "container"}
    assert document["metadata"]["timestamp"].startswith("1970-01-01")
    assert "layer" not in text  # which image layer holds a package is the plan's, not the SBOM's
    other = _render([*_components(), SbomComponent(name="idna", version="3.6", kind="pypi", sha256="4" * 64)],
                    tmp_path)
    assert other["serialNumber"] != document["serialNumber"]  # a serial number per content


def test_every_distribution_of_the_sbom_is_reached_from_the_image_even_in_a_dependency_cycle(tmp_path):
    cycle = [SbomComponent(name="a", version="1", kind="pypi", sha256="1" * 64, depends_on=("b",)),
             SbomComponent(name="b", version="1", kind="pypi", sha256="2" * 64, depends_on=("a", "b")),
             SbomComponent(name="c", version="1", kind="pypi", sha256="3" * 64, depends_on=("d",)),
             SbomComponent(name="d", version="1", kind="pypi", sha256="4" * 64)]
    document = _render(cycle, tmp_path)
    edges = {d["ref"]: d.get("dependsOn", []) for d in document["dependencies"]}
    reached, stack = set(), ["image:envs/research"]
    while stack:
        ref = stack.pop()
        if ref not in reached:
            reached.add(ref)
            stack.extend(edges.get(ref, []))
    assert reached == {"image:envs/research", "a", "b", "c", "d"}
    assert edges["image:envs/research"] == ["a", "c"]  # c's dependency d is not repeated there


# 4. the referrers API, where a registry has one (Distribution 2.8 here has not: see test_shipping)


class _ReferrersRegistry(http.server.BaseHTTPRequestHandler):
    """Just enough of a registry with the referrers API: blobs are accepted, a manifest with a
    `subject` is indexed (and says so with OCI-Subject), referrers are listed."""

    blobs: set[str] = set()
    manifests: dict[str, bytes] = {}

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        parts = self.path.split("?")[0].split("/")
        if self.path == "/v2/":
            return self._send(200, b"{}")
        if "referrers" in parts:
            digest = parts[-1]
            listed = [artifacts.descriptor(media.MANIFEST, data, artifactType=json.loads(data)["artifactType"])
                      for data in self.manifests.values()
                      if json.loads(data).get("subject", {}).get("digest") == digest]
            body = media.canonical_json({"schemaVersion": 2, "mediaType": media.INDEX, "manifests": listed})
            return self._send(200, body, {"Content-Type": media.INDEX})
        if "manifests" in parts and parts[-1] in self.manifests:
            return self._send(200, self.manifests[parts[-1]], {"Content-Type": media.MANIFEST})
        return self._send(404)

    def do_HEAD(self) -> None:
        self._send(200 if self.path.rsplit("/", 1)[-1] in self.blobs else 404)

    def do_POST(self) -> None:
        self._send(202, headers={"Location": "/v2/upload/1"})

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        if "/manifests/" in self.path:
            reference = self.path.rsplit("/", 1)[-1]
            self.manifests[reference] = body
            subject = json.loads(body).get("subject", {}).get("digest")
            return self._send(201, headers={"Docker-Content-Digest": media.sha256_digest(body),
                                            **({"OCI-Subject": subject} if subject else {})})
        self.blobs.add(self.path.split("digest=")[1])
        return self._send(201)


def test_with_a_referrers_api_the_sbom_is_pushed_without_a_fallback_tag(tmp_path):
    from graphbuild.cache.registry import Registry
    from graphbuild.rules.oci.push import _Counts, _push_sbom
    from graphbuild.rules.oci.reference import Reference

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ReferrersRegistry)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        image = media.canonical_json({"schemaVersion": 2, "layers": []})
        sbom = tmp_path / "blobs" / hashlib.sha256(b"{}\n").hexdigest()
        sbom.parent.mkdir()
        sbom.write_bytes(b"{}\n")
        scratch = tmp_path / "scratch"
        scratch.mkdir()
        ctx = types.SimpleNamespace(scratch=scratch, blob_root=None,
                                    state_dir=lambda name: (tmp_path / "state" / name))
        counts = _Counts()
        result = _push_sbom(ctx, Registry(host), Reference(host, "team/app"), sbom, image, counts)  # type: ignore[arg-type]
        assert result["referrers"] == "api"
        tag = artifacts.fallback_tag(media.sha256_digest(image))
        assert tag not in _ReferrersRegistry.manifests  # no fallback index written
        assert list(_ReferrersRegistry.manifests) == [result["digest"]]
        assert counts.sbom_bytes == 3 + 2  # the SBOM and the empty config
    finally:
        server.shutdown()


# 5. compression nodes: one per layer and algorithm, shared by environments, keyed by the tar


def with_empty_base(ws: TestWorkspace, body: str) -> None:
    (ws.root / "base").mkdir(parents=True, exist_ok=True)
    with tarfile.open(ws.root / "base/rootfs.tar", "w"):
        pass
    ws.write("envs/BUILD.envs", 'base_image(name = "base", tarball = "../base/rootfs.tar")\n' + body)


SHARED = f"""
py_layer(name = "core", requirements = ["six==1.16.0"])
py_layer(name = "extra", over = [":core"], requirements = ["{{pin}}"])
environment(name = "a", base = ":base", layers = [":core"], python = "{PY}")
environment(name = "b", base = ":base", layers = [":extra"], python = "{PY}")
environment(name = "z", base = ":base", layers = [":core"], python = "{PY}", layer_compression = "zstd")
environment(name = "n", base = ":base", layers = [":core"], python = "{PY}", layer_compression = "none")
"""


def _nodes(result: Result) -> dict[str, dict[str, Any]]:
    return {n["id"]: n for n in result.json["nodes"]}


def _manifest(ws: TestWorkspace, node: dict[str, Any]) -> dict[str, Any]:
    return json.loads((ws.cache / "blobs/sha256" / node["outputs"]["manifest.json"]).read_text())


@pytest.mark.network
def test_environments_share_compressed_layers_and_a_pin_change_recompresses_only_its_layer(ws):
    with_empty_base(ws, SHARED.format(pin="attrs==23.2.0"))
    ok(ws.gb("lock", "//envs/..."))
    first = _nodes(ok(ws.gb("build", "//envs/...", "--json")))
    # a node per package: six is core's, attrs extra's; each is a layer of its own here
    for name in ("compress.base", "compress.pkg.six", "compress.layer.venv"):
        statuses = {first[f"//envs:{env}#{name}"]["status"] for env in "ab"}
        assert statuses == {"ran", "cached"}, (name, statuses)  # one compression, two environments
    shared = first["//envs:b#compress.pkg.six"]
    assert shared["status"] == "ran" or shared["cached_from"] == "//envs:a#compress.pkg.six"
    assert first["//envs:z#compress.pkg.six"]["status"] == "ran"  # zstd: a blob of its own
    assert first["//envs:z#compress.pkg.six"]["outputs"] != first["//envs:a#compress.pkg.six"]["outputs"]
    assert not [nid for nid in first if nid.startswith("//envs:n#compress.")]  # "none": nothing to compress

    image = _manifest(ws, first["//envs:b#image"])
    config = json.loads((ws.cache / "blobs/sha256" / first["//envs:b#image"]["outputs"]["config.json"]).read_text())
    assert {layer["mediaType"] for layer in image["layers"]} == {media.LAYER_TAR_GZIP}
    # most shared first: six (in every environment), then attrs (b's alone)
    tars = [first[f"//envs:b#{n}"]["outputs"]["layer.tar"] for n in ("layer.venv", "pkg.six", "pkg.attrs")]
    assert config["rootfs"]["diff_ids"][1:] == [f"sha256:{t}" for t in tars]  # diff_ids: the tars' digests
    for layer, diff_id in zip(image["layers"], config["rootfs"]["diff_ids"], strict=True):
        blob = (ws.cache / "blobs/sha256" / layer["digest"].removeprefix("sha256:")).read_bytes()
        assert "sha256:" + hashlib.sha256(gzip.decompress(blob)).hexdigest() == diff_id
        assert layer["size"] == len(blob)
    assert {layer["mediaType"] for layer in _manifest(ws, first["//envs:z#image"])["layers"]} == {media.LAYER_TAR_ZSTD}
    plain = _manifest(ws, first["//envs:n#image"])
    assert {layer["mediaType"] for layer in plain["layers"]} == {media.LAYER_TAR}
    six_tar = first["//envs:n#pkg.six"]["outputs"]["layer.tar"]
    assert plain["layers"][2]["digest"] == f"sha256:{six_tar}"  # the tar itself is the blob

    with_empty_base(ws, SHARED.format(pin="attrs==24.2.0"))
    relocked = ok(ws.gb("build", "--relock", "//envs/...", "--json"))
    ran = {nid for nid, n in _nodes(relocked).items() if n["status"] == "ran" and n["phase"] != "lock"}
    assert ran == {"//envs:b#pkg.attrs", "//envs:b#compress.pkg.attrs", "//envs:b#image", "//envs:b#sbom",
                   "//envs:b#out"}


def test_an_unknown_compression_is_a_spec_error_at_its_line(ws):
    with_empty_base(ws, 'environment(name = "a", base = ":base",\n    layer_compression = "brotli")\n')
    result = ws.gb("build", "//envs:a")
    assert result.exit_code == 2
    assert "envs/BUILD.envs:2" in result.stderr or "envs/BUILD.envs:3" in result.stderr, result.stderr
    assert "layer_compression must be one of 'gzip', 'zstd', 'none', not 'brotli'" in result.stderr
    assert "Traceback" not in result.stderr
