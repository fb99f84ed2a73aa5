"""Everything one command needs, wired together: workspace, cache, loader, analyzer.

This is the composition root: the only place where the engine meets the built-in rules.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING

import xxhash

from graphbuild.analysis.analyzer import Analysis, Analyzer
from graphbuild.cache.actions import ActionCache
from graphbuild.cache.blobs import BlobStore
from graphbuild.cache.files import FileDigests
from graphbuild.cache.history import History
from graphbuild.cache.layout import ENV_VAR, CacheDir, default_cache_dir
from graphbuild.cache.runs import Run
from graphbuild.errors import CacheError, UsageError
from graphbuild.labels import Label, Pattern
from graphbuild.loading.loader import Loader
from graphbuild.loading.workspace import Workspace

if TYPE_CHECKING:
    from graphbuild.cache.remote import RemoteCache


class Session:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cwd = Path(args.workspace or os.getcwd()).resolve()
        self.workspace = Workspace.find(self.cwd)
        from graphbuild.rules import BUILTIN_RULES, RULE_API

        self.loader = Loader(self.workspace, BUILTIN_RULES, RULE_API)

    @cached_property
    def cache(self) -> CacheDir:
        configured = self.workspace.config.get("cache", {}).get("dir")
        if self.args.cache_dir:
            root = Path(self.args.cache_dir)
        elif os.environ.get(ENV_VAR) or not configured:
            root = default_cache_dir()
        else:
            root = self.workspace.root / Path(configured).expanduser()
        return CacheDir(root).ensure()

    @cached_property
    def files(self) -> FileDigests:
        ident = xxhash.xxh3_64_hexdigest(str(self.workspace.root).encode())
        return FileDigests(self.cache.history / f"files-{ident}.json")

    @cached_property
    def actions(self) -> ActionCache:
        return ActionCache(self.cache.actions)

    @cached_property
    def blobs(self) -> BlobStore:
        # temporary files of blobs being stored live in the run's directory: a crash leaves
        # them where the next run's sweep finds them
        return BlobStore(self.cache.blobs, self.run.dir)

    @cached_property
    def run(self) -> Run:
        """This process's run in the cache (its id, scratch, child processes); starting one
        sweeps what dead runs left."""
        return Run(self.cache.tmp)

    @cached_property
    def history(self) -> History:
        return History(self.cache.history, self.workspace.root)

    @cached_property
    def remote(self) -> RemoteCache | None:
        """The shared cache, when one is configured and answers (else a warning: local only)."""
        settings = self.workspace.config.get("cache", {})
        url = self.args.remote_cache or os.environ.get(REMOTE_ENV) or settings.get("remote")
        if not url:
            return None
        from graphbuild.cache.remote import RemoteCache, RemoteCacheError, RemoteLocation

        readonly = (self.args.remote_cache_readonly or _truthy(os.environ.get(f"{REMOTE_ENV}_READONLY"))
                    or bool(settings.get("remote_readonly")))
        required = self.args.remote_cache_required or _truthy(os.environ.get(f"{REMOTE_ENV}_REQUIRED"))
        try:
            location = RemoteLocation.parse(url)
        except ValueError as err:
            raise UsageError(str(err)) from None
        remote = RemoteCache(location, blobs=self.blobs, actions=self.actions, writable=not readonly)
        try:
            remote.check()
        except RemoteCacheError as err:
            if required:
                raise CacheError(f"remote cache {location} is unavailable: {err}",
                                 hint="drop --remote-cache-required to build with the local cache alone") from None
            sys.stderr.write(f"warning: remote cache {location} is unavailable ({err}); using the local cache only\n")
            return None
        return remote

    @property
    def jobs(self) -> int:
        return self.args.jobs or os.cpu_count() or 1

    def labels(self, patterns: list[str]) -> list[Label]:
        """Expand command-line patterns (relative ones against the current directory's package)."""
        cwd_package = self.workspace.package_of(self.cwd)
        found: dict[Label, None] = {}
        for text in patterns:
            for label in self.loader.expand(Pattern.parse(text, cwd_package=cwd_package)):
                found[label] = None
        return list(found)

    def analyze(self, labels: list[Label], *, locking: bool = False) -> Analysis:
        return Analyzer(self.loader, self.files.digest, locking=locking).analyze(labels)

    def close(self) -> None:
        if "files" in self.__dict__:
            self.files.save()
        if "actions" in self.__dict__:
            self.actions.close()
        if "run" in self.__dict__:
            self.run.finish()


REMOTE_ENV = "GRAPHBUILD_REMOTE_CACHE"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
