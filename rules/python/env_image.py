"""The image side of an environment: image, test image, loading, in-image tests and the push.

Node by node:
  compress.*   each layer's tar (and the base's) compressed, keyed by the tar's digest (build phase)
  image        base layers + the environment's layers -> OCI config/manifest (build phase)
  out          the two small documents of the image's OCI layout and docker archive, which
               the build delivers to graphbuild-out/<package>/ (build phase)
  sbom         the CycloneDX SBOM of what the image installs, from the lock (build phase)
  image.test   the same plus the test-runner layer, for tests only (test phase)
  test.<lib>   each library's tests inside the test image, loaded by the first test that runs
               (test phase)
  load         the image loaded and tagged graphbuild/<package>/<name>:<digest> and :latest (run phase)
  push         the image and its SBOM to the registry, after every test passed (run phase)
"""

from __future__ import annotations

import os
from typing import Any

from graphbuild.api import Field, Located, NodeHandle, OutputRef, Provider, RuleContext, media
from graphbuild.rules.oci import reference
from graphbuild.rules.oci.base_image import BaseImageInfo
from graphbuild.rules.oci.compress import Compression, compressed_layer
from graphbuild.rules.oci.container import container_spec_for_tests
from graphbuild.rules.oci.descriptors import ImageLayer
from graphbuild.rules.oci.docker_engine import load_image
from graphbuild.rules.oci.image import assemble_image, created_time, runtime_config
from graphbuild.rules.oci.out_layout import image_trees, write_out_files
from graphbuild.rules.oci.push import push_image
from graphbuild.rules.python.image_tests import pytest_command, run_library_tests
from graphbuild.rules.python.layers import LAYER_FORMAT, LAYER_OUTPUTS, build_layer, build_venv_layer
from graphbuild.rules.python.sbom import SBOM_OUTPUT, SbomComponent, write_sbom


class ImageInfo(Provider):
    label: str
    manifest: OutputRef
    config: OutputRef
    index: OutputRef
    blobs: tuple[OutputRef, ...] = Field(description="every layer as the manifest lists it (compressed), base first")
    sbom: OutputRef | None = Field(default=None, description="the image's CycloneDX SBOM")
    tests: tuple[str, ...] = Field(default=(), description="ids of the test nodes")
    files: tuple[Any, ...] = ()
    test_image: dict[str, Any] = Field(default={}, description="how the test image is made (its layers, names, "
                                       "config): what a probe image adds a library to (see `declare_probe`)")
    trees: tuple[Any, ...] = Field(default=(), description="the OCI layout and docker archive in graphbuild-out/")


def declare_image(ctx: RuleContext, attrs: Any, info: Any, base: BaseImageInfo, layers: list[NodeHandle],
                  runner: NodeHandle | None, sources: dict[str, dict[str, Any]], runner_closure: list[str],
                  components: list[SbomComponent]) -> ImageInfo:
    name = f"{ctx.package}/{ctx.label.name}".strip("/")
    env = image_env(attrs)
    created = _created(ctx)
    # only what the image's content and identity determine: a relock that changes nothing the
    # image holds, or a commit that changes nothing in it, must give the same image digest (the
    # commit goes into the annotations of what is pushed, see push.py)
    labels = {"org.graphbuild.target": str(ctx.label), "org.graphbuild.layers": ",".join(info.layer_names),
              media.TITLE: name, **({media.CREATED: created} if created else {})}
    compression = Compression(attrs.layer_compression, attrs.layer_compression_level)
    base_names = [f"base {base.label}"] * len(base.layers)
    own_names = [f"graphbuild {n}" for n in info.layer_names]
    # the base's tar and each layer's tar compressed by a node of its own (keyed by the tar's
    # digest: shared by every environment with the same layer); a pulled base stays as pulled
    shipped = [compressed_layer(ctx, "base" if len(base.layers) == 1 else f"base{i}", layer.tar, compression)
               if layer.tar is not None else layer for i, layer in enumerate(base.layers)]
    shipped += [compressed_layer(ctx, layer_name, handle.output("layer.tar"), compression)
                for layer_name, handle in zip(info.layer_names, layers, strict=True)]
    listings = {layer_name: handle.output("files.json") for layer_name, handle in zip(info.layer_names, layers,
                                                                                       strict=True)}
    common = {"base_env": list(base.env), "env": env, "cmd": list(attrs.cmd), "labels": labels,
              "created": created, "architecture": base.architecture}
    image = ctx.action("image", executor=assemble_image, outputs=["config.json", "manifest.json", "index.json"],
                       kind="oci.image", inputs={**common, "layers": [layer.as_input() for layer in shipped],
                                                 "layer_names": base_names + own_names, "name": name},
                       unkeyed={"layer_files": listings})
    sbom = ctx.action("sbom", executor=write_sbom, outputs=[SBOM_OUTPUT], kind="python.sbom",
                      inputs={"name": name, "created": created,
                              "components": [component.as_input() for component in components]})
    test_nodes: list[NodeHandle] = []
    # never pushed, only loaded: the tars themselves, nothing to compress
    test_layers = [layer.uncompressed() for layer in base.layers]
    test_layers += [ImageLayer(blob=h.output("layer.tar"), media_type=media.LAYER_TAR, tar=h.output("layer.tar"))
                    for h in [*layers, *([runner] if runner else [])]]
    test_listings = {**listings, **({"layer.testrunner": runner.output("files.json")} if runner else {})}
    test_names = base_names + own_names + (["graphbuild layer.testrunner"] if runner else [])
    test_recipe = {"common": common, "layers": test_layers, "layer_names": test_names, "listings": test_listings,
                   "name": name, "runner_closure": list(runner_closure), "sources": sources}
    if info.libraries:
        test_image = ctx.action(
            "image.test", executor=assemble_image, outputs=["config.json", "manifest.json", "index.json"],
            kind="oci.image", phase="test",
            inputs={**common, "layers": [layer.as_input() for layer in test_layers], "name": f"{name}-test",
                    "layer_names": test_names},
            unkeyed={"layer_files": test_listings})
        # The test image is loaded by the first test that runs in it: when every test result
        # comes from a cache, the Docker engine is not needed at all.
        where = {"image_config": test_image.output("config.json"), "image_index": test_image.output("index.json"),
                 "image_layers": [layer.loadable for layer in test_layers],
                 "image_repository": f"graphbuild/{name}-test", "environment": str(ctx.label)}
        for library in info.libraries:
            test_nodes.append(_test_node(ctx, attrs, info, base, library, sources[library.label], runner_closure,
                                         test_image, where))
    # the image a user takes: an OCI layout in graphbuild-out/<package>/<name>/ (no engine needed)
    out = ctx.action("out", executor=write_out_files, kind="oci.out_files",
                     outputs=["oci-layout", "docker-manifest.json"],
                     inputs={"config": image.output("config.json"), "manifest": image.output("manifest.json"),
                             "tag": f"graphbuild/{name}:latest"})
    trees = image_trees(ctx.label.name, out=out, index=image.output("index.json"),
                        manifest=image.output("manifest.json"), config=image.output("config.json"),
                        blobs=[layer.blob for layer in shipped], tars=[layer.loadable for layer in shipped])
    ctx.action("load", executor=load_image, kind="docker.load", phase="run",
               inputs={"config": image.output("config.json"), "index": image.output("index.json"),
                       "layers": [layer.loadable for layer in shipped], "repository": f"graphbuild/{name}"},
               # the blobs the manifest lists, for the image's OCI layout in the cache
               unkeyed={"blobs": [layer.blob for layer in shipped]})
    if attrs.push:
        try:
            reference.destination(attrs.push, ctx.workspace_root)
        except reference.InvalidReference as err:
            raise ctx.error(f"push: {err}", attr="push", hint=err.hint) from None
        # the tests gate the push (a failed one skips it) but are not what it pushes: their
        # results hold timings and host names that differ on every run, so they are not keyed
        ctx.action("push", executor=push_image, kind="oci.push", phase="run", waits_for=test_nodes,
                   inputs={"destination": ctx.located("push"), "manifest": image.output("manifest.json"),
                           "config": image.output("config.json"), "layers": [layer.blob for layer in shipped],
                           "sbom": sbom.output(SBOM_OUTPUT), "title": name, "architecture": base.architecture})
    return ImageInfo(label=str(ctx.label), manifest=image.output("manifest.json"), config=image.output("config.json"),
                     index=image.output("index.json"), blobs=tuple(layer.blob for layer in shipped),
                     sbom=sbom.output(SBOM_OUTPUT), tests=tuple(n.id for n in test_nodes), test_image=test_recipe,
                     trees=trees)


def declare_probe(ctx: RuleContext, attrs: Any, info: Any, base: BaseImageInfo, image: ImageInfo,
                  libraries: list[Any], sources: dict[str, dict[str, Any]], wheels: dict[str, dict],
                  closures: dict[str, list[str]], library_deps: dict[str, list[str]], key: str) -> NodeHandle:
    """A *probe*: the environment's test image plus one layer per library in `libraries`
    (bottom first; the last is the one under test), and that library's tests in it. Never
    pushed, never loaded unless its test runs. Declared through `ctx` (the environment's
    context) by `graphbuild matrix`, with the same executors and the same test inputs as the
    environment's own library layers and tests: a probe whose library, closure and image
    inputs match a listed library's gets that test result from the cache.

    `key` names the probe's nodes (`probe.<key>.*`); `wheels`, `closures` and `library_deps`
    describe the added libraries as `EnvironmentInfo` describes listed ones."""
    recipe = image.test_image
    common_layer = {"python": attrs.python, "platform": attrs.platform, "format": LAYER_FORMAT,
                    "prefix": attrs.prefix, "bytecode": attrs.bytecode}
    added: list[NodeHandle] = []
    for library in libraries:
        short = library.label.rsplit(":", 1)[-1]
        added.append(ctx.action(
            f"probe.{key}.lib.{short}", executor=build_layer, outputs=LAYER_OUTPUTS, kind="python.library_layer",
            inputs={**common_layer, "pkg:library": dict(wheels[library.label])}, phase="test",
            description=f"probe layer of library {library.label} over {ctx.label}"))
    layers = [*recipe["layers"], *(ImageLayer(blob=h.output("layer.tar"), media_type=media.LAYER_TAR,
                                               tar=h.output("layer.tar")) for h in added)]
    names = [*recipe["layer_names"], *(f"graphbuild probe {h.id.split('#', 1)[1]}" for h in added)]
    listings = {**recipe["listings"], **{h.id.split("#", 1)[1]: h.output("files.json") for h in added}}
    name = f"{recipe['name']}-probe"
    probe_image = ctx.action(
        f"probe.{key}.image", executor=assemble_image, outputs=["config.json", "manifest.json", "index.json"],
        kind="oci.image", phase="test",
        inputs={**recipe["common"], "layers": [layer.as_input() for layer in layers], "name": name,
                "layer_names": names},
        unkeyed={"layer_files": listings})
    where = {"image_config": probe_image.output("config.json"), "image_index": probe_image.output("index.json"),
             "image_layers": [layer.loadable for layer in layers],
             "image_repository": f"graphbuild/{name}", "environment": f"{ctx.label} (probe)"}
    probe_info = info.model_copy(update={
        "wheels": {**info.wheels, **wheels}, "closures": {**info.closures, **closures},
        "library_deps": {**info.library_deps, **library_deps}})
    tested = libraries[-1]
    return _test_node(ctx, attrs, probe_info, base, tested, sources[tested.label], recipe["runner_closure"],
                      probe_image, where, name=f"probe.{key}.test")


def _created(ctx: RuleContext) -> str | None:
    """`SOURCE_DATE_EPOCH` as the image's creation time, when set (the reproducible-builds
    convention; unset, images are dated at the epoch, so that content alone decides the digest)."""
    try:
        return created_time(os.environ.get("SOURCE_DATE_EPOCH"))
    except ValueError as err:
        raise ctx.error(f"SOURCE_DATE_EPOCH: {err}", hint="a number of seconds since 1970-01-01 UTC, as "
                        "`git log -1 --format=%ct` prints") from None


def image_env(attrs: Any) -> dict[str, str]:
    """The environment's own variables of its image (the base image's come under them)."""
    return {"PATH": f"{attrs.prefix}/bin:$PATH", "VIRTUAL_ENV": attrs.prefix, "LANG": "C.UTF-8", **attrs.env}


def _test_node(ctx: RuleContext, attrs: Any, info: Any, base: BaseImageInfo, library: Any, source: dict[str, Any],
               runner_closure: list[str], test_image: NodeHandle, where: dict[str, Any], *,
               name: str | None = None) -> NodeHandle:
    """A library's tests in the test image, keyed on everything that reaches the test process
    except the packages outside the library's closure (README: "what a test's key holds")."""
    command = list(library.test_command) or pytest_command(list(library.tests))
    inputs: dict[str, Any] = {
        **source,  # the test files (and the rest of the library's tree) staged for the tests
        "wheel": info.wheels[library.label]["wheel"],  # the bytes under test, not the sources they came from
        "tests": list(library.tests),
        "command": command,
        "timeout": Located(attrs.test_timeout, ctx.attr_location("test_timeout")),  # a fork's own or its parent's
        "container": Located(container_spec_for_tests(attrs.resources, attrs.test_user),
                             ctx.attr_location("resources")),
        "runtime": Located(runtime_config(list(base.env), image_env(attrs)), ctx.attr_location("env")),
        "base": base.digest,
        "python": attrs.python,
        "prefix": attrs.prefix,
        "interpreter": attrs.interpreter,
        "bytecode": attrs.bytecode,
        "layer_format": f"{LAYER_FORMAT} {build_layer.ident} {build_venv_layer.ident}",
    }
    for package in info.closures.get(library.label, []):
        inputs[f"pkg:{package}"] = _installed(info, package)
    for package in runner_closure:
        inputs[f"runner:{package}"] = _installed(info, package)
    for dep in info.library_deps.get(library.label, []):
        inputs[f"libdep:{dep}"] = info.wheels[dep]["wheel"]
    if library.test_scope == "image":
        inputs["image"] = test_image.output("manifest.json")
    short = library.label.rsplit(":", 1)[-1]
    return ctx.action(
        name or f"test.{short}", executor=run_library_tests, kind="python.test", phase="test",
        outputs=["junit.xml", "log.txt"], reports=["junit.xml"],
        inputs=inputs,
        # the image it runs in and the environment it reports are not what the result depends on
        unkeyed=where,
    )


def _installed(info: Any, package: str) -> Any:
    """What the layers install for a package: the locked wheel (URL and sha256), or the wheel
    built from its sdist (by digest)."""
    found = info.installed.get(package)
    if found is not None:
        return found
    locked = info.packages[package]
    return f"{package} {locked['version']} {locked['sha256']}"
