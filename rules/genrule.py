"""genrule: produce files by running a shell command over files."""

from __future__ import annotations

from graphbuild.api import Attrs, DefaultInfo, Field, OutputPaths, RuleContext, Source, rule
from graphbuild.rules.command import run_command, staged_sources


class GenruleAttrs(Attrs):
    srcs: list[Source] = Field(default=[], description="Input files of the package, or targets whose files to use.")
    outs: OutputPaths = Field(min_length=1, description="Files the command writes, relative to the package's "
                              "output directory graphbuild-out/<package>/ (no '..', not absolute).")
    cmd: str = Field(description="Bash command. $SRCS: input paths; $OUTS (or $OUT for one): where to write.")
    env: dict[str, str] = Field(default={}, description="Extra environment variables for the command.")
    timeout: float | None = Field(default=None, description="Seconds before the command is stopped.")


@rule(attrs=GenruleAttrs, version=1)
def genrule(ctx: RuleContext, attrs: GenruleAttrs) -> DefaultInfo:
    """Run a bash command over files; its outputs are cached by the content of its inputs."""
    node = ctx.action(
        "gen",
        executor=run_command,
        inputs={**staged_sources(ctx, attrs.srcs, "srcs"), "timeout": attrs.timeout},
        attrs=["cmd", "env"],
        outputs=attrs.outs,
        kind="genrule",
    )
    return DefaultInfo(files=tuple(node.output(o) for o in attrs.outs))
