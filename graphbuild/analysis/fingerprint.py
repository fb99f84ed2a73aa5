"""Static fingerprints of nodes: what a node's key would be, known before anything runs.

A key proper uses the *output digests* of the nodes it depends on (early cutoff), which only
execution knows.  A fingerprint uses their fingerprints instead: it changes whenever the
node's inputs or anything upstream changed.  Comparing the fingerprints of two revisions
tells which nodes (and so which targets) a change can affect, without building either.
"""

from __future__ import annotations

from graphbuild.analysis.analyzer import Analysis
from graphbuild.keying import node_manifest
from graphbuild.keys import key_of


def fingerprints(analysis: Analysis) -> dict[str, str]:
    found: dict[str, str] = {}
    for nid in analysis.closure(analysis.requested, "run") + analysis.closure(analysis.requested, "lock"):
        if nid in found:
            continue
        node = analysis.nodes[nid]
        manifest = node_manifest(node, lambda ref: f"{found[ref.node_id]}:{ref.name}", lambda dep: found[dep])
        found[nid] = key_of(manifest)
    return found
