"""A node's manifest (its named input components) once its dependencies have outputs.

Outputs of other nodes enter by content digest only, never by node id: a node that reruns
and produces the same bytes leaves its dependents' keys unchanged (early cutoff), and two
targets declaring the same work get the same key.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from graphbuild.keys import Component, Manifest, component, digest
from graphbuild.nodes import FileRef, Located, Node, OutputRef, rebuild

DigestOf = Callable[[OutputRef], str]


@functools.lru_cache(maxsize=4096)
def _fixed(rule: str, executor: str, outputs: tuple[str, ...]) -> tuple[Component, Component, Component]:
    """Components many nodes share (same rule, executor, outputs): encoded once."""
    return component(rule), component(executor), component(list(outputs))


def after_key(outcome: Any) -> str:
    """What a node declared to run `after` another keys on: that node's key (it succeeded, or
    this one would not run). Not its result: a test that ran again under the same key and
    passed again, with other timings in its report, is the same fact, on every machine."""
    return outcome.key or outcome.output_digest or ""


def node_manifest(node: Node, output_digest: DigestOf, after_digest: Callable[[str], str]) -> Manifest:
    rule, executor, outputs = _fixed(f"{node.rule}@{node.rule_version}", node.executor.ident, node.outputs)
    manifest: Manifest = {"rule": rule, "executor": executor, "outputs": outputs}
    for name, value in node.inputs.items():
        location = node.locations.get(name)
        raw = value.value if isinstance(value, Located) else value
        if name.startswith("after:"):
            dep = after_digest(raw)
            manifest[name] = Component(dep, f"succeeded with key {dep[:16]}", None)
        elif isinstance(raw, list | tuple) and raw and all(isinstance(v, FileRef | OutputRef) for v in raw):
            for index, ref in enumerate(raw):
                sub = f"{name}[{ref.path if isinstance(ref, FileRef) else index}]"
                manifest[sub] = _ref_component(ref, output_digest, location)
        elif isinstance(raw, FileRef | OutputRef):
            manifest[name] = _ref_component(raw, output_digest, location)
        else:
            keyed = _keyable(raw, output_digest)
            manifest[name] = component(keyed, location)
            if isinstance(value, Located) and value.display is not None:
                manifest[name] = Component(manifest[name].digest, value.display, manifest[name].location)
    return manifest


def _ref_component(ref: FileRef | OutputRef, output_digest: DigestOf, location: Any) -> Component:
    if isinstance(ref, FileRef):
        value = f"file {ref.path} {ref.digest} {'x' if ref.executable else '-'}"
        # the mode is keyed, so it is shown: a chmod alone must not read as "no change"
        shown = f"{ref.path} sha256:{ref.digest[:16]} {'executable' if ref.executable else 'not executable'}"
        return Component(digest(value), shown, str(location) if location else None)
    sha = output_digest(ref)
    return Component(digest(f"output {sha}"), f"sha256:{sha[:16]} ({ref.node_id} {ref.name})",
                     str(location) if location else None)


def _keyable(value: Any, output_digest: DigestOf) -> Any:
    def leaf(item: Any) -> Any:
        if isinstance(item, FileRef):
            return {"path": item.path, "sha256": item.digest, "x": item.executable}
        if isinstance(item, OutputRef):
            return {"sha256": output_digest(item)}
        return item

    return rebuild(value, leaf)
