"""filegroup: name a set of files (and other targets' files) to use as one source."""

from __future__ import annotations

from graphbuild.api import Attrs, DefaultInfo, Field, RuleContext, Source, rule


class FilegroupAttrs(Attrs):
    srcs: list[Source] = Field(default=[], description="Files of the package or targets whose files to include.")


@rule(attrs=FilegroupAttrs, version=1)
def filegroup(ctx: RuleContext, attrs: FilegroupAttrs) -> DefaultInfo:
    """Group files; declares no node."""
    return DefaultInfo(files=tuple(ctx.sources(attrs.srcs, attr="srcs")))
