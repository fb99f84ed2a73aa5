"""Read a job's run configuration (TOML) the way our Python 3.10 jobs always have."""

import tomli


def read(path):
    # a text file: tomli 1.x accepts it (with a DeprecationWarning), tomli 2 raises TypeError
    with open(path, encoding="utf-8") as handle:
        return tomli.load(handle)


def queue_of(path, default="batch"):
    return read(path).get("job", {}).get("queue", default)
