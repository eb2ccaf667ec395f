"""Worker-side state: one loaded model per worker process, reused by every task it runs.

Building the model on the worker takes seconds; shipping it through the scheduler can take
minutes (dask-ml #281). The cache is keyed by checkpoint path, file stamp, device, batch
size, compilation, test-time augmentation and precision; it lives as long as the worker.
"""

from __future__ import annotations

import os
import threading

import torch

from geoseg.inference import Predictor
from geoseg.workflow import TTA, Precision

_PREDICTORS: dict[tuple[str, int, str, int, bool, TTA, Precision], Predictor] = {}
_LOCK = threading.Lock()


def predictor_for(
    checkpoint: str,
    device: str = "auto",
    batch_size: int = 8,
    compile_model: bool = False,
    tta: TTA = "none",
    precision: Precision = "fp32",
) -> Predictor:
    """The process's predictor for ``checkpoint``, loading it on first use."""
    stamp = os.stat(checkpoint).st_mtime_ns
    target = worker_device(device)
    key = (checkpoint, stamp, target, batch_size, compile_model, tta, precision)
    with _LOCK:
        if key not in _PREDICTORS:
            _PREDICTORS[key] = Predictor.from_checkpoint(
                checkpoint, target, batch_size, compile_model, tta, precision
            )
        return _PREDICTORS[key]


def worker_device(device: str) -> str:
    """Resolve ``auto`` and ``cuda`` per worker: with several visible GPUs, worker N takes GPU N mod count.

    Workers pinned to one GPU each (``CUDA_VISIBLE_DEVICES``) all use ``cuda:0``; ``auto``
    without a GPU is the CPU, ``cuda`` without one is left for the predictor to refuse.
    """
    if device not in ("auto", "cuda"):
        return device
    count = torch.cuda.device_count()
    if count == 0:
        return "cpu" if device == "auto" else device
    if count == 1:
        return "cuda:0"
    from distributed import get_worker

    try:
        name = get_worker().name
    except ValueError:
        return "cuda:0"
    index = name if isinstance(name, int) else sum(map(ord, str(name)))
    return f"cuda:{index % count}"
