"""`graphbuild layers ENV`: an environment's planned image layers, as text or JSON (the verb is
declared in `verbs.py`).

The plan is what analysis computed (`EnvironmentInfo.layer_plan`); nothing is built.
"""

from __future__ import annotations

from typing import Any

from graphbuild.rules.python.environment import EnvironmentInfo


def layers_document(info: EnvironmentInfo) -> dict[str, Any]:
    layers = [dict(layer) for layer in info.layer_plan]
    return {"environment": info.label, "max_layers": info.max_layers,
            "own_layers": 1 + len(layers) + len(info.libraries),
            "layers": layers,
            "other_layers": ["layer.venv (the venv skeleton, first)",
                             *(f"lib.{lib.label.rsplit(':', 1)[-1]} (library {lib.label})" for lib in info.libraries)]}


def layers_text(document: dict[str, Any]) -> str:
    lines = [f"{document['environment']}: {len(document['layers'])} package layers, "
             f"{document['own_layers']} layers of its own with the venv and libraries "
             f"(max_layers {document['max_layers']}); most shared first"]
    for layer in document["layers"]:
        size = f", wheels {layer['wheel_size'] / 1e6:.1f} MB" if layer.get("wheel_size") is not None else ""
        envs = layer["environments"]
        shared = "only this environment" if len(envs) == 1 else f"shared by {len(envs)}: {_some(envs)}"
        chain = "" if layer["chain_shared"] else " (the layers under it differ between those images)"
        lines.append(f"{layer['position']:3d}. {layer['name']}  [{shared}{size}]{chain}")
        packages = ", ".join(f"{p['name']} {p['version']}" for p in layer["packages"])
        lines.append(f"       {packages}")
        lines.append(f"       why: {layer['why']}")
    lines.append("     also: " + "; ".join(document["other_layers"]))
    return "\n".join(lines)


#: Environments named on a layer's line of the text report (`--json` lists them all).
_NAMED = 6


def _some(environments: list[str]) -> str:
    if len(environments) <= _NAMED:
        return ", ".join(environments)
    return ", ".join(environments[: _NAMED - 1]) + f" and {len(environments) - _NAMED + 1} more (--json lists them)"


def run_layers(ctx: Any, args: Any) -> Any:
    """The `layers` verb (declared in `verbs.py`)."""
    from graphbuild.api import Report, UsageError

    labels = ctx.labels([args.target])
    if len(labels) != 1:
        raise UsageError(f"'{args.target}' names {len(labels)} targets; layers shows one environment",
                         hint="name one environment, e.g. //envs:prod")
    label = labels[0]
    analysis = ctx.analyze(labels)
    info = analysis.providers[label].get(EnvironmentInfo)
    if not isinstance(info, EnvironmentInfo):
        kind = analysis.targets[label].rule.name
        raise UsageError(f"{label} is not an environment (it is a '{kind}' target)",
                         hint="graphbuild layers takes an environment target")
    document = layers_document(info)
    return Report(data=document, text=layers_text(document))
