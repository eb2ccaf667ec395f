"""Stage timings: seconds a process spends in each named pipeline stage.

A per-process accumulator, cheap enough to stay on (a clock read per stage per block, never
per pixel). Benchmarks read it from each Dask worker with ``client.run(stage_seconds)`` and
reset it between runs. On CUDA, kernels run asynchronously: the time of the forward pass is
counted where its results are copied back to the host (no extra synchronisation is added).
"""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

_SECONDS: defaultdict[str, float] = defaultdict(float)
_LOCK = threading.Lock()


@contextmanager
def stage(name: str) -> Iterator[None]:
    """Add the wall time of the ``with`` body to stage ``name``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        elapsed = time.perf_counter() - start
        with _LOCK:
            _SECONDS[name] += elapsed


def stage_seconds() -> dict[str, float]:
    """Seconds per stage accumulated by this process since the last reset."""
    with _LOCK:
        return dict(_SECONDS)


def reset_stages() -> None:
    """Forget this process's stage timings."""
    with _LOCK:
        _SECONDS.clear()
