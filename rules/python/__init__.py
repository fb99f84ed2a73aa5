"""Python environments: locked, layered, content-addressed package layers (`graphbuild.rules.python`)."""
