"""Command-line interface: a thin layer over the library, one module per command.

User mistakes (``GeosegError``) become one line on stderr and exit code 2, never a traceback.
"""

import sys

from geoseg.cli import commands  # noqa: F401  (registers the commands)
from geoseg.cli.app import app
from geoseg.errors import GeosegError


def main() -> None:
    """Entry point of the ``geoseg`` console script."""
    try:
        app()
    except GeosegError as exc:
        print(f"geoseg: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
