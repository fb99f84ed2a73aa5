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
from graphbuild.errors import CacheError, Location, SpecError, SpecErrors, UsageError
from graphbuild.labels import Label, Pattern
from graphbuild.loading.loader import Loader
from graphbuild.loading.workspace import MARKER, Workspace

if TYPE_CHECKING:
    from graphbuild.cache.remote import RemoteCache
    from graphbuild.cache.signing import SigningKey, TrustedKeys


class Session:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.cwd = Path(args.workspace or os.getcwd()).resolve()
        self.workspace = Workspace.find(self.cwd)
        from graphbuild.rules import BUILTIN_RULES

        self.loader = Loader(self.workspace, BUILTIN_RULES)
        # The key text is taken out of the environment at once: no process graphbuild starts
        # (a build backend, uv, a test) inherits it.
        self._signing_key_text = os.environ.pop(SIGNING_KEY_ENV, None)

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
        """The shared cache, when one is configured and answers (else a warning: local only).

        It reads entries signed by a key of `[cache] trusted_keys` and writes, signed, only with
        a signing key; what it cannot do is said once, as a warning."""
        settings = self.workspace.config.get("cache", {})
        url = self.remote_url
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
        trusted = self.trusted_keys()
        signer = None if readonly else self.signing_key()
        if not readonly and signer is None:
            _warn(f"remote cache {location}: no signing key ({SIGNING_KEY_OPTION} FILE, {SIGNING_KEY_FILE_ENV} or "
                  f"{SIGNING_KEY_ENV}), so nothing is written to it; set {REMOTE_ENV}_READONLY=1 to read only "
                  f"without this warning")
        if signer is not None and signer.public.key_id not in trusted:
            _warn(f"remote cache {location}: the signing key (key id {signer.public.key_id}) is not in "
                  f"[cache] trusted_keys of graphbuild.toml: readers of this workspace ignore what it writes "
                  f"(add {signer.public.line()})")
        if not trusted:
            _warn(f"remote cache {location}: graphbuild.toml lists no [cache] trusted_keys, so no result is read "
                  f"from it (`graphbuild cache keygen` makes a key pair)")
            if signer is None:
                return None
        remote = RemoteCache(location, blobs=self.blobs, actions=self.actions, trusted=trusted, signer=signer,
                             writable=not readonly)
        try:
            remote.check()
        except RemoteCacheError as err:
            if required:
                raise CacheError(f"remote cache {location} is unavailable: {err}",
                                 hint="drop --remote-cache-required to build with the local cache alone") from None
            _warn(f"remote cache {location} is unavailable ({err}); using the local cache only")
            return None
        return remote

    @cached_property
    def remote_url(self) -> str | None:
        """The shared cache's URL, resolved once for every use (the cache, `ci gitlab`):
        --remote-cache, else $GRAPHBUILD_REMOTE_CACHE, else [cache] remote of graphbuild.toml."""
        return (getattr(self.args, "remote_cache", None) or os.environ.get(REMOTE_ENV)
                or self.workspace.config.get("cache", {}).get("remote") or None)

    def trusted_keys(self) -> TrustedKeys:
        """`[cache] trusted_keys` of graphbuild.toml: every bad entry reported at once (exit 2)."""
        from graphbuild.cache.signing import PublicKey, TrustedKeys

        entries = self.workspace.config.get("cache", {}).get("trusted_keys", [])
        config = self.workspace.root / CONFIG_FILE
        text = config.read_text() if config.is_file() else ""
        if not isinstance(entries, list):
            raise SpecError("[cache] trusted_keys must be a list of public keys",
                            location=Location(CONFIG_FILE, _line_of(text, "trusted_keys")),
                            hint='trusted_keys = ["ed25519:..."], as `graphbuild cache keygen` prints')
        keys, errors = [], []
        for index, entry in enumerate(entries):
            try:
                keys.append(PublicKey.parse(entry))
            except ValueError as err:
                shown = entry if isinstance(entry, str) else repr(entry)
                errors.append(SpecError(
                    f"[cache] trusted_keys[{index}] {shown[:60]!r} is not an Ed25519 public key: {err}",
                    location=Location(CONFIG_FILE, _line_of(text, shown) or _line_of(text, "trusted_keys")),
                    hint="write the line `graphbuild cache keygen` prints: 'ed25519:' and 44 base64 characters"))
        if errors:
            raise errors[0] if len(errors) == 1 else SpecErrors(errors)
        return TrustedKeys(keys)

    def signing_key(self) -> SigningKey | None:
        """The writer's private key: --remote-cache-signing-key FILE, else the file that
        GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE names, else GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY
        (the key itself). Errors never quote the key."""
        from graphbuild.cache.signing import SigningKey

        path = getattr(self.args, "remote_cache_signing_key", None) or os.environ.get(SIGNING_KEY_FILE_ENV)
        if path:
            source = SIGNING_KEY_OPTION if getattr(self.args, "remote_cache_signing_key", None) \
                else SIGNING_KEY_FILE_ENV
            try:
                text = Path(path).expanduser().read_bytes()
            except OSError as err:
                raise UsageError(f"cannot read the signing key file {path} ({source}): {err.strerror}",
                                 hint="`graphbuild cache keygen -o FILE` writes one") from None
            where = f"the signing key file {path} ({source})"
        elif self._signing_key_text:
            text, where = self._signing_key_text.encode(), SIGNING_KEY_ENV
        else:
            return None
        try:
            return SigningKey.load(text)
        except ValueError as err:
            raise UsageError(f"{where} does not hold a usable key: {err}",
                             hint="`graphbuild cache keygen -o FILE` writes one") from None

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
        self.loader.close()
        if "files" in self.__dict__:
            self.files.save()
        if "actions" in self.__dict__:
            self.actions.close()
        if "run" in self.__dict__:
            self.run.finish()


REMOTE_ENV = "GRAPHBUILD_REMOTE_CACHE"
SIGNING_KEY_ENV = "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY"
SIGNING_KEY_FILE_ENV = "GRAPHBUILD_REMOTE_CACHE_SIGNING_KEY_FILE"
SIGNING_KEY_OPTION = "--remote-cache-signing-key"
CONFIG_FILE = MARKER


def _warn(message: str) -> None:
    sys.stderr.write(f"warning: {message}\n")


def _line_of(text: str, needle: str) -> int:
    """The 1-based line of graphbuild.toml where `needle` first appears (0: not found)."""
    index = text.find(needle)
    return text.count("\n", 0, index) + 1 if index >= 0 else 0


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")
