"""The `graphbuild` command: one module per verb; `main.py` parses and dispatches."""
