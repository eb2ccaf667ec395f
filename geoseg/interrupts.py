"""Ctrl-C (or SIGTERM, as ``timeout``, ``kill`` and job schedulers send) in the driver: raised as
``KeyboardInterrupt``, and remembered, so both stop a run the same way (temporaries removed, the
output's lock released).

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
from types import FrameType

STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_RECEIVED: list[int] = []
"""The signals that asked to stop, in order (the first decides the exit code)."""


def install() -> None:
    """Handle Ctrl-C and SIGTERM this way in this process (call from the main thread)."""
    for signum in STOPPING_SIGNALS:
        signal.signal(signum, _on_signal)
    previous = sys.unraisablehook

    def quiet(unraisable: sys.UnraisableHookArgs) -> None:
        if not isinstance(unraisable.exc_value, KeyboardInterrupt):
            previous(unraisable)

    sys.unraisablehook = quiet


def _on_signal(signum: int, frame: FrameType | None) -> None:
    _RECEIVED.append(signum)
    raise KeyboardInterrupt


def requested() -> bool:
    """Whether Ctrl-C was pressed (or SIGTERM received)."""
    return bool(_RECEIVED)


def exit_code() -> int:
    """128 + the stopping signal's number, as shells report it: 130 after Ctrl-C, 143 after SIGTERM."""
    return 128 + (_RECEIVED[0] if _RECEIVED else signal.SIGINT)


def check() -> None:
    """Raise ``KeyboardInterrupt`` if Ctrl-C was pressed, also where Python swallowed it."""
    if _RECEIVED:
        raise KeyboardInterrupt
