"""A job image named by digest for `graphbuild ci gitlab --job-image` (the pipeline asks the OCI
rules: reading references the Docker way and asking registries are theirs)."""

from __future__ import annotations

from graphbuild.api import Registry, RegistryError, UsageError
from graphbuild.rules.oci.reference import InvalidReference, parse


def pinned_job_image(text: str) -> str:
    """The job image as jobs name it: by digest, so every job of the pipeline runs the same
    image whatever the tag names later. A tag is pinned now, through the registry (with the
    credentials graphbuild finds for it)."""
    try:
        ref = parse(text)
    except InvalidReference as err:
        raise UsageError(f"--job-image {text!r}: {err}", hint=err.hint) from None
    if ref.digest:
        return text
    hint = "push it first (`graphbuild run //:ci` in graphbuild's repository), or give REF@sha256:DIGEST"
    try:
        digest = Registry(ref.host).head_manifest(ref.repository, ref.target)
    except RegistryError as err:
        raise UsageError(f"--job-image {text}: cannot pin it to a digest: {err}", hint=hint) from None
    if not digest:
        raise UsageError(f"--job-image {text}: {ref} is not in its registry", hint=hint)
    return f"{text}@{digest}"
