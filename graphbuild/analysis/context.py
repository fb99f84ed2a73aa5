"""`RuleContext`: what a rule implementation sees and the only way it declares nodes."""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from graphbuild.errors import Location, SpecError, did_you_mean
from graphbuild.labels import Label
from graphbuild.nodes import LOCK_PHASE, PHASES, Executor, FileRef, Located, Node, OutputRef, iter_refs, rebuild
from graphbuild.rule import Attrs, DefaultInfo, Provider

if TYPE_CHECKING:
    from graphbuild.loading.loader import Target

P = TypeVar("P", bound=Provider)


@dataclass(frozen=True)
class NodeHandle:
    """A declared node, as seen by the rule that declared it."""

    id: str
    outputs: tuple[str, ...]

    def output(self, name: str) -> OutputRef:
        if name not in self.outputs:
            raise SpecError(f"node {self.id} declares no output '{name}' (it has {', '.join(self.outputs)})")
        return OutputRef(self.id, name)


def plain(value: Any) -> Any:
    """Attribute values as JSON data (labels as strings), for keys and display."""
    return rebuild(value, _label_as_text)


def _label_as_text(value: Any) -> Any:
    return str(value) if isinstance(value, Label) else value


@dataclass(frozen=True)
class DeclaredTarget:
    """A target declared somewhere in the workspace, as its BUILD.envs wrote it (not analysed)."""

    label: Label
    attrs: Attrs
    location: Location


class RuleContext:
    def __init__(self, target: Target, providers: Mapping[Label, Mapping[type, Provider]],
                 workspace_root: Path, digest_file: Callable[[Path], str], *, locking: bool = False,
                 real_roots: Sequence[Path] = (), real_dirs: dict[str, str] | None = None,
                 declared: Callable[[str], tuple[DeclaredTarget, ...]] | None = None):
        self.target = target
        #: True while `graphbuild lock` analyses: lock files may be missing or stale, since
        #: the lock nodes are about to rewrite them.
        self.locking = locking
        self._providers = providers
        self._root = workspace_root
        self._digest_file = digest_file
        #: Where the workspace's files may really be, symlinks followed: the workspace root
        #: resolved, and for `affected`'s checkout of an old revision, the working tree whose
        #: ignored files are linked into it.
        self._real_roots = tuple(str(r).rstrip("/") for r in (real_roots or (workspace_root.resolve(),)))
        #: directory -> its real path, shared by one analysis (never across commands: links change)
        self._real_dirs = real_dirs if real_dirs is not None else {}
        self._declared = declared
        self.nodes: list[Node] = []

    # -- what the target is ---------------------------------------------------------------

    @property
    def label(self) -> Label:
        return self.target.label

    @property
    def package(self) -> str:
        return self.target.label.package

    @property
    def attrs(self) -> Attrs:
        return self.target.attrs

    @property
    def workspace_root(self) -> Path:
        return self._root

    def attr_location(self, attr: str | None = None) -> Location:
        return self.target.attr_location(attr) if attr else self.target.location

    def located(self, attr: str) -> Located:
        """An attribute's value with the line it was written on (for keys that `why` explains)."""
        return Located(plain(getattr(self.attrs, attr)), self.attr_location(attr))

    def error(self, message: str, *, attr: str | None = None, hint: str | None = None) -> SpecError:
        """A spec error located at the attribute (or the target); the caller raises it."""
        return SpecError(f"{self.target.rule.name} '{self.label.name}': {message}",
                         location=self.attr_location(attr), hint=hint)

    # -- dependencies -----------------------------------------------------------------------

    def providers(self, label: Label) -> Mapping[type, Provider]:
        return self._providers[label]

    def provider(self, label: Label, kind: type[P], *, attr: str | None = None) -> P:
        found = self._providers[label].get(kind)
        if found is None:
            raise self.error(f"{label} does not provide {kind.__name__} (it is a "
                             f"'{self._kind_of(label)}' target)", attr=attr)
        return found  # type: ignore[return-value]

    def _kind_of(self, label: Label) -> str:
        info = self._providers[label].get(_TargetKind)
        return info.rule if isinstance(info, _TargetKind) else "?"

    def workspace_targets(self, rule: str) -> tuple[DeclaredTarget, ...]:
        """Every target of rule `rule` declared in the workspace: in the packages `//...` names
        (the directories graphbuild.toml ignores left out), sorted by label, this target among
        them. A package whose BUILD.envs does not load is left out, not an error here (it is
        one where that package is asked for). What they declare, not what they provide: no
        dependency on them is made, and reading their files is up to the rule (`file(...,
        within="workspace")`)."""
        if self._declared is None:
            return ()
        return self._declared(rule)

    # -- files ------------------------------------------------------------------------------

    def file(self, path: str, *, attr: str | None = None,
             within: Literal["package", "workspace"] = "package") -> FileRef:
        """A file of this target's package (or, `within="workspace"`, of the workspace: `path`
        is still relative to the package and may go up with `..`), keyed by content.

        The path is resolved following symlinks: one that lands outside the package (or the
        workspace) is a spec error, so no attribute can make a build read `/etc/shadow`."""
        what = f"{attr}: " if attr else ""
        in_package = within == "package"
        scope = f"package //{self.package}" if in_package else "the workspace"
        outside_hint = ("a target reads only files of its own package: pass another package's files by label "
                        "(a filegroup)" if in_package else "graphbuild reads no file outside the workspace")
        if not isinstance(path, str) or not path or "\0" in path or path.startswith("/"):
            raise self.error(f"{what}{path!r} is not a relative path", attr=attr, hint=outside_hint)
        rel = posixpath.normpath(posixpath.join(self.package, path))
        if in_package and self.package:
            inside = rel.startswith(f"{self.package}/")
        else:
            inside = rel not in (".", "..") and not rel.startswith("../")
        if not inside:
            raise self.error(f"{what}'{path}' is outside {scope}", attr=attr, hint=outside_hint)
        abs_path = self._root / rel
        # every symlink on the way followed, then checked: a link out of the package is refused
        try:
            st = abs_path.lstat()
        except OSError:
            st = None
        real = self._real_path(abs_path, st)
        inside_real = any(real.startswith(f"{base}/{self.package}/" if in_package and self.package else f"{base}/")
                          for base in self._real_roots)
        if not inside_real:
            raise self.error(
                f"{what}'{path}' resolves to {real}, outside {scope} (symlinks are followed)", attr=attr,
                hint=f"put the file itself, not a symlink to it, in //{self.package}" if in_package else
                "graphbuild reads no file outside the workspace: hard-link or copy the file into it")
        if st is not None and stat.S_ISLNK(st.st_mode):
            try:
                st = abs_path.stat()
            except OSError:
                st = None
        if st is None or not stat.S_ISREG(st.st_mode):
            siblings = [p.name for p in abs_path.parent.glob("*") if p.is_file()] if abs_path.parent.is_dir() else []
            raise self.error(f"{what}no file '{path}' in {scope}",
                             attr=attr, hint=did_you_mean(Path(path).name, siblings))
        return FileRef(rel, self._digest_file(abs_path), executable=bool(st.st_mode & 0o111))

    def _real_path(self, path: Path, st: os.stat_result | None) -> str:
        """`path` with every symlink resolved; a plain file's directory is resolved once per analysis."""
        text = str(path)
        if st is None or stat.S_ISLNK(st.st_mode):
            return os.path.realpath(text)
        parent, _, name = text.rpartition("/")
        real_dir = self._real_dirs.get(parent)
        if real_dir is None:
            real_dir = self._real_dirs[parent] = os.path.realpath(parent)
        return f"{real_dir}/{name}"

    def read_text(self, path: str, *, attr: str | None = None) -> str:
        """Read a declared input of the package during analysis (a lock file, say)."""
        self.file(path, attr=attr)
        return (self._root / self.package / path).read_text()

    def sources(self, values: Iterable[Label | str], *, attr: str) -> list[FileRef | OutputRef]:
        """Files named by a `list[Source]` attribute: package files, or the files of other targets."""
        refs: list[FileRef | OutputRef] = []
        for value in values:
            if isinstance(value, Label):
                refs.extend(self.provider(value, DefaultInfo, attr=attr).files)
            else:
                refs.append(self.file(value, attr=attr))
        return refs

    # -- nodes ------------------------------------------------------------------------------

    def action(self, name: str, *, executor: Executor, inputs: Mapping[str, Any] | None = None,
               outputs: Sequence[str] = (), attrs: Sequence[str] = (), after: Sequence[NodeHandle] = (),
               phase: str = "build", kind: str | None = None, description: str = "",
               unkeyed: Mapping[str, Any] | None = None, waits_for: Sequence[NodeHandle] = (),
               reports: Sequence[str] = ()) -> NodeHandle:
        """Declare a node. Its key will hash `inputs`, the listed `attrs` (with their lines),
        the digests of every output it references and of the nodes it runs `after`.

        `unkeyed` values reach the executor but not the key: only for what cannot change the
        result (where it runs). Outputs they reference still run first, and so do `waits_for`
        nodes (ordering only: their results are not part of the key, but one that fails still
        skips this node). `reports` names the outputs that are JUnit XML test reports
        (`--junit-dir` collects them)."""
        node_id = f"{self.label}#{name}"
        self._check_outputs(name, outputs)
        if not_declared := [r for r in reports if r not in outputs]:
            raise self.error(f"node '{name}': report {not_declared[0]!r} is not one of its outputs")
        if any(n.id == node_id for n in self.nodes):
            raise self.error(f"declares two nodes named '{name}'")
        if phase not in (*PHASES, LOCK_PHASE):
            raise self.error(f"node '{name}': phase must be one of {', '.join((*PHASES, LOCK_PHASE))}")
        all_inputs: dict[str, Any] = {a: self.located(a) for a in attrs}
        all_inputs.update(inputs or {})
        deps = dict.fromkeys(ref.node_id for ref in iter_refs([all_inputs, unkeyed or {}])
                             if isinstance(ref, OutputRef))
        for handle in after:
            all_inputs[f"after:{handle.id}"] = handle.id
            deps[handle.id] = None
        for handle in waits_for:
            deps[handle.id] = None
        locations = {k: v.location for k, v in all_inputs.items() if isinstance(v, Located) and v.location}
        node = Node(
            id=node_id,
            label=self.label,
            kind=kind or f"{self.target.rule.name}.{name}",
            rule=self.target.rule.name,
            rule_version=self.target.rule.version,
            executor=executor,
            inputs=MappingProxyType(all_inputs),
            outputs=tuple(outputs),
            deps=tuple(deps),
            phase=phase,
            locations=MappingProxyType(locations),
            unkeyed=MappingProxyType(dict(unkeyed or {})),
            description=description or f"{name} {self.label}",
            reports=tuple(reports),
        )
        self.nodes.append(node)
        return NodeHandle(node_id, node.outputs)


    def _check_outputs(self, name: str, outputs: Sequence[str]) -> None:
        """Output names are files under the node's output directory, and later under
        graphbuild-out/<package>/: relative, normal, distinct, none inside another."""
        nested = False
        for out in outputs:
            if isinstance(out, str) and out and "/" not in out and out not in (".", "..") and "\0" not in out:
                continue  # the usual case: one plain file name
            normal = posixpath.normpath(out) if isinstance(out, str) and out else ""
            if (not normal or normal != out or normal.startswith(("/", "../")) or normal in (".", "..")
                    or "\0" in out or len(out) > 4096):
                raise self.error(f"node '{name}': output {out!r} is not a relative path inside the target's "
                                 "output directory", hint="name outputs like 'out.txt' or 'sub/out.txt'")
            nested = True
        if len(set(outputs)) != len(outputs):
            twice = next(o for o in outputs if list(outputs).count(o) > 1)
            raise self.error(f"node '{name}': output {twice!r} is declared twice")
        if nested:
            seen = set(outputs)
            for out in outputs:
                parent = next((p for p in _parents(out) if p in seen), None)
                if parent:
                    raise self.error(f"node '{name}': output {out!r} is inside output {parent!r}, which is a file")


def _parents(path: str) -> list[str]:
    parts = path.split("/")
    return ["/".join(parts[:i]) for i in range(1, len(parts))]


class _TargetKind(Provider):
    """Added by the analyzer to every target: its rule name (for error messages)."""

    rule: str
