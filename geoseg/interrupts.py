"""Ctrl-C in the driver: raised as ``KeyboardInterrupt``, and remembered.

Python raises ``KeyboardInterrupt`` wherever the main thread happens to be. Inside a
garbage-collector callback (Dask installs one) it is printed as "Exception ignored" and
swallowed, so the run would go on; inside an import it surfaces as a ``RuntimeError`` of the
import lock. So the interrupt is also remembered: the batch loop stops at its next check
(``check``), any error after Ctrl-C ends as an interruption (``requested``), and swallowed
interrupts are not printed.
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType

_REQUESTED = threading.Event()


def install() -> None:
    """Handle Ctrl-C this way in this process (call from the main thread)."""
    signal.signal(signal.SIGINT, _on_sigint)
    previous = sys.unraisablehook

    def quiet(unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)

    sys.unraisablehook = quiet


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    _REQUESTED.set()
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether Ctrl-C was pressed."""
    return _REQUESTED.is_set()


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed, also where Python swallowed it."""
    if _REQUESTED.is_set():
        raise KeyboardInterrupt
