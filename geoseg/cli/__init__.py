"""Command-line interface: a thin layer over the library, one module per command.

User mistakes (``GeosegError``) and environment problems (``OSError``: a full disk, a
read-only folder) become one line on stderr and exit code 2, never a traceback; an unexpected
error is one line too, with exit code 3 and a pointer to ``--debug``. Ctrl-C ends with one line
and exit code 130, SIGTERM with 143 (``geoseg.interrupts``). ``--debug`` (or ``GEOSEG_DEBUG=1``) shows full
tracebacks for bug reports.
"""

import atexit
import gc
import os
import sys
import warnings
from typing import Any

import typer

try:  # typer ≥ 0.25 vendors its own click
    from typer._click.exceptions import ClickException
except ImportError:  # pragma: no cover - older typer on real click
    from click.exceptions import ClickException  # type: ignore[assignment]
from geoseg import interrupts
from geoseg.cli import commands  # noqa: F401  (registers the commands)
from geoseg.cli.app import DEBUG_VARIABLE, app
from geoseg.errors import GeosegError, GeosegWarning, printable
from geoseg.gdal_settings import http_timeouts

INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT, as shells report it)."""


def main() -> None:
    """Entry point of the ``geoseg`` console script."""
    atexit.register(gc.freeze)  # the exit's final garbage collections skip what is alive then (0.5 s)
    warnings.simplefilter("always", GeosegWarning)
    warnings.showwarning = _show_warning
    http_timeouts()
    interrupts.install()
    try:
        code = app(standalone_mode=False)
    except ClickException as exc:  # usage errors: one line naming the option, as for others
        ctx = getattr(exc, "ctx", None)
        hint = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        print(f"geoseg: error: {exc.format_message()}{hint}", file=sys.stderr)
        code = exc.exit_code
    except (KeyboardInterrupt, typer.Abort):
        code = INTERRUPTED
    except Exception as exc:
        if os.environ.get(DEBUG_VARIABLE):
            raise
        # Ctrl-C that Python turned into another error (an import lock's) is still Ctrl-C
        code = INTERRUPTED if interrupts.requested() else _report(exc)
    if code == INTERRUPTED:  # typer turns KeyboardInterrupt into exit code 130 itself
        print("geoseg: interrupted; rerun to resume", file=sys.stderr)
        code = interrupts.exit_code()
    raise SystemExit(code if isinstance(code, int) else 0)


def _report(exc: Exception) -> int:
    """Print an error as one line (and a pointer to ``--debug`` for a bug); its exit code."""
    print(f"geoseg: error: {_one_line(exc)}", file=sys.stderr)
    if isinstance(exc, GeosegError | OSError | MemoryError):
        return 2
    print("geoseg: this looks like a bug: rerun with --debug and report it", file=sys.stderr)
    return 3


_show_other_warning = warnings.showwarning


def _show_warning(message: Warning | str, category: type[Warning], *args: Any, **kwargs: Any) -> None:
    """``GeosegWarning`` as one line on stderr; other warnings as Python shows them."""
    if issubclass(category, GeosegWarning):
        print(f"geoseg: warning: {printable(str(message))}", file=sys.stderr)
    else:
        _show_other_warning(message, category, *args, **kwargs)


def _one_line(exc: BaseException) -> str:
    """The error as one line: GeosegErrors as they are, others with their type and file name."""
    if isinstance(exc, GeosegError):
        return printable(str(exc)) if str(exc) else type(exc).__name__
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    if isinstance(exc, MemoryError):
        return "out of memory (a scene or setting larger than this machine can hold)"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
