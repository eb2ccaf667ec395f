"""Set-up run in every local worker process as it starts (a Dask preload module).

Ctrl-C in a terminal sends SIGINT to the whole process group, worker processes included: each
would print a KeyboardInterrupt traceback while the driver is already stopping the cluster.
Workers therefore ignore SIGINT; the driver alone handles it and closes them cleanly.
"""

from __future__ import annotations

import signal
import threading
from typing import Any


def dask_setup(worker: Any) -> None:
    """Called by Dask in the worker process before it takes tasks."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
