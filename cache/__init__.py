"""The local cache: content-addressed blobs, the action cache, file digests and run history.

Installed as `graphbuild.cache`.  Nothing here knows about rules or nodes beyond plain records.
"""

from graphbuild.cache.layout import CacheDir, default_cache_dir

__all__ = ["CacheDir", "default_cache_dir"]
