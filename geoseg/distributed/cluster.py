"""Clusters: the embedded local cluster, or any existing Dask scheduler.

Locally, one worker process per GPU when CUDA GPUs are visible (dask-cuda's
``LocalCUDACluster`` when installed), each declaring a ``GPU`` resource; otherwise a few CPU
worker processes. Inference tasks require ``GPU`` whenever some worker offers it, so CPU-only
workers of a mixed cluster never take them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from distributed import Client, LocalCluster

from geoseg.errors import ConfigError
from geoseg.workflow import ClusterConfig

GPU = "GPU"
CONNECT_TIMEOUT_S = 15.0
"""How long ``--scheduler`` may take to answer before the run gives up."""


@contextlib.contextmanager
def cluster_client(config: ClusterConfig, scheduler_address: str | None = None) -> Iterator[Client]:
    """A connected client; a local cluster is started (and stopped) when no address is given."""
    if scheduler_address:
        with _connect(scheduler_address) as client:
            yield client
        return
    with _local_cluster(config) as cluster, Client(cluster) as client:
        yield client


def _connect(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Client:
    """A client of the scheduler at ``address``; a ``ConfigError`` naming it when that fails."""
    try:
        return Client(address, timeout=timeout_s)
    except (OSError, TimeoutError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--scheduler {address}: cannot connect ({reason})") from None


def _local_cluster(config: ClusterConfig) -> Any:
    gpus = _visible_gpus() if config.device in ("auto", "cuda") else 0
    common: dict[str, Any] = {
        "threads_per_worker": config.threads_per_worker,
        "memory_limit": config.memory_limit,
        "dashboard_address": config.dashboard_address,
        "silence_logs": logging.CRITICAL,  # failures are reported per scene, not as worker logs
        "preload": ["geoseg.distributed.worker_setup"],  # workers leave Ctrl-C to the driver
    }
    if gpus:
        # Two threads per GPU worker: one task reads and polygonises while another has the GPU.
        common["threads_per_worker"] = max(2, config.threads_per_worker)
        try:
            from dask_cuda import LocalCUDACluster

            return LocalCUDACluster(n_workers=config.n_workers or gpus, resources={GPU: 1}, **common)
        except ImportError:
            return LocalCluster(
                n_workers=config.n_workers or gpus, resources={GPU: 1}, processes=True, **common
            )
    return LocalCluster(n_workers=config.n_workers or 2, processes=True, **common)


def _visible_gpus() -> int:
    import torch

    return torch.cuda.device_count()


def gpu_workers(client: Client) -> int:
    """How many connected workers declare the GPU resource."""
    workers = client.scheduler_info(n_workers=-1)["workers"].values()
    return sum(1 for w in workers if w.get("resources", {}).get(GPU))


def dashboard_link(client: Client) -> str | None:
    """The dashboard URL, when the scheduler serves one."""
    return client.dashboard_link if client.scheduler_info().get("services", {}).get("dashboard") else None
