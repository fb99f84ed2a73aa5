"""command_test: a test (run by `graphbuild test`/`run`) passing when a command exits 0."""

from __future__ import annotations

from graphbuild.api import Attrs, DefaultInfo, Field, RuleContext, Source, rule
from graphbuild.rules.command import run_command, staged_sources


class CommandTestAttrs(Attrs):
    srcs: list[Source] = Field(default=[], description="Files (or targets' files) the test reads.")
    cmd: str = Field(description="Bash command; exit status 0 means the test passed. $SRCS: input paths.")
    env: dict[str, str] = Field(default={}, description="Extra environment variables.")
    timeout: float = Field(default=300, description="Seconds before the test is stopped (never cached).")


@rule(attrs=CommandTestAttrs, version=1)
def command_test(ctx: RuleContext, attrs: CommandTestAttrs) -> DefaultInfo:
    """A test: its result is cached by its inputs, a failure included; a timeout is not cached."""
    ctx.action(
        "test",
        executor=run_command,
        inputs={**staged_sources(ctx, attrs.srcs, "srcs"), "timeout": attrs.timeout, "test": True},
        attrs=["cmd", "env"],
        phase="test",
        kind="command_test",
    )
    return DefaultInfo()
