"""The SBOM of an environment's image: a CycloneDX JSON document made from the lock.

It lists every distribution the shipped image installs (not the test runner's): packages of
the index with their version, PURL (`pkg:pypi/name@version`) and the sha256 of the wheel
installed (for one built from an sdist, the built wheel's, and the sdist's as a property);
the environment's libraries with the digest of their wheel, and for a git library its
repository and commit. Dependencies between them come from the lock.

The document is a node's output keyed by exactly what it lists, so it is the same bytes for
the same content: its serial number is derived from that content, and its timestamp is the
image's `created` time (the epoch unless SOURCE_DATE_EPOCH says otherwise).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from uuid import UUID

from graphbuild.api import ActionFailed, ExecContext, OutputRef, executor
from graphbuild.rules.oci.artifacts import public_url

SBOM_OUTPUT = "sbom.cdx.json"


@dataclass(frozen=True)
class SbomComponent:
    """One distribution the image installs, as the SBOM lists it."""

    name: str
    version: str
    kind: Literal["pypi", "library", "git"]
    sha256: str = ""  # the locked wheel's (pypi)
    wheel: OutputRef | None = None  # a wheel built by a node (from an sdist, a library): its digest
    wheel_filename: OutputRef | None = None  # that wheel's file name (the version of a dynamic one)
    sdist_sha256: str = ""
    url: str = ""  # a git library's repository
    commit: str = ""
    label: str = ""  # a library's target
    depends_on: tuple[str, ...] = field(default=())

    def as_input(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "kind": self.kind, "sha256": self.sha256,
                "wheel": self.wheel, "wheel_filename": self.wheel_filename, "sdist_sha256": self.sdist_sha256,
                "url": public_url(self.url), "commit": self.commit, "label": self.label,
                "depends_on": sorted(self.depends_on)}


@executor("python.sbom", version=5)
def write_sbom(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `name` (the image), `components` (`SbomComponent.as_input()` each), `created`."""
    document = render(ctx.inputs["name"], ctx.inputs["components"], ctx.inputs.get("created"))
    ctx.out(SBOM_OUTPUT).write_text(document)
    count = len(ctx.inputs["components"])
    ctx.summarize(f"CycloneDX SBOM of {count} distributions")
    return {"components": count}


def render(name: str, components: list[dict[str, Any]], created: str | None) -> str:
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6

    listing = json.dumps(sorted(({k: (v.name if isinstance(v, Path) else v) for k, v in c.items()} for c in components),
                                key=lambda c: (c["name"], c["kind"])),
                         sort_keys=True).encode()  # blobs by digest, not by where this cache keeps them
    serial = UUID(bytes=hashlib.sha256(name.encode() + b"\0" + listing).digest()[:16], version=5)
    timestamp = datetime.strptime(created, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC) if created else (
        datetime(1970, 1, 1, tzinfo=UTC))
    image = Component(name=name, type=ComponentType.CONTAINER, bom_ref=f"image:{name}")
    bom = Bom(serial_number=serial, metadata=BomMetaData(timestamp=timestamp, component=image))
    by_name: dict[str, Component] = {}
    components = [_with_version(entry) for entry in components]
    for entry in components:
        sha256 = entry["sha256"] or (Path(entry["wheel"]).name if entry.get("wheel") else "")
        if not sha256:
            raise ActionFailed(f"no wheel digest for {entry['name']} {entry['version']}")
        properties = []
        if entry.get("sdist_sha256"):
            properties.append(Property(name="graphbuild:sdist-sha256", value=entry["sdist_sha256"]))
        if entry.get("label"):
            properties.append(Property(name="graphbuild:target", value=entry["label"]))
        if entry.get("commit"):
            properties.append(Property(name="graphbuild:commit", value=entry["commit"]))
        component = Component(
            name=entry["name"], version=entry["version"] or None, type=ComponentType.LIBRARY,
            purl=_purl(entry), bom_ref=_ref(entry), hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha256)],
            properties=properties, external_references=_references(entry))
        bom.components.add(component)
        by_name[entry["name"]] = component
    bom.register_dependency(image, [by_name[n] for n in _tops(components)])
    for entry in components:
        needed = [by_name[n] for n in entry.get("depends_on", []) if n in by_name]
        if needed:
            bom.register_dependency(by_name[entry["name"]], needed)
    # compact: the document is pushed beside the image after every change of what it lists,
    # and indentation made a third of its bytes
    return json.dumps(json.loads(JsonV1Dot6(bom).output_as_string()), separators=(",", ":")) + "\n"


def _tops(components: list[dict[str, Any]]) -> list[str]:
    """What the image itself depends on: the distributions nothing else in it depends on, then
    one of each cycle left unreached, so that every distribution is reached from the image
    (listing all of them there made a tenth of the document)."""
    edges = {c["name"]: [n for n in c.get("depends_on", []) if n != c["name"]] for c in components}
    needed = {n for targets in edges.values() for n in targets}
    tops = sorted(n for n in edges if n not in needed)
    reached: set[str] = set()
    for name in [*tops, *sorted(edges)]:
        if name in reached:
            continue
        if name not in tops:
            tops.append(name)  # in a cycle that nothing outside it depends on
        stack = [name]
        while stack:
            current = stack.pop()
            if current not in reached:
                reached.add(current)
                stack.extend(n for n in edges.get(current, []) if n in edges)
    return tops


def _with_version(entry: dict[str, Any]) -> dict[str, Any]:
    """A library whose version its build backend decides has it in its wheel's file name."""
    filename = entry.pop("wheel_filename", None)
    if entry["version"] or not filename:
        return entry
    from packaging.utils import InvalidWheelFilename, parse_wheel_filename

    try:
        version = str(parse_wheel_filename(Path(filename).read_text().strip())[1])
    except (OSError, InvalidWheelFilename):
        version = ""
    return {**entry, "version": version}


def _purl(entry: dict[str, Any]) -> Any:
    from packageurl import PackageURL

    if entry["kind"] == "pypi":
        return PackageURL(type="pypi", name=entry["name"], version=entry["version"] or None)
    if entry["kind"] == "git" and entry.get("url") and entry.get("commit"):
        # the package-url spec's qualifier for where a package's sources are
        return PackageURL(type="generic", name=entry["name"], version=entry["version"] or None,
                          qualifiers={"vcs_url": f"git+{entry['url']}@{entry['commit']}"})
    return None  # an in-repo library: known by its target and wheel digest, not by a registry


def _ref(entry: dict[str, Any]) -> str:
    """The distribution's name: one copy of each in an environment, so unique in the document
    (the image's own is `image:<name>`, and a distribution name has no colon). The PURL says the
    rest; a PURL as the reference is repeated in every dependency that names it."""
    return str(entry["name"])


def _references(entry: dict[str, Any]) -> list[Any]:
    from cyclonedx.model import ExternalReference, ExternalReferenceType, XsUri

    if entry["kind"] != "git" or not entry.get("url"):
        return []
    try:
        return [ExternalReference(type=ExternalReferenceType.VCS, url=XsUri(entry["url"]))]
    except ValueError:  # not a URI CycloneDX accepts (a relative path): the commit property remains
        return []
