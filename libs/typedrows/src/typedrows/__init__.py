"""Rows of a table in fixed-size batches (itertools.batched: Python 3.12)."""

from itertools import batched


def batches(rows, size):
    return [list(batch) for batch in batched(rows, size)]
