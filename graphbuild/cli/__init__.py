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
    from graphbuild.cli.main import main

    sys.exit(main())
