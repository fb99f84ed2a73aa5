"""py_layer: a set of requirements forming one layer of an environment, over the layers it names."""

from __future__ import annotations

from graphbuild.api import Attrs, Field, LabelAttr, Located, RuleContext, rule
from graphbuild.rules.python import requirements
from graphbuild.rules.python.providers import PyLayerInfo


class PyLayerAttrs(Attrs):
    requirements: list[str] = Field(default=[], description="PEP 508 requirements this layer adds.")
    over: list[LabelAttr] = Field(default=[], description="py_layer targets under this one. This layer holds "
                                  "only the packages they do not already provide.")


@rule(attrs=PyLayerAttrs, version=1)
def py_layer(ctx: RuleContext, attrs: PyLayerAttrs) -> PyLayerInfo:
    """A layer of packages; environments resolve it together with the layers under it."""
    reqs = []
    for index, text in enumerate(attrs.requirements):
        where = ctx.attr_location(f"requirements[{index}]")
        requirements.parse(text, where, owner=f"py_layer '{ctx.label.name}'")
        reqs.append(Located(text, where))
    stack: list[tuple[str, tuple[Located, ...]]] = []
    for lower in attrs.over:
        info = ctx.provider(lower, PyLayerInfo, attr="over")
        for entry in info.stack:
            if entry[0] not in [s[0] for s in stack]:
                stack.append(entry)
    stack.append((str(ctx.label), tuple(reqs)))
    return PyLayerInfo(label=str(ctx.label), requirements=tuple(reqs), stack=tuple(stack))
