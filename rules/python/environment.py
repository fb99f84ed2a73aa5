"""environment: a base, a stack of py_layers and libraries -> locked, content-addressed layers.

Analysis reads the environment's lock (`pylock.<name>.toml`) and declares one node per
layer: the venv skeleton, each py_layer's difference set, the libraries' own dependencies,
and one layer per library.  A layer's key is exactly its locked wheels, the Python and
platform, and the layer format; environments that lock a layer to the same wheels share it.
"""

from __future__ import annotations

from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion
from pydantic import field_validator, model_validator

from graphbuild.api import (
    Attrs,
    DefaultInfo,
    Field,
    FileRef,
    LabelAttr,
    Located,
    Location,
    NodeHandle,
    OutputRef,
    Provider,
    RuleContext,
    StaleLock,
    rule,
)
from graphbuild.rules.oci.base_image import BaseImageInfo
from graphbuild.rules.oci.compress import compression_problem
from graphbuild.rules.oci.container import DEFAULT_TEST_USER, Resources, check_user
from graphbuild.rules.python import lockfile, platforms
from graphbuild.rules.python.env_image import declare_image
from graphbuild.rules.python.fork import ForkableInfo, check_upgrade, inherit
from graphbuild.rules.python.layer_plan import DEFAULT_MAX_LAYERS, Package, Plan, plan_layers
from graphbuild.rules.python.layers import (
    DEFAULT_PREFIX,
    LAYER_FORMAT,
    LAYER_OUTPUTS,
    build_layer,
    build_venv_layer,
    merge_layers,
    wheel_line,
)
from graphbuild.rules.python.lockfile import LIBRARIES_GROUP, TEST_RUNNER_GROUP
from graphbuild.rules.python.locking import lock_environment
from graphbuild.rules.python.providers import PyLayerInfo, PyLibraryInfo
from graphbuild.rules.python.requirements import canonicalize_name, name_of
from graphbuild.rules.python.sbom import SbomComponent
from graphbuild.rules.python.wheels import wheel_from_git, wheel_from_sdist
from graphbuild.rules.python.workload import WorkloadInfo, resources_data
from graphbuild.rules.python.workspace_locks import EnvironmentLock, cached_plan, workspace_locks


class EnvironmentAttrs(Attrs):
    layers: list[LabelAttr] = Field(default=[], description="py_layer targets (their lower layers come along).")
    libraries: list[LabelAttr] = Field(default=[], description="py_library / git_library targets to install.")
    python: str = Field(default="3.11", description="The image's Python version (MAJOR.MINOR).")
    platform: str = Field(default="x86_64-manylinux_2_36", description="Wheel platform of the image.")
    prefix: str = Field(default=DEFAULT_PREFIX, description="Where the environment lives in the image.")
    interpreter: str = Field(default="/usr/bin/python3", description="The base image's Python interpreter.")
    bytecode: bool = Field(default=True, description="Ship hash-based .pyc files (faster imports, read-only "
                                                      "roots); see BENCHMARKS.md for the measurement.")
    base: LabelAttr | None = Field(default=None, description="base_image to build the image on; without "
                                   "one, only the layers are built (no image, no tests, no push).")
    push: str | None = Field(default=None, description="Where `graphbuild run` pushes the image once every test "
                             "passed: [HOST/]REPO[:TAG]; without HOST, the configured registry.")
    test_runner: list[str] = Field(default=["pytest>=8"], description="Requirements the tests need; locked "
                                   "with the environment, added to the test image only.")
    test_timeout: float = Field(default=600, description="Seconds a library's tests may take in the image.")
    env: dict[str, str] = Field(default={}, description="Environment variables of the image.")
    cmd: list[str] = Field(default=["python"], description="The image's default command.")
    resources: Resources = Field(default_factory=Resources, description="Limits of the containers the "
                                 "environment's tests and `graphbuild exec` workloads run in: "
                                 "{\"cpus\": 2, \"memory\": \"4g\", \"pids\": 512}; "
                                 "unset keys keep their defaults (memory 4g, pids 512, cpus unlimited), "
                                 "None lifts one.")
    layer_compression: str = Field(default="gzip", description="How the image's layers are compressed: \"gzip\" "
                                   "(read by every engine), \"zstd\" (smaller and faster; the OCI tar+zstd media "
                                   "type, which older engines cannot pull) or \"none\".")
    layer_compression_level: int | None = Field(default=None, description="The compression level (gzip 1-9, "
                                                "default 6; zstd 1-19, default 3).")
    fork: LabelAttr | None = Field(default=None, description="An environment this one copies: every attribute "
                                   "not set here is the forked one's (never push), and its lock is the forked lock "
                                   "with the `upgrade` packages moved forward; layers that do not change are shared.")
    upgrade: list[str] = Field(default=[], description="With fork: packages to move forward, as requirements "
                               "(\"numpy\": the newest the stack allows; \"pandas>=2.2\" replaces the forked "
                               "requirement on pandas).")
    max_layers: int = Field(default=DEFAULT_MAX_LAYERS, ge=2, le=120, description="The most layers the image "
                            "has of its own (the base's not counted): packages are planned into at most this many "
                            "layers, planned with every environment of the workspace (`graphbuild layers`).")
    test_user: str = Field(default=DEFAULT_TEST_USER, description="Who the tests run as: UID:GID (default "
                           "65534:65534, nobody, no capabilities), or \"root\" for tests that need it (uid 0 with the "
                           "engine's default capabilities).")

    @field_validator("upgrade")
    @classmethod
    def _upgrade(cls, value: list[str]) -> list[str]:
        return [check_upgrade(text) for text in value]

    @field_validator("test_user")
    @classmethod
    def _test_user(cls, value: str) -> str:
        return check_user(value)

    @model_validator(mode="after")
    def _compression(self) -> EnvironmentAttrs:
        problem = compression_problem(self.layer_compression, self.layer_compression_level)
        if problem:
            raise ValueError(problem)
        return self


class EnvironmentInfo(Provider):
    """What an image needs from an environment: its layers, bottom first, and its lock."""

    label: str
    layers: tuple[OutputRef, ...]
    layer_names: tuple[str, ...]
    python: str
    prefix: str
    lock_path: str
    lock_digest: str
    libraries: tuple[PyLibraryInfo, ...]
    packages: dict[str, dict] = Field(description="canonical name -> {version, sha256} of every locked package")
    closures: dict[str, list[str]] = Field(description="library label -> packages in its dependency closure")
    installed: dict[str, Any] = Field(default={}, description="canonical name -> what its layer installs (the "
                                      "locked wheel, or the wheel built from its sdist): the test nodes key on it")
    wheels: dict[str, dict] = Field(default={}, description="library label -> {'wheel', 'filename'} of its wheel")
    library_deps: dict[str, list[str]] = Field(default={}, description="library label -> the other libraries "
                                               "of the environment it needs, directly or not")
    layer_plan: tuple[dict, ...] = Field(default=(), description="the image layers planned for the packages "
                                         "(`graphbuild layers`): name, packages, environments, why")
    max_layers: int = DEFAULT_MAX_LAYERS


@rule(attrs=EnvironmentAttrs, version=1)
def environment(ctx: RuleContext, attrs: EnvironmentAttrs) -> list[Provider]:
    """A Python environment: locked as a whole, built as a stack of shared layers."""
    attrs, fork = inherit(ctx, attrs)
    forkable = ForkableInfo(label=str(ctx.label), attrs={k: getattr(attrs, k) for k in type(attrs).model_fields},
                            lock=f"{ctx.package}/{lockfile.lock_name(ctx.label.name)}".lstrip("/"))
    for check, attr in ((platforms.check_python(attrs.python), "python"),
                        (platforms.check_platform(attrs.platform), "platform")):
        if check:
            raise ctx.error(check, attr=attr)
    stack = _layer_stack(ctx, attrs)
    libraries = _libraries(ctx, attrs)
    spec, where = _spec(ctx, attrs, stack, libraries)
    if fork is not None:
        spec["fork"] = fork
    name = lockfile.lock_name(ctx.label.name)
    # the lines requirements are written on are for messages only: never in the key (a comment
    # added at the top of BUILD.envs changes no lock)
    ctx.action("lock", executor=lock_environment, phase="lock", kind="environment.lock",
               inputs={"spec": spec, "lock_name": name}, unkeyed={"where": where})
    if ctx.locking:
        return [forkable, DefaultInfo()]
    lock = _read_lock(ctx, name, spec, where, libraries)
    lock_file = ctx.file(name)
    common = {"python": attrs.python, "platform": attrs.platform, "format": LAYER_FORMAT,
              "prefix": attrs.prefix, "bytecode": attrs.bytecode}
    layers: list[NodeHandle] = [ctx.action(
        "layer.venv", executor=build_venv_layer, outputs=LAYER_OUTPUTS, kind="python.venv_layer",
        inputs={"python": attrs.python, "prefix": attrs.prefix, "interpreter": attrs.interpreter,
                "format": LAYER_FORMAT})]
    via = _requirement_of(lock, stack, libraries)
    installed: dict[str, Any] = {}
    package_nodes: dict[str, NodeHandle] = {}
    values = {package: _package_input(ctx, lock, package, attrs, via.get(package))
              for group in lock.layers for package in group["packages"]}
    # every wheel of the environment: what a package node downloads with its own when uv's
    # cache lacks it (one bulk download on a cold build; not part of any key)
    prefetch = sorted(line for value in values.values() if (line := wheel_line(value.value)))
    for package, value in sorted(values.items()):
        installed[package] = value
        # keyed by the wheel, the Python, platform and prefix (and bytecode, format): the same
        # package locked in two environments, or in two layers of one, is one node's work
        package_nodes[package] = ctx.action(
            f"pkg.{package}", executor=build_layer, outputs=LAYER_OUTPUTS, kind="python.package",
            inputs={**common, f"pkg:{package}": value}, unkeyed={"prefetch": prefetch},
            description=f"package {package} of {ctx.label}")
    plan = _plan(ctx, attrs, lock, lock_file)
    layer_names = ["layer.venv"]
    for planned in plan.of(str(ctx.label)):
        layer_names.append(planned.name)
        layers.append(_layer_node(ctx, planned.name, list(planned.packages), package_nodes))
    runner_packages = next((g["packages"] for g in lock.layers if g["label"] == TEST_RUNNER_GROUP), [])
    runner = _layer_node(ctx, "testrunner", list(runner_packages), package_nodes) if runner_packages else None
    sources: dict[str, Any] = {}
    wheels: dict[str, dict] = {}
    for library in libraries:
        if library.wheel:
            wheel = dict(library.wheel)
            sources[library.label] = {"sources": list(library.files), "source_root": library.root}
        else:
            wheel = _git_wheel(ctx, library, lock)
            sources[library.label] = {"sources": wheel.pop("source"), "source_root": ""}
        wheels[library.label] = wheel
        # keyed on the wheel's bytes alone: the same wheel under two target names is one layer
        layers.append(ctx.action(
            f"lib.{library.label.rsplit(':', 1)[-1]}", executor=build_layer, outputs=LAYER_OUTPUTS,
            kind="python.library_layer", inputs={**common, "pkg:library": wheel},
            description=f"layer of library {library.label} in {ctx.label}"))
        layer_names.append(f"lib.{library.label.rsplit(':', 1)[-1]}")
    closures = {lib.label: lock.closure(_requirement_names(lib, lock)) for lib in libraries}
    info = EnvironmentInfo(
        label=str(ctx.label), layers=tuple(h.output("layer.tar") for h in layers),
        layer_names=tuple(layer_names), python=attrs.python, prefix=attrs.prefix,
        lock_path=lock_file.path, lock_digest=lock_file.digest, libraries=tuple(libraries),
        packages={n: {"version": p.get("version", ""), "sha256": _wheel_sha(p, attrs)}
                  for n, p in lock.packages.items()},
        closures=closures, installed=installed, wheels=wheels, library_deps=_library_deps(libraries, lock),
        layer_plan=tuple(_describe(plan, str(ctx.label), lock, package_nodes)), max_layers=attrs.max_layers,
    )
    if attrs.base is None:
        return [info, forkable, DefaultInfo()]
    base = ctx.provider(attrs.base, BaseImageInfo, attr="base")
    runner_closure = lock.closure([name_of(r) for r in attrs.test_runner])
    components = _sbom_components(lock, installed, libraries, wheels)
    image = declare_image(ctx, attrs, info, base, layers, runner, sources, runner_closure, components)
    workload = WorkloadInfo(label=str(ctx.label), load_node=f"{ctx.label}#load",
                            resources=resources_data(attrs.resources))
    return [info, image, workload, forkable, DefaultInfo(files=image.files, trees=image.trees)]


def _layer_node(ctx: RuleContext, name: str, packages: list[str], package_nodes: dict[str, NodeHandle]
                ) -> NodeHandle:
    """The node whose `layer.tar` is the image layer holding `packages`: a package alone is its
    package node's tar itself; several are merged (keyed by their tars, so a layer is rebuilt
    exactly when one of its packages is)."""
    if len(packages) == 1:
        return package_nodes[packages[0]]
    parts = [{"tar": package_nodes[p].output("layer.tar"), "files": package_nodes[p].output("files.json")}
             for p in packages]
    return ctx.action(f"layer.{name}", executor=merge_layers, outputs=LAYER_OUTPUTS, kind="python.layer",
                      inputs={"parts": parts}, description=f"layer {name} of {ctx.label} ({len(packages)} packages)")


def _describe(plan: Plan, env: str, lock: lockfile.Lock, package_nodes: dict[str, NodeHandle]) -> list[dict]:
    """The plan of `env` (its label) as `graphbuild layers` shows it."""
    described = []
    for position, layer in enumerate(plan.of(env)):
        entry = layer.as_json()
        entry["position"] = position + 1
        entry["packages"] = [{"name": p, "version": lock.packages[p].get("version", ""),
                              "node": package_nodes[p].id} for p in layer.packages]
        entry["chain_shared"] = plan.chain_is_shared(env, layer)
        described.append(entry)
    return described


def _plan(ctx: RuleContext, attrs: EnvironmentAttrs, lock: lockfile.Lock, lock_file: FileRef) -> Plan:
    """The layer plan of every environment of the workspace (this one with its lock as read;
    see `workspace_locks.py` for which others, and why a broken one is left out)."""
    own = EnvironmentLock(str(ctx.label), lock_file.path, lock_file.digest, lock, attrs.max_layers)
    return cached_plan(workspace_locks(ctx, own), _make_plan)


def _make_plan(locks: list[EnvironmentLock]) -> Plan:
    return plan_layers({entry.label: planned_packages(entry.lock) for entry in locks},
                       reserved={entry.label: entry.reserved for entry in locks},
                       caps={entry.label: entry.max_layers for entry in locks})


def planned_packages(lock: lockfile.Lock) -> dict[str, Package]:
    """What a lock ships, as the planner sees it: each package's wheel for the lock's Python and
    platform, its size when the lock records it, and whether a requirement names it."""
    python, platform = lock.spec.get("python", ""), lock.spec.get("platform", "")
    named = {name_of(r) for layer in lock.spec.get("layers", []) for r in layer.get("requirements", [])}
    named |= {name_of(r) for lib in lock.spec.get("libraries", []) for r in lib.get("requirements", [])}
    found: dict[str, Package] = {}
    for group in lock.layers:
        if group["label"] == TEST_RUNNER_GROUP:
            continue
        for package in group["packages"]:
            entry = lock.packages[package]
            wheel = platforms.best_wheel(entry.get("wheels", []), python, platform)
            chosen = wheel or entry.get("sdist") or {}
            size = chosen.get("size")
            found[package] = Package(name=package, wheel=chosen.get("hashes", {}).get("sha256", ""),
                                     size=size if isinstance(size, int) else None, direct=package in named)
    return found


def _sbom_components(lock: lockfile.Lock, installed: dict[str, Any], libraries: list[PyLibraryInfo],
                     wheels: dict[str, dict]) -> list[SbomComponent]:
    """What the shipped image installs (the test runner's layer is not shipped), for its SBOM.
    Not which image layer holds each: that is the plan's choice, which another environment's
    lock can change, and the SBOM would change (and be pushed again) with nothing installed
    differently (`graphbuild layers` tells it)."""
    library_names = {lib.label: canonicalize_name(lock.libraries.get(lib.label, {}).get("name") or lib.name)
                     for lib in libraries}
    known = {n for group in lock.layers if group["label"] != TEST_RUNNER_GROUP for n in group["packages"]}
    known |= set(library_names.values())
    components = []
    for group in lock.layers:
        if group["label"] == TEST_RUNNER_GROUP:
            continue
        for package in group["packages"]:
            value = installed[package].value
            entry = lock.packages[package]
            depends = tuple(d for d in lock.dependencies(package) if d in known)
            if "sha256" in value:
                components.append(SbomComponent(name=package, version=value["version"], kind="pypi",
                                                sha256=value["sha256"], depends_on=depends))
            else:  # built from its sdist: the wheel installed is that build
                components.append(SbomComponent(
                    name=package, version=value["version"], kind="pypi", wheel=value["wheel"],
                    sdist_sha256=(entry.get("sdist") or {}).get("hashes", {}).get("sha256", ""), depends_on=depends))
    for library in libraries:
        locked = lock.libraries.get(library.label, {})
        depends = tuple(n for n in (name_of(r) for r in locked.get("requirements", [])) if n in known)
        components.append(SbomComponent(
            name=library_names[library.label], version=locked.get("version") or library.version or "",
            kind="git" if library.kind == "git" else "library", wheel=wheels[library.label]["wheel"],
            wheel_filename=wheels[library.label]["filename"], url=library.git.get("url", "") if library.git else "",
            commit=locked.get("commit") or "", label=library.label, depends_on=depends))
    return components


def _layer_stack(ctx: RuleContext, attrs: EnvironmentAttrs) -> list[tuple[str, tuple[Located, ...]]]:
    stack: list[tuple[str, tuple[Located, ...]]] = []
    for label in attrs.layers:
        for entry in ctx.provider(label, PyLayerInfo, attr="layers").stack:
            if entry[0] not in [s[0] for s in stack]:
                stack.append(entry)
    return stack


def _libraries(ctx: RuleContext, attrs: EnvironmentAttrs) -> list[PyLibraryInfo]:
    found: dict[str, PyLibraryInfo] = {}
    for label in attrs.libraries:
        info = ctx.provider(label, PyLibraryInfo, attr="libraries")
        found[info.label] = info
    for info in list(found.values()):
        for dep in info.deps:
            if dep not in found:
                raise ctx.error(f"library {info.label} needs {dep}; add it to libraries", attr="libraries")
    return list(found.values())


def _spec(ctx: RuleContext, attrs: EnvironmentAttrs, stack: list, libraries: list[PyLibraryInfo]
          ) -> tuple[dict[str, Any], dict[str, str]]:
    """What the lock is made from, normalised (a requirement list is a set), and where each
    requirement and library was written (for messages)."""
    where: dict[str, str] = {}
    layers = []
    for label, reqs in stack:
        layers.append({"label": label, "requirements": [r.value for r in reqs]})
        for r in reqs:
            where.setdefault(f"{label}|{r.value}", str(r.location))
    libs = []
    for lib in libraries:
        entry: dict[str, Any] = {"label": lib.label, "name": lib.name,
                                 "requirements": [r.value for r in lib.requirements]}
        if lib.git:
            entry["git"] = lib.git
        for r in lib.requirements:
            where.setdefault(f"{LIBRARIES_GROUP}|{r.value}", str(r.location))
        where[lib.label] = str(ctx.attr_location("libraries"))
        libs.append(entry)
    spec = {"python": attrs.python, "platform": attrs.platform, "layers": layers, "libraries": libs,
            "test_runner": list(attrs.test_runner) if attrs.base else []}
    for index, requirement in enumerate(attrs.test_runner):
        where.setdefault(f"{TEST_RUNNER_GROUP}|{requirement}", str(ctx.attr_location(f"test_runner[{index}]")))
    return lockfile.normalise_spec(spec), where


def _read_lock(ctx: RuleContext, name: str, spec: dict[str, Any], where: dict[str, str],
               libraries: list[PyLibraryInfo]) -> lockfile.Lock:
    relock = f"run 'graphbuild lock {ctx.label}' (or pass --relock)"
    path = f"{ctx.package}/{name}".lstrip("/")
    if not (ctx.workspace_root / path).is_file():
        raise StaleLock(f"{ctx.label} has no lock file {path}", location=ctx.attr_location(), hint=relock)
    try:
        lock = lockfile.parse(ctx.read_text(name))
    except lockfile.LockInvalid as err:
        first = err.problems[0]
        listed = "".join(f"\n  {path}:{p.line}: {p.message}" if p.line else f"\n  {path}: {p.message}"
                         for p in err.problems)
        count = f"{len(err.problems)} problems" if len(err.problems) > 1 else "1 problem"
        raise StaleLock(f"the lock of {ctx.label} is not valid ({count}); it was edited or damaged:{listed}",
                        location=Location(path, first.line),
                        hint=f"run 'graphbuild lock {ctx.label}' to write it again from the spec") from None
    # git libraries are compared by what the spec says (branch), not the commit the lock found;
    # sets (requirements, libraries) are compared as sets
    if lockfile.normalise_spec(lock.spec) != spec:
        changes = lockfile.spec_changes(lock.spec, spec, where)
        raise StaleLock(f"the lock of {ctx.label} ({path}) is out of date: " + "; ".join(changes),
                        location=ctx.attr_location(), hint=relock)
    for library in libraries:
        _check_library_version(ctx, lock, library, spec, path, relock)
    return lock


def _check_library_version(ctx: RuleContext, lock: lockfile.Lock, library: PyLibraryInfo, spec: dict[str, Any],
                           path: str, relock: str) -> None:
    """A library others depend on was checked against them at the version the lock recorded:
    a new version must still be accepted (by the spec's requirements naming it, which are
    checked here; a locked package that depends on it means the lock is checked again)."""
    locked = lock.libraries.get(library.label, {})
    if not locked.get("required_by") or not library.version or locked.get("version") in (None, library.version):
        return
    packages = [who for who in locked["required_by"] if who in lock.packages]
    named = [r for layer in spec["layers"] for r in layer["requirements"]]
    named += [r for lib in spec["libraries"] for r in lib["requirements"]] + list(spec["test_runner"])
    refused = [r for r in named if _refuses(r, library.name, library.version)]
    if packages or refused:
        who = ", ".join([*packages, *(repr(r) for r in refused)])
        raise StaleLock(f"the lock of {ctx.label} ({path}) is out of date: library {library.label} is version "
                        f"{library.version} now, the lock checked {locked['version']} against {who}",
                        location=ctx.attr_location("libraries"), hint=relock)


def _refuses(requirement: str, name: str, version: str) -> bool:
    try:
        parsed = Requirement(requirement)
        return name_of(requirement) == name and not parsed.specifier.contains(version, prereleases=True)
    except (InvalidRequirement, InvalidVersion):
        return False


def _requirement_of(lock: lockfile.Lock, stack: list, libraries: list[PyLibraryInfo]) -> dict[str, Located]:
    """For each locked package, the spec requirement that brought it in (for `why`)."""
    found: dict[str, Located] = {}
    sources = [r for _, reqs in stack for r in reqs] + [r for lib in libraries for r in lib.requirements]
    for requirement in sources:
        for package in lock.closure([name_of(requirement.value)]):
            found.setdefault(package, requirement)
    return found


def _package_input(ctx: RuleContext, lock: lockfile.Lock, package: str, attrs: EnvironmentAttrs,
                   requirement: Located | None) -> Located:
    entry = lock.packages[package]
    version = entry.get("version", "")
    wheel = platforms.best_wheel(entry.get("wheels", []), attrs.python, attrs.platform)
    location = requirement.location if requirement else None
    shown = f"{package} {version}" + (f" (via {requirement.value!r})" if requirement else "")
    if wheel is not None:
        value = {"name": package, "version": version, "url": wheel["url"], "sha256": wheel["hashes"]["sha256"]}
        return Located(value, location, display=shown)
    sdist = entry.get("sdist")
    if not sdist:
        raise ctx.error(f"locked package {package} {version} has no wheel for {attrs.platform} and no sdist",
                        hint="relock, or pick a version that publishes wheels for this platform")
    filename = sdist.get("name") or sdist["url"].rsplit("/", 1)[-1]
    node = ctx.action(f"sdist.{package}", executor=wheel_from_sdist, outputs=["wheel", "filename"],
                      kind="python.sdist_wheel",
                      inputs={"url": sdist["url"], "sha256": sdist["hashes"]["sha256"], "filename": filename})
    value = {"name": package, "version": version, "wheel": node.output("wheel"), "filename": node.output("filename")}
    return Located(value, location, display=shown + " (built from sdist)")


def _git_wheel(ctx: RuleContext, library: PyLibraryInfo, lock: lockfile.Lock) -> dict[str, OutputRef]:
    locked = lock.libraries.get(library.label)
    if not locked or not locked.get("commit"):
        raise ctx.error(f"the lock has no commit for {library.label}", attr="libraries",
                        hint=f"run 'graphbuild lock {ctx.label}'")
    node = ctx.action(
        f"git.{library.label.rsplit(':', 1)[-1]}", executor=wheel_from_git,
        outputs=["wheel", "filename", "source.tar"],
        kind="git_library.wheel",
        inputs={"url": library.git["url"], "subdir": library.git["subdir"],
                # where a relative url is relative to; an absolute one needs no package, and
                # keying it would split one commit's wheel between packages
                "package": library.label.split(":")[0].removeprefix("//")
                if library.git["url"].startswith(("./", "../")) else "",
                # the version the lock recorded (from git tags, for many): handed to the build
                "name": locked.get("name", ""), "version": locked.get("version", ""),
                "commit": Located(locked["commit"], ctx.attr_location("libraries"),
                                  display=f"{library.git['ref_kind']} {library.git['ref']} at {locked['commit']}")})
    return {"wheel": node.output("wheel"), "filename": node.output("filename"), "source": node.output("source.tar")}


def _requirement_names(library: PyLibraryInfo, lock: lockfile.Lock) -> list[str]:
    """A library's direct requirements: from its pyproject (in-repo) or as locked (git)."""
    if library.kind == "git":
        return [name_of(r) for r in lock.libraries.get(library.label, {}).get("requirements", [])]
    return [name_of(r.value) for r in library.requirements]


def _library_deps(libraries: list[PyLibraryInfo], lock: lockfile.Lock) -> dict[str, list[str]]:
    """For each library, the environment's other libraries it needs: its `deps`, and those its
    requirements name (featurize requiring textstats), followed transitively."""
    by_name = {canonicalize_name(lock.libraries.get(lib.label, {}).get("name") or lib.name): lib.label
               for lib in libraries}
    direct = {lib.label: {*lib.deps, *(by_name[n] for n in _requirement_names(lib, lock) if n in by_name)}
              for lib in libraries}
    found: dict[str, list[str]] = {}
    for label in direct:
        seen: set[str] = set()
        todo = sorted(direct[label])
        while todo:
            dep = todo.pop()
            if dep in seen or dep == label or dep not in direct:
                continue
            seen.add(dep)
            todo.extend(sorted(direct[dep]))
        found[label] = sorted(seen)
    return found


def _wheel_sha(entry: dict, attrs: EnvironmentAttrs) -> str:
    wheel = platforms.best_wheel(entry.get("wheels", []), attrs.python, attrs.platform)
    if wheel:
        return wheel["hashes"]["sha256"]
    return (entry.get("sdist") or {}).get("hashes", {}).get("sha256", "")
