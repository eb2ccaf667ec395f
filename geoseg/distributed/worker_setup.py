"""Set-up run in every local worker process as it starts (a Dask preload module).

Ctrl-C in a terminal sends SIGINT to the whole process group, worker processes included: each
would print a KeyboardInterrupt traceback while the driver is already stopping the cluster.
Workers therefore ignore SIGINT; the driver alone handles it and closes them cleanly.

A worker also imports the task module (torch, GDAL, GeoPandas: about 2 s) on a background
thread as soon as it starts, while the driver plans the run, instead of when its first task
arrives; a task that arrives earlier waits on Python's import lock for the same import.
The driver names the task functions (``WorkerFunction``) instead of importing them, so it
never imports torch.
"""

from __future__ import annotations

import importlib
import signal
import threading
from dataclasses import dataclass
from typing import Any

TASK_MODULE = "geoseg.distributed.tasks"


def dask_setup(worker: Any) -> None:
    """Called by Dask in the worker process before it takes tasks."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=importlib.import_module, args=(TASK_MODULE,), daemon=True).start()


@dataclass(frozen=True)
class WorkerFunction:
    """A function of a worker-side module, named rather than imported.

    ``geoseg run``'s driver submits ``WorkerFunction("predict_block_task")`` without importing
    the task module (torch, GeoPandas, SciPy: 2 s of a core before the first task could be
    submitted); the worker that runs it imports the module (at start, see ``dask_setup``) and
    calls the function.
    """

    name: str
    module: str = TASK_MODULE

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args, **kwargs)
