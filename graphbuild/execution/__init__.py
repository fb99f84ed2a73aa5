"""Execution: compute keys in topological order, reuse cached results, run the rest."""
