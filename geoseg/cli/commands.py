"""Imports every command module so that each registers itself on the app."""

from geoseg.cli import predict  # noqa: F401
from geoseg.cli import vectorize  # noqa: F401
from geoseg.cli import train  # noqa: F401
from geoseg.cli import evaluate  # noqa: F401
