"""Copy the files requested targets produce into `graphbuild-out/`, where people look for them.

Nothing is ever written outside `graphbuild-out/<package>/`: every directory on the way is
opened without following symlinks (`O_NOFOLLOW`, relative to its parent's descriptor), so a
symlink planted in the output tree (by a command, or committed by someone) is refused, not
followed; the file itself is replaced by a rename, which never follows a symlink either.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from graphbuild.cache.blobs import BlobStore
from graphbuild.errors import GraphbuildError
from graphbuild.execution.events import NodeOutcome
from graphbuild.nodes import OutputRef
from graphbuild.rule import OutputTree

OUT_DIR = "graphbuild-out"

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class OutputTreeError(GraphbuildError):
    """graphbuild-out/ holds something an output cannot be written through (a symlink, a file
    where a directory belongs)."""


def materialize(refs: Iterable[OutputRef], outcomes: dict[str, NodeOutcome], blobs: BlobStore,
                workspace_root: Path, digest_of: Callable[[Path], str]) -> list[Path]:
    """Write each output under graphbuild-out/<package>/<name>; unchanged files are left alone.

    Reading a blob verifies it, so a corrupt one raises `CorruptBlob` here instead of being
    handed to the user.
    """
    written = []
    for ref in refs:
        outcome = outcomes.get(ref.node_id)
        if outcome is None or not outcome.ok:
            continue
        sha, _, executable = outcome.outputs[ref.name]
        package = ref.node_id.split(":", 1)[0].removeprefix("//")
        parts = [p for p in (*package.split("/"), *ref.name.split("/")) if p]
        if not parts or any(p in (".", "..") for p in parts):  # analysis refuses these; never trust it here
            raise OutputTreeError(f"output '{ref.name}' of {ref.node_id} is not a path inside {OUT_DIR}/")
        dest = workspace_root / OUT_DIR / Path(*parts)
        with _directory(workspace_root, [OUT_DIR, *parts[:-1]]) as dir_fd:
            name = parts[-1]
            if _is_regular(name, dir_fd) and digest_of(dest) == sha:
                continue
            _write(blobs.verified_path(sha), name, dir_fd, executable, dest)
        written.append(dest)
    return written


@contextlib.contextmanager
def _directory(root: Path, parts: list[str]) -> Iterator[int]:
    """A descriptor of root/parts..., made as needed; a symlink or a non-directory on the way
    is an `OutputTreeError` naming it."""
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for index, part in enumerate(parts):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            try:
                child = os.open(part, _DIR_FLAGS, dir_fd=fd)
            except OSError as err:
                shown = "/".join(parts[: index + 1])
                what = _why_not_a_directory(part, fd, err)
                raise OutputTreeError(f"cannot write outputs through {root / shown}: {what}",
                                      hint=f"remove it (graphbuild clean removes {OUT_DIR}/): outputs are only "
                                           f"written inside {OUT_DIR}/, never through a link out of it") from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _why_not_a_directory(name: str, dir_fd: int, err: OSError) -> str:
    try:
        if stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return f"it is a symlink (to {os.readlink(name, dir_fd=dir_fd)})"
    except OSError:
        pass
    return "it is not a directory" if err.errno in (errno.ENOTDIR, errno.ELOOP) else str(err.strerror)


def _is_regular(name: str, dir_fd: int) -> bool:
    try:
        return stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    except FileNotFoundError:
        return False


def _write(source: Path, name: str, dir_fd: int, executable: bool, dest: Path) -> None:
    """Copy `source` to `name` in `dir_fd` atomically: a temp file, then a rename over whatever
    was there (a stale file or a symlink: the rename replaces the link, never its target)."""
    tmp = f".graphbuild-{os.getpid()}.tmp"  # per process: two builds may write the same file at once
    try:
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644,
                      dir_fd=dir_fd)
    except OSError as err:
        raise OutputTreeError(f"cannot write {dest}: {err.strerror}") from None
    try:
        with open(source, "rb") as src, os.fdopen(out, "wb", closefd=False) as sink:
            while chunk := src.read(1 << 20):
                sink.write(chunk)
        os.fchmod(out, 0o755 if executable else 0o644)
    finally:
        os.close(out)
    try:
        os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
    except OSError as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=dir_fd)
        raise OutputTreeError(f"cannot write {dest}: {err.strerror}",
                              hint=f"remove it (graphbuild clean removes {OUT_DIR}/)") from None


def materialize_trees(trees: Iterable[tuple[str, OutputTree]], outcomes: dict[str, NodeOutcome], blobs: BlobStore,
                      workspace_root: Path, digest_of: Callable[[Path], str], kinds: Iterable[str] = ()) -> list[Path]:
    """Deliver (package, tree) pairs: a tree without a kind as a directory of
    graphbuild-out/<package>/ (a file already holding the right bytes is left alone), a tree
    of one of `kinds` as one tar file at its path; trees of other kinds are not written."""
    wanted_kinds = set(kinds)
    written = []
    for package, tree in trees:
        if tree.kind and tree.kind not in wanted_kinds:
            continue
        files = []
        for rel, ref in tree.files:
            outcome = outcomes.get(ref.node_id)
            if outcome is None or not outcome.ok:
                break  # a node of the tree failed: deliver nothing of it
            sha = outcome.outputs[ref.name][0]
            files.append((rel.replace("{sha256}", sha), sha))
        else:
            base = [p for p in package.split("/") if p]
            tree_parts = [p for p in tree.path.split("/") if p]
            if not tree_parts or any(p in (".", "..") for p in tree_parts):
                raise OutputTreeError(f"output tree '{tree.path}' is not a path inside {OUT_DIR}/")
            if tree.kind:
                written.append(_write_archive(workspace_root, base, tree_parts, files, blobs))
                continue
            for rel, sha in files:
                parts = [*base, *tree_parts, *(p for p in rel.split("/") if p)]
                if any(p in (".", "..") for p in parts):
                    raise OutputTreeError(f"'{rel}' of output tree '{tree.path}' is not a path inside {OUT_DIR}/")
                dest = workspace_root / OUT_DIR / Path(*parts)
                with _directory(workspace_root, [OUT_DIR, *parts[:-1]]) as dir_fd:
                    if _is_regular(parts[-1], dir_fd) and digest_of(dest) == sha:
                        continue
                    _write(blobs.verified_path(sha), parts[-1], dir_fd, False, dest)
            written.append(workspace_root / OUT_DIR / Path(*base, *tree_parts))
    return written


def _write_archive(workspace_root: Path, base: list[str], parts: list[str], files: list[tuple[str, str]],
                   blobs: BlobStore) -> Path:
    """One tar file of the tree's files (mode 0644, epoch mtimes, uid 0), written atomically."""
    import tarfile

    dest = workspace_root / OUT_DIR / Path(*base, *parts)
    with _directory(workspace_root, [OUT_DIR, *base, *parts[:-1]]) as dir_fd:
        tmp = f".graphbuild-{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644, dir_fd=dir_fd)
        try:
            with os.fdopen(fd, "wb") as sink, tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT) as tar:
                seen = set()
                for rel, sha in files:
                    if rel in seen:
                        continue
                    seen.add(rel)
                    path = blobs.verified_path(sha)
                    info = tarfile.TarInfo(rel)
                    info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
                    with open(path, "rb") as handle:
                        tar.addfile(info, handle)
            os.replace(tmp, parts[-1], src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=dir_fd)
            raise
    return dest
