"""Loading: find the workspace, evaluate BUILD.envs files into targets (no analysis, no I/O beyond reading them)."""
