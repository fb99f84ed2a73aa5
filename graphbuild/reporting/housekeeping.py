"""Renderings of `clean`, `cache gc` and `cache keygen`."""

from __future__ import annotations

import sys

from graphbuild.operations.housekeeping import CleanReport, GcReport, KeygenReport
from graphbuild.reporting.render import Rendered


def clean(report: CleanReport, *, quiet: bool) -> Rendered:
    return Rendered(report, lambda r: "" if quiet else f"cleaned {r.cache_dir} and {r.out_dir}/",
                    lambda r: {"cache_dir": str(r.cache_dir)})


def gc(report: GcReport, *, quiet: bool) -> Rendered:
    def text(r: GcReport) -> str:
        if quiet:
            return ""
        res = r.result
        return (f"evicted {res['evicted_results']} results and {res['deleted_blobs']} blobs "
                f"({res['freed_bytes']} bytes); {res['kept_bytes']} bytes in {res['kept_results']} "
                f"results remain (limit {r.limit})")

    return Rendered(report, text, lambda r: dict(r.result), command="cache gc")


def keygen(report: KeygenReport) -> Rendered:
    def text(r: KeygenReport) -> str:
        if r.private_key_file is not None:
            return (f"wrote the private key to {r.private_key_file} (mode 0600); keep it secret\n"
                    f"key id {r.key_id}; add its public key to graphbuild.toml:\n"
                    f"[cache]\ntrusted_keys = [\"{r.public_key}\"]")
        # the key alone on stdout (for a pipe or a CI variable); the rest on stderr
        sys.stderr.write(f"key id {r.key_id}; public key for [cache] trusted_keys in graphbuild.toml:\n"
                         f"  {r.public_key}\n")
        return (r.private_key_pem or "").rstrip("\n")

    def to_json(r: KeygenReport) -> dict[str, object]:
        key = {"private_key_file": str(r.private_key_file)} if r.private_key_file else \
            {"private_key": r.private_key_pem}
        return {**key, "public_key": r.public_key, "key_id": r.key_id}

    return Rendered(report, text, to_json, command="cache keygen")
