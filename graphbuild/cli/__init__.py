"""The command line: verb declarations (argparse only) and the entry point.

`run` answers `graphbuild --version` before importing anything else: the rest of the CLI is
imported only for a command that needs it.
"""

from __future__ import annotations

import sys


def run() -> None:
    if sys.argv[1:] == ["--version"]:
        from graphbuild import __version__

        sys.stdout.write(f"graphbuild {__version__}\n")
        sys.exit(0)
    if sys.argv[1:3] == ["completion", "--labels"] and len(sys.argv) == 3:  # at every <TAB>: no parser
        from graphbuild.loading.label_scan import scan_labels

        labels = scan_labels(".")
        sys.stdout.write("".join(f"{label}\n" for label in labels))
        sys.exit(0)
    # A command allocates a great many small, long-lived objects (targets, nodes, keys) and
    # makes few cycles: collecting less often is ~15 % of a no-op build's time. Set here, for
    # the process the command owns, not in main(), which tests and other callers run in theirs.
    import gc

    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    from graphbuild.cli.main import main

    sys.exit(main())
