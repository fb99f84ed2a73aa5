"""Helpers a research group publishes on a git branch."""

import numpy as np
import tomli


def zscore(values):
    arr = np.asarray(values, dtype=float)
    return (arr - arr.mean()) / arr.std() if arr.std() else np.zeros_like(arr)


def load_experiment(path):
    """An experiment's TOML description (tomli 2 reads binary files)."""
    with open(path, "rb") as handle:
        return tomli.load(handle)
