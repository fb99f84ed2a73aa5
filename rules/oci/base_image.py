"""base_image: the image environments are built on, from a rootfs tarball or a registry.

A registry reference is pinned at lock time: `baselock.<name>.json` records the manifest
digest (a tag is resolved then) and the layers it lists, so builds never ask a registry
what a tag means. The base's digest is part of the key of everything built on it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from typing import Any

from pydantic import model_validator

from graphbuild.api import (
    ActionFailed,
    Attrs,
    DefaultInfo,
    ExecContext,
    Field,
    OutputRef,
    Provider,
    RuleContext,
    SpecError,
    WorkspacePath,
    executor,
    media,
    rule,
)
from graphbuild.rules.oci import reference
from graphbuild.rules.oci.descriptors import ImageLayer


class BaseImageAttrs(Attrs):
    tarball: WorkspacePath | None = Field(
        default=None, description="A root filesystem tar of the workspace, written relative to the package "
        "('..' may go up to the workspace root, not above; symlinks must resolve inside the workspace).")
    ref: str | None = Field(default=None, description="A registry reference, read as Docker reads it "
                            "([HOST[:PORT]/]REPO[:TAG][@sha256:...]; no host means Docker Hub); pinned to a "
                            "digest by `graphbuild lock`.")
    env: dict[str, str] = Field(default={}, description="Environment variables of the base (tarball bases).")
    architecture: str = Field(default="amd64", description="The image architecture.")

    @model_validator(mode="after")
    def _one_source(self) -> BaseImageAttrs:
        if bool(self.tarball) == bool(self.ref):
            raise ValueError("give exactly one of tarball or ref")
        return self


class BaseImageInfo(Provider):
    label: str
    digest: str = Field(description="sha256 of the tarball, or the pinned manifest digest")
    layers: tuple[ImageLayer, ...] = Field(description="bottom first: the tarball's tar (uncompressed: the "
                                           "environment compresses it), or the pulled blobs")
    env: tuple[str, ...] = ()
    architecture: str = "amd64"


@rule(attrs=BaseImageAttrs, version=1)
def base_image(ctx: RuleContext, attrs: BaseImageAttrs) -> list[Provider]:
    """A base image for environments."""
    if attrs.tarball:
        tarball = ctx.file(attrs.tarball, attr="tarball", within="workspace")
        node = ctx.action("import", executor=import_tarball, inputs={"tarball": tarball}, outputs=["layer.tar"],
                          kind="base_image.import")
        tar = node.output("layer.tar")
        layer = ImageLayer(blob=tar, media_type=media.LAYER_TAR, tar=tar)
        env = tuple(f"{k}={v}" for k, v in attrs.env.items())
        return [BaseImageInfo(label=str(ctx.label), digest="sha256:" + tarball.digest, layers=(layer,), env=env,
                              architecture=attrs.architecture), DefaultInfo()]
    assert attrs.ref is not None
    try:
        reference.parse(attrs.ref)
    except reference.InvalidReference as err:
        raise ctx.error(f"ref: {err}", attr="ref", hint=err.hint) from None
    name = f"baselock.{ctx.label.name}.json"
    ctx.action("lock", executor=lock_base, phase="lock", kind="base_image.lock",
               inputs={"ref": attrs.ref, "lock_name": name, "architecture": attrs.architecture})
    if ctx.locking:
        return [DefaultInfo()]
    path = f"{ctx.package}/{name}".lstrip("/")
    relock = f"run 'graphbuild lock {ctx.label}' (or pass --relock)"
    if not (ctx.workspace_root / path).is_file():
        raise SpecError(f"{ctx.label} has no lock file {path}", location=ctx.attr_location("ref"), hint=relock)
    pinned = json.loads(ctx.read_text(name))
    if pinned.get("ref") != attrs.ref:
        raise SpecError(f"the lock of {ctx.label} ({path}) is for {pinned.get('ref')!r}, the spec says "
                        f"{attrs.ref!r}", location=ctx.attr_location("ref"), hint=relock)
    outputs = [f"layer{i}" for i in range(len(pinned["layers"]))]
    node = ctx.action("pull", executor=pull_base, outputs=outputs, kind="base_image.pull",
                      inputs={"ref": attrs.ref, "digest": pinned["digest"], "layers": pinned["layers"]})
    layers = tuple(_pulled_layer(node.output(out), layer["mediaType"], layer["diff_id"])
                   for out, layer in zip(outputs, pinned["layers"], strict=True))
    return [BaseImageInfo(label=str(ctx.label), digest=pinned["digest"], layers=layers, env=tuple(pinned["env"]),
                          architecture=attrs.architecture), DefaultInfo()]


def _pulled_layer(blob: OutputRef, media_type: str, diff_id: str) -> ImageLayer:
    """A layer as pulled, named by the OCI media type of the same bytes (Docker's names for
    them are older spellings); an uncompressed one is its own tar, compressed like any other."""
    media_type = {media.DOCKER_LAYER: media.LAYER_TAR, media.DOCKER_LAYER_GZIP: media.LAYER_TAR_GZIP}.get(
        media_type, media_type)
    if media_type == media.LAYER_TAR:
        return ImageLayer(blob=blob, media_type=media_type, tar=blob)
    return ImageLayer(blob=blob, media_type=media_type, diff_id=diff_id)


@executor("base_image.import", version=1)
def import_tarball(ctx: ExecContext) -> dict[str, Any]:
    shutil.copyfile(ctx.path("tarball"), ctx.out("layer.tar"))
    return {}


@executor("base_image.lock", version=3, cacheable=False)
def lock_base(ctx: ExecContext) -> dict[str, Any]:
    from graphbuild.api import Registry, RegistryError

    ref = _registry_ref(ctx)
    registry = Registry(ref.host)
    try:
        data, media_type, _ = registry.get_manifest(ref.repository, ref.target)
        manifest = json.loads(data)
        digest = media.sha256_digest(data)
        if media_type in (media.INDEX, media.DOCKER_LIST) or "manifests" in manifest:
            arch = ctx.inputs["architecture"]
            chosen = next((m for m in manifest["manifests"] if m.get("platform", {}).get("architecture") == arch
                           and m.get("platform", {}).get("os") == "linux"), None)
            if chosen is None:
                raise ActionFailed(f"{ref} has no linux/{arch} image", bad_input=True)
            digest = chosen["digest"]
            data, _, _ = registry.get_manifest(ref.repository, digest)
            manifest = json.loads(data)
        config = json.loads(b"".join(registry.blob_chunks(ref.repository, manifest["config"]["digest"])))
    except RegistryError as err:
        raise ActionFailed(f"cannot pin {ref}: {err}") from None
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    layers = [{"digest": layer["digest"], "size": layer["size"], "mediaType": layer["mediaType"], "diff_id": diff}
              for layer, diff in zip(manifest["layers"], diff_ids, strict=True)]
    document = {"ref": ctx.inputs["ref"], "digest": digest, "layers": layers,
                "env": config.get("config", {}).get("Env", [])}
    ctx.write_source(ctx.inputs["lock_name"], (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    written = ctx.inputs["ref"]
    shown = written if str(ref) == written else f"{written} ({ref})"
    ctx.summarize(f"{shown} -> {digest}")
    return {"digest": digest}


@executor("base_image.pull", version=2)
def pull_base(ctx: ExecContext) -> dict[str, Any]:
    from graphbuild.api import Registry, RegistryError

    ref = _registry_ref(ctx)
    registry = Registry(ref.host)
    for index, layer in enumerate(ctx.inputs["layers"]):
        dest = ctx.out(f"layer{index}")
        digest = hashlib.sha256()
        try:
            with open(dest, "wb") as out:
                for chunk in registry.blob_chunks(ref.repository, layer["digest"]):
                    digest.update(chunk)
                    out.write(chunk)
        except RegistryError as err:
            raise ActionFailed(f"cannot pull {ref}: {err}") from None
        if "sha256:" + digest.hexdigest() != layer["digest"]:
            raise ActionFailed(f"layer {layer['digest']} of {ref} arrived with another digest")
    return {}


def _registry_ref(ctx: ExecContext) -> reference.Reference:
    """The base's reference, as Docker reads it: one naming no registry is on Docker Hub."""
    try:
        return reference.parse(ctx.inputs["ref"])
    except reference.InvalidReference as err:
        raise ActionFailed(str(err), details=err.hint, bad_input=True) from None


__all__ = ["BaseImageInfo", "base_image"]
