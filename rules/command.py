"""The executor behind genrule and command_test: a bash command over staged input files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from graphbuild.api import ActionFailed, ExecContext, FileRef, OutputRef, RuleContext, Source, executor


def staged_sources(ctx: RuleContext, values: list[Source], attr: str) -> dict[str, Any]:
    """The `srcs`/`src_names` inputs of a command node: files, and the names the command sees
    them by (a workspace path; `pkg/target/out` for another target's output)."""
    srcs = ctx.sources(values, attr=attr)
    # $PACKAGE is visible to the command, so it is part of the key
    return {"srcs": srcs, "src_names": [_staged_name(s) for s in srcs], "package": ctx.package}


def _staged_name(ref: FileRef | OutputRef) -> str:
    if isinstance(ref, FileRef):
        return ref.path
    target = ref.node_id.split("#", 1)[0].lstrip("/").replace(":", "/").lstrip("/")
    return f"{target}/{ref.name}"


def _stage(ctx: ExecContext, files: list[Path], names: list[str]) -> list[str]:
    """Symlink inputs into the scratch dir under their workspace names; the command sees only those."""
    staged = []
    for path, name in zip(files, names, strict=True):
        link = ctx.scratch / name
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            os.symlink(path, link)
        staged.append(name)
    return staged


@executor("command", version=2)
def run_command(ctx: ExecContext) -> dict[str, Any]:
    """Inputs: `cmd` (bash), `srcs` (files), `src_names` (their names), `package` ($PACKAGE), `env`,
    `timeout`, `test`."""
    srcs = _stage(ctx, ctx.inputs.get("srcs", []), ctx.inputs.get("src_names", []))
    outs = [str(ctx.out(name)) for name in ctx.node.outputs]
    env = {
        "SRCS": " ".join(srcs),
        "OUTS": " ".join(outs),
        "OUT": outs[0] if len(outs) == 1 else "",
        **({"PACKAGE": ctx.inputs["package"]} if "package" in ctx.inputs else {}),
        **ctx.inputs.get("env", {}),
    }
    is_test = bool(ctx.inputs.get("test"))
    proc = ctx.run(["bash", "-euo", "pipefail", "-c", ctx.inputs["cmd"]], env=env,
                   timeout=ctx.inputs.get("timeout"), check=False)
    if proc.returncode != 0:
        # A test that fails on the same inputs fails again: caching that failure is correct.
        raise ActionFailed(f"command exited with {proc.returncode}", deterministic=is_test)
    return {"exit_code": proc.returncode} if is_test else {}
