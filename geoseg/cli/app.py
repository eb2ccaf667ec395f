"""The ``geoseg`` Typer application that command modules register on."""

import typer

app = typer.Typer(
    name="geoseg",
    help="Segment satellite and aerial scenes into georeferenced masks and vector maps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root() -> None:
    """Segment satellite and aerial scenes into georeferenced masks and vector maps."""
