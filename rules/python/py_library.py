"""py_library and git_library: libraries installed into environments, each as its own layer."""

from __future__ import annotations

import tomllib
from typing import Literal

from pydantic import model_validator

from graphbuild.api import Attrs, Field, LabelAttr, Located, Location, RelativeDir, RelativePath, RuleContext, rule
from graphbuild.rules.python import requirements
from graphbuild.rules.python.providers import PyLibraryInfo
from graphbuild.rules.python.sources import library_files
from graphbuild.rules.python.wheels import wheel_from_workspace


class _TestAttrs(Attrs):
    tests: list[RelativePath] = Field(default=["tests"], description="Test files or directories, relative to the "
                                      "library (no '..').")
    test_command: list[str] = Field(default=[], description="Command running the tests inside the image; "
                                    "default: python -m pytest TESTS.")
    test_scope: Literal["closure", "image"] = Field(
        default="closure", description="What a test result is keyed on: the library's dependency closure "
        "(shared by environments that agree on it) or the whole image.")


class PyLibraryAttrs(_TestAttrs):
    deps: list[LabelAttr] = Field(default=[], description="In-repo libraries this one imports.")


@rule(attrs=PyLibraryAttrs, version=1)
def py_library(ctx: RuleContext, attrs: PyLibraryAttrs) -> PyLibraryInfo:
    """A library of the workspace: the directory of this BUILD.envs, with a pyproject.toml."""
    pyproject_path = "pyproject.toml"
    text = ctx.read_text(pyproject_path)
    where = Location(f"{ctx.package}/{pyproject_path}".lstrip("/"))
    try:
        project = tomllib.loads(text).get("project", {})
    except tomllib.TOMLDecodeError as err:
        raise ctx.error(f"{where.path}: invalid TOML: {err}") from None
    if "name" not in project:
        raise ctx.error(f"{where.path} has no [project] name", hint="py_library needs a PEP 621 pyproject.toml")
    reqs = []
    for text_req in project.get("dependencies", []):
        line = next((i + 1 for i, line in enumerate(text.splitlines()) if text_req in line), 0)
        loc = Location(where.path, line)
        requirements.parse(text_req, loc, owner=f"py_library '{ctx.label.name}'")
        reqs.append(Located(text_req, loc))
    root = ctx.workspace_root / ctx.package
    files = tuple(ctx.file(p.relative_to(root).as_posix()) for p in library_files(ctx.workspace_root, ctx.package))
    wheel = ctx.action("wheel", executor=wheel_from_workspace,
                       inputs={"files": list(files), "root": ctx.package}, outputs=["wheel", "filename"],
                       kind="py_library.wheel")
    return PyLibraryInfo(
        label=str(ctx.label), name=requirements.canonicalize_name(project["name"]), kind="local",
        version=str(project.get("version", "")) if "version" not in project.get("dynamic", []) else "",
        requires_python=str(project.get("requires-python", "")), requirements=tuple(reqs), files=files,
        root=ctx.package, tests=tuple(attrs.tests),
        test_command=tuple(attrs.test_command), test_scope=attrs.test_scope,
        wheel={"wheel": wheel.output("wheel"), "filename": wheel.output("filename")},
        deps=tuple(str(d) for d in attrs.deps),
    )


class GitLibraryAttrs(_TestAttrs):
    url: str = Field(description="Repository URL (https://, ssh, or file:// for a local repository).")
    branch: str | None = Field(default=None, description="Follow this branch (resolved to a commit at lock time).")
    tag: str | None = Field(default=None, description="Use this tag.")
    commit: str | None = Field(default=None, description="Use exactly this commit.")
    subdir: RelativeDir = Field(default="", description="Directory of the library inside the repository (no '..').")

    @model_validator(mode="after")
    def _one_ref(self) -> GitLibraryAttrs:
        given = [k for k in ("branch", "tag", "commit") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(f"give exactly one of branch, tag or commit (got {', '.join(given) or 'none'})")
        return self


@rule(attrs=GitLibraryAttrs, version=1)
def git_library(ctx: RuleContext, attrs: GitLibraryAttrs) -> PyLibraryInfo:
    """A library from a git repository we don't own; its ref is pinned to a commit by the lock."""
    kind = "branch" if attrs.branch else "tag" if attrs.tag else "commit"
    ref = attrs.branch or attrs.tag or attrs.commit or ""
    return PyLibraryInfo(
        label=str(ctx.label), name=ctx.label.name, kind="git", tests=tuple(attrs.tests),
        test_command=tuple(attrs.test_command), test_scope=attrs.test_scope,
        git={"url": attrs.url, "ref_kind": kind, "ref": ref, "subdir": attrs.subdir.strip("/")},
    )
