"""graphbuild: a declarative, content-addressed build graph for container environments."""

__version__ = "0.1.0"
