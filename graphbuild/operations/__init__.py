"""Use cases below the CLI: each returns a frozen report that reporting/ renders."""

#: the environment variable naming the shared cache (and, suffixed, its read-only switch)
REMOTE_ENV = "GRAPHBUILD_REMOTE_CACHE"
