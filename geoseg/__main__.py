"""``python -m geoseg`` runs the CLI."""

from geoseg.cli import main

main()
