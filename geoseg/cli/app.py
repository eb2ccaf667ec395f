"""The ``geoseg`` Typer application that command modules register on.

Help screens read like a manual: arguments by their upper-case name (``IMAGE``, ``[FOLDER]``)
in the usage line, and flags (``--probability``, ``--help``) without a ``<bool>`` type.
"""

import os
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer._click import Context, Parameter  # typer's own copy of click, whose classes it builds
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

DEBUG_VARIABLE = "GEOSEG_DEBUG"


def _clean(params: list[Parameter]) -> list[Parameter]:
    """Arguments named in upper case, flags without a type."""
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar is None and param.name:
            param.metavar = param.name.upper()
        elif isinstance(param, TyperOption) and param.is_flag:
            param.metavar = ""
    return params


def _usage(options_metavar: str | None, params: Sequence[Parameter]) -> list[str]:
    """``[OPTIONS] IMAGE [MORE]...``: optional arguments in brackets, repeatable ones with dots."""
    pieces = [options_metavar] if options_metavar else []
    for param in params:
        if isinstance(param, TyperArgument) and param.metavar:
            name = param.metavar if param.required else f"[{param.metavar}]"
            pieces.append(name + ("..." if param.nargs != 1 else ""))
    return pieces


class HelpCommand(TyperCommand):
    """A command with clean help (see the module docstring)."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        """The parameters, cleaned for help."""
        return _clean(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """The usage line after the command name."""
        return _usage(self.options_metavar, self.get_params(ctx))


class HelpGroup(TyperGroup):
    """A command group with clean help (see the module docstring)."""

    def get_params(self, ctx: Context) -> list[Parameter]:
        """The parameters, cleaned for help."""
        return _clean(super().get_params(ctx))

    def collect_usage_pieces(self, ctx: Context) -> list[str]:
        """The usage line after the group name."""
        return [*_usage(self.options_metavar, self.get_params(ctx)), self.subcommand_metavar]


class GeosegApp(typer.Typer):
    """The Typer app; every command and group registered on it, at any depth, gets clean help."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the CLI."""
        _use_clean_help(self)
        return super().__call__(*args, **kwargs)


def _use_clean_help(typer_app: typer.Typer) -> None:
    for command in typer_app.registered_commands:
        if command.cls in (None, TyperCommand):
            command.cls = HelpCommand
    for group in typer_app.registered_groups:
        group.cls = HelpGroup
        if group.typer_instance is not None:
            _use_clean_help(group.typer_instance)


app = GeosegApp(
    cls=HelpGroup,
    name="geoseg",
    help="Segment satellite and aerial scenes into georeferenced masks and vector maps.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help=f"Show full tracebacks (for bug reports; or ${DEBUG_VARIABLE}=1).")
    ] = False,
) -> None:
    """Segment satellite and aerial scenes into georeferenced masks and vector maps."""
    if debug:
        os.environ[DEBUG_VARIABLE] = "1"
