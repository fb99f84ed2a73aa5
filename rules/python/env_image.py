"""The image side of an environment: image, test image, loading, in-image tests and the push.

Node by node:
  image        base layers + the environment's layers -> OCI config/manifest (build phase)
  image.test   the same plus the test-runner layer, for tests only (test phase)
  test.<lib>   each library's tests inside the test image, loaded by the first test that runs
               (test phase)
  load         the image loaded and tagged graphbuild/<package>/<name>:<digest> and :latest (run phase)
  push         the image to the registry, after every test passed (run phase)
"""

from __future__ import annotations

from typing import Any

from graphbuild.api import Field, Located, NodeHandle, OutputRef, Provider, RuleContext
from graphbuild.rules.oci import reference
from graphbuild.rules.oci.base_image import BaseImageInfo
from graphbuild.rules.oci.container import container_spec_for_tests
from graphbuild.rules.oci.docker_engine import load_image
from graphbuild.rules.oci.image import assemble_image, runtime_config
from graphbuild.rules.oci.push import push_image
from graphbuild.rules.python.image_tests import pytest_command, run_library_tests
from graphbuild.rules.python.layers import LAYER_FORMAT, build_layer, build_venv_layer


class ImageInfo(Provider):
    label: str
    manifest: OutputRef
    config: OutputRef
    index: OutputRef
    blobs: tuple[OutputRef, ...] = Field(description="every layer, base first")
    tests: tuple[str, ...] = Field(default=(), description="ids of the test nodes")
    files: tuple[Any, ...] = ()


def declare_image(ctx: RuleContext, attrs: Any, info: Any, base: BaseImageInfo, layers: list[NodeHandle],
                  runner: NodeHandle | None, sources: dict[str, dict[str, Any]], runner_closure: list[str]
                  ) -> ImageInfo:
    name = f"{ctx.package}/{ctx.label.name}".strip("/")
    env = image_env(attrs)
    # only what the image's content and identity determine: a relock that changes nothing the
    # image holds must give the same image digest
    labels = {"org.graphbuild.target": str(ctx.label), "org.graphbuild.layers": ",".join(info.layer_names)}
    base_input = {"label": base.label, "digest": base.digest, "env": list(base.env),
                  "layers": [dict(layer) for layer in base.layers]}
    layer_refs = [h.output("layer.tar") for h in layers]
    layer_files = [h.output("files.json") for h in layers]
    common = {"base": base_input, "env": env, "cmd": list(attrs.cmd), "labels": labels,
              "architecture": base.architecture}
    image = ctx.action("image", executor=assemble_image, outputs=["config.json", "manifest.json", "index.json"],
                       kind="oci.image", inputs={**common, "layers": layer_refs, "layer_names": list(info.layer_names),
                                                 "name": name},
                       unkeyed={"layer_files": layer_files})
    all_blobs = [layer["blob"] for layer in base.layers] + layer_refs
    test_nodes: list[NodeHandle] = []
    if info.libraries:
        test_layers = layer_refs + ([runner.output("layer.tar")] if runner else [])
        test_image = ctx.action(
            "image.test", executor=assemble_image, outputs=["config.json", "manifest.json", "index.json"],
            kind="oci.image", phase="test",
            inputs={**common, "layers": test_layers, "name": f"{name}-test",
                    "layer_names": [*info.layer_names, *(["layer.testrunner"] if runner else [])]},
            unkeyed={"layer_files": layer_files + ([runner.output("files.json")] if runner else [])})
        # The test image is loaded by the first test that runs in it: when every test result
        # comes from a cache, the Docker engine is not needed at all.
        where = {"image_config": test_image.output("config.json"), "image_index": test_image.output("index.json"),
                 "image_layers": [layer["blob"] for layer in base.layers] + test_layers,
                 "image_repository": f"graphbuild/{name}-test", "environment": str(ctx.label)}
        for library in info.libraries:
            test_nodes.append(_test_node(ctx, attrs, info, base, library, sources[library.label], runner_closure,
                                         test_image, where))
    ctx.action("load", executor=load_image, kind="docker.load", phase="run",
               inputs={"config": image.output("config.json"), "index": image.output("index.json"),
                       "layers": all_blobs, "repository": f"graphbuild/{name}"})
    if attrs.push:
        try:
            reference.destination(attrs.push, ctx.workspace_root)
        except reference.InvalidReference as err:
            raise ctx.error(f"push: {err}", attr="push", hint=err.hint) from None
        ctx.action("push", executor=push_image, kind="oci.push", phase="run", after=test_nodes,
                   inputs={"destination": ctx.located("push"), "manifest": image.output("manifest.json"),
                           "config": image.output("config.json"), "layers": all_blobs})
    return ImageInfo(label=str(ctx.label), manifest=image.output("manifest.json"), config=image.output("config.json"),
                     index=image.output("index.json"), blobs=tuple(all_blobs), tests=tuple(n.id for n in test_nodes))


def image_env(attrs: Any) -> dict[str, str]:
    """The environment's own variables of its image (the base image's come under them)."""
    return {"PATH": f"{attrs.prefix}/bin:$PATH", "VIRTUAL_ENV": attrs.prefix, "LANG": "C.UTF-8", **attrs.env}


def _test_node(ctx: RuleContext, attrs: Any, info: Any, base: BaseImageInfo, library: Any, source: dict[str, Any],
               runner_closure: list[str], test_image: NodeHandle, where: dict[str, Any]) -> NodeHandle:
    """A library's tests in the test image, keyed on everything that reaches the test process
    except the packages outside the library's closure (README: "what a test's key holds")."""
    command = list(library.test_command) or pytest_command(list(library.tests))
    inputs: dict[str, Any] = {
        **source,  # the test files (and the rest of the library's tree) staged for the tests
        "wheel": info.wheels[library.label]["wheel"],  # the bytes under test, not the sources they came from
        "tests": list(library.tests),
        "command": command,
        "timeout": ctx.located("test_timeout"),
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
        f"test.{short}", executor=run_library_tests, kind="python.test", phase="test",
        outputs=["junit.xml", "log.txt"],
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
