"""What Python targets hand to the targets that use them."""

from __future__ import annotations

from graphbuild.api import Field, FileRef, Located, Provider


class PyLayerInfo(Provider):
    """A py_layer: its own requirements and the layers it sits on, bottom first."""

    label: str = Field(description="The layer's label.")
    requirements: tuple[Located, ...] = Field(description="PEP 508 strings, each with its BUILD.envs line.")
    stack: tuple[tuple[str, tuple[Located, ...]], ...] = Field(
        description="(label, requirements) of every layer under this one, then itself: bottom first.")


class PyLibraryInfo(Provider):
    """A library installed into environments as its own layer, its tests run in them."""

    label: str
    name: str = Field(description="Distribution name (from pyproject.toml for in-repo libraries).")
    kind: str = Field(description="'local' (in the workspace) or 'git'.")
    version: str = Field(default="", description="Version from pyproject.toml (local, when not dynamic).")
    requires_python: str = Field(default="", description="`requires-python` of pyproject.toml (local libraries).")
    requirements: tuple[Located, ...] = Field(default=(), description="Declared dependencies (local libraries).")
    files: tuple[FileRef, ...] = Field(default=(), description="Source files, .gitignore respected (local).")
    root: str = Field(default="", description="Workspace path of the library's directory (local).")
    tests: tuple[str, ...] = Field(default=(), description="Test paths relative to the library root.")
    test_command: tuple[str, ...] = Field(default=(), description="Command running the tests; empty: pytest.")
    test_scope: str = Field(default="closure", description="'closure' or 'image': what a test result is keyed on.")
    wheel: dict = Field(default={}, description="{'wheel': OutputRef, 'filename': OutputRef} (local libraries).")
    deps: tuple[str, ...] = Field(default=(), description="Labels of the in-repo libraries it needs.")
    git: dict = Field(default={}, description="url, ref_kind, ref, subdir (git libraries).")
