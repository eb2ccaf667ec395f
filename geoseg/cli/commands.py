"""Imports every command module so that each registers itself on the app."""

from geoseg.cli import (
    catalog,  # noqa: F401
    demo,  # noqa: F401
    evaluate,  # noqa: F401
    predict,  # noqa: F401
    run,  # noqa: F401
    tiles,  # noqa: F401
    train,  # noqa: F401
    vectorize,  # noqa: F401
)
