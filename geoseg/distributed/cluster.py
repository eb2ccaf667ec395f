"""Clusters: the embedded local cluster, or any existing Dask scheduler.

Without GPUs the local cluster is a few CPU worker processes. On a GPU machine it is laid out
as a GPU node (``gpu_node_workers``): one worker process per GPU, the only process with a CUDA
context, which reads blocks on its threads (GDAL decodes without the GIL) and runs the model,
and one single-threaded CPU worker per core left, which polygonise, stitch and write. Tasks
that run the model require the ``GPU`` resource whenever some worker offers it, so CPU-only
workers never load the model; every other task may run anywhere.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
from distributed import Client, LocalCluster, Nanny, Scheduler, SpecCluster

from geoseg.distributed.worker_setup import CPU_WORKER_ENV
from geoseg.errors import ConfigError
from geoseg.workflow import ClusterConfig, dashboard_problem

GPU = "GPU"
CONNECT_TIMEOUT_S = 15.0
"""How long ``--scheduler`` may take to answer before the run gives up."""


@contextlib.contextmanager
def cluster_client(
    config: ClusterConfig, scheduler_address: str | None = None, device: str = "auto"
) -> Iterator[Client]:
    """A connected client; a local cluster is started (and stopped) when no address is given,
    laid out as a GPU node when ``device`` (``inference.device``) lets the model use a GPU."""
    if scheduler_address:
        with _connect(scheduler_address) as client:
            yield client
        return
    with _local_cluster(config, device) as cluster, Client(cluster) as client:
        yield client


def _connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """A client of the scheduler at ``address``; a ``ConfigError`` naming it when that fails."""
    try:
        return Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--scheduler {address}: cannot connect ({reason})") from None


_QUIET = logging.CRITICAL  # failures are reported per scene, not as worker logs
_PRELOAD = ["geoseg.distributed.worker_setup"]  # workers leave Ctrl-C to the driver
GPU_WORKER_THREADS = 4
"""Threads of a GPU worker at least: blocks are read on three while one has the GPU."""


MMAP_THRESHOLD_BYTES = 32 * 2**20
"""glibc serves allocations below this from its heap in local workers (``MALLOC_MMAP_THRESHOLD_``).

Dask starts workers with ``MALLOC_TRIM_THRESHOLD_`` set, which turns off glibc's adaptive mmap
threshold: every array over 128 KiB then comes from a fresh ``mmap`` whose pages fault in on
first touch, and polygonising a 2048² block took 1.48× as long (2.94 → 4.35 s for 16 blocks).
32 MiB is the adaptive threshold's own ceiling; Dask's trim threshold still returns freed memory
at the top of the heap.
"""


def _worker_environ() -> dict[str, str]:
    """Dask's pre-spawn environment for workers, with geoseg's glibc mmap threshold."""
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    environ.setdefault("MALLOC_MMAP_THRESHOLD_", str(MMAP_THRESHOLD_BYTES))
    return environ


def _local_cluster(config: ClusterConfig, device: str) -> Any:
    with dask.config.set({"distributed.nanny.pre-spawn-environ": _worker_environ()}):
        return _start_local_cluster(config, device)


def _start_local_cluster(config: ClusterConfig, device: str) -> Any:
    if problem := dashboard_problem(config.dashboard_address):
        raise ConfigError(problem)
    gpus = _gpus_for(device)
    if not gpus:
        return LocalCluster(
            n_workers=config.n_workers or 2,
            threads_per_worker=config.threads_per_worker,
            memory_limit=config.memory_limit,
            dashboard_address=config.dashboard_address,
            silence_logs=_QUIET,
            preload=_PRELOAD,
            processes=True,
        )
    return gpu_node(config, gpus)


def gpu_node(config: ClusterConfig, gpus: int) -> SpecCluster:
    """A local GPU node: ``gpu_node_workers`` as worker processes, and a scheduler."""
    common = {
        "host": "127.0.0.1",
        "silence_logs": _QUIET,
        "preload": _PRELOAD,
        "memory_limit": config.memory_limit,
    }
    workers = {
        name: {"cls": Nanny, "options": {**common, **options}}
        for name, options in gpu_node_workers(
            config.n_workers or gpus, config.threads_per_worker, config.cpu_workers, os.cpu_count() or 1
        ).items()
    }
    scheduler = {
        "cls": Scheduler,
        "options": {"host": "127.0.0.1", "dashboard": True, "dashboard_address": config.dashboard_address},
    }
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=_QUIET)


def gpu_node_workers(
    gpu_workers: int, threads_per_worker: int, cpu_workers: int | None, cores: int
) -> dict[int | str, dict[str, Any]]:
    """Worker names and options of a GPU node: GPU workers ``0..n-1``, then ``cpu-0..``.

    A GPU worker's integer name picks its GPU (``worker_state.worker_device``); it declares
    one ``GPU`` unit per thread, so that as many prediction tasks run at once (each reads its
    block, then shares the one GPU). CPU workers default to one per core the GPU workers'
    threads leave, at least one; they see no GPU and never import torch (``CPU_WORKER_ENV``).
    """
    threads = max(GPU_WORKER_THREADS, threads_per_worker)
    if cpu_workers is None:
        cpu_workers = max(1, cores - gpu_workers * threads)
    workers: dict[int | str, dict[str, Any]] = {
        i: {"nthreads": threads, "resources": {GPU: threads}} for i in range(gpu_workers)
    }
    workers.update({f"cpu-{i}": {"nthreads": 1, "env": dict(CPU_WORKER_ENV)} for i in range(cpu_workers)})
    return workers


NVIDIA_DRIVER_MARKS = (Path("/proc/driver/nvidia"), Path("/dev/dxg"))
"""The NVIDIA kernel driver's proc folder, and WSL 2's GPU device: without either, a Linux
machine has no CUDA GPU."""


def visible_gpus() -> int:
    """The CUDA GPUs this process may use, counted without importing torch where possible.

    On a Linux machine without the NVIDIA driver: 0. Elsewhere the driver's NVML library counts
    the GPUs and ``CUDA_VISIBLE_DEVICES`` narrows them (``cuda_visible_count``); only without
    NVML does torch count them. Importing torch takes seconds (3.0 s in a fresh process on an
    H200 machine), and the workers start only after the count (BENCHMARKS.md, "GPU node").
    """
    if sys.platform.startswith("linux") and not any(mark.exists() for mark in NVIDIA_DRIVER_MARKS):
        return 0
    gpus = nvml_gpu_count()
    if gpus is not None:
        return cuda_visible_count(os.environ.get("CUDA_VISIBLE_DEVICES"), gpus)
    import torch

    return torch.cuda.device_count()


def _gpus_for(device: str) -> int:
    """The GPUs a local cluster gives workers for ``inference.device``; a CUDA device this
    machine does not show is refused before any worker starts (each scene would fail alone)."""
    if device == "cpu":
        return 0
    gpus = visible_gpus()
    if device == "auto":
        return gpus
    index = int(device.partition(":")[2] or 0)
    if index >= gpus:
        raise ConfigError(
            f"inference.device: {device}, but this machine shows {gpus} CUDA GPU"
            f"{'' if gpus == 1 else 's'} (use auto or cpu)"
        )
    return gpus if device == "cuda" else 1


NVML_LIBRARY = "libnvidia-ml.so.1"


def nvml_gpu_count() -> int | None:
    """The GPUs NVIDIA's management library (shipped with the driver) sees; None without it."""
    try:
        nvml = ctypes.CDLL(NVML_LIBRARY)
    except OSError:
        return None
    count = ctypes.c_uint(0)
    try:
        if nvml.nvmlInit_v2() != 0:
            return None
        try:
            return None if nvml.nvmlDeviceGetCount_v2(ctypes.byref(count)) != 0 else int(count.value)
        finally:
            nvml.nvmlShutdown()
    except AttributeError:  # a library without these entry points
        return None


def cuda_visible_count(variable: str | None, gpus: int) -> int:
    """How many of ``gpus`` CUDA shows under ``CUDA_VISIBLE_DEVICES=variable``.

    Unset: all. Otherwise its comma-separated entries up to the first that names no device, as
    CUDA reads them: an index outside ``0..gpus-1``, an empty entry or any other word ends the
    list; UUIDs (``GPU-…``, ``MIG-…``) count as given.
    """
    if variable is None:
        return gpus
    count = 0
    for entry in (e.strip() for e in variable.split(",")):
        index = entry.isdigit() and int(entry) < gpus
        if not (index or entry.startswith(("GPU-", "MIG-"))):
            break
        count += 1
    return count


@dataclass(frozen=True)
class Placement:
    """Where a run's tasks go, as ``Client.submit`` keywords.

    With GPU workers, tasks that run the model require the ``GPU`` resource, and every other
    task prefers the CPU-only workers (a loose restriction: others take it when none is left),
    so the GPU workers' threads stay free for reading and predicting. Without GPU workers,
    tasks go anywhere.
    """

    model: dict[str, Any] = field(default_factory=dict)
    other: dict[str, Any] = field(default_factory=dict)
    gpu_workers: tuple[str, ...] = ()
    """Addresses of the workers that declare the ``GPU`` resource."""

    @property
    def gpus(self) -> bool:
        """Whether the model runs on GPU workers."""
        return bool(self.model)


def placement(client: Client) -> Placement:
    """The placement for the workers connected now."""
    workers = client.scheduler_info(n_workers=-1)["workers"]
    gpu = {address for address, w in workers.items() if w.get("resources", {}).get(GPU)}
    cpu = [address for address in workers if address not in gpu]
    if not gpu:
        return Placement()
    other = {"workers": cpu, "allow_other_workers": True} if cpu else {}
    return Placement({"resources": {GPU: 1}}, other, tuple(sorted(gpu)))


def dashboard_link(client: Client) -> str | None:
    """The dashboard URL, when the scheduler serves one."""
    return client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else None
