"""The local GPU node layout: one model-owning worker per GPU, CPU workers for the rest."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from distributed import Client, get_task_stream

from geoseg.distributed.cluster import (
    GPU,
    MMAP_THRESHOLD_BYTES,
    cluster_client,
    cuda_visible_count,
    gpu_node,
    gpu_node_workers,
    nvml_gpu_count,
)
from geoseg.distributed.run import run_workflow
from geoseg.distributed.worker_setup import CPU_WORKER_ENV
from geoseg.workflow import ClusterConfig, load_workflow
from tests.distributed.conftest import GOOD_SCENES, write_workflow


def test_a_gpu_node_has_one_gpu_worker_per_gpu_and_a_cpu_worker_per_core_left():
    workers = gpu_node_workers(gpu_workers=1, threads_per_worker=1, cpu_workers=None, cores=16)
    assert workers[0] == {"nthreads": 4, "resources": {GPU: 4}}, "one prediction per thread at once"
    assert [name for name in workers if name != 0] == [f"cpu-{i}" for i in range(12)]
    assert all(w == {"nthreads": 1, "env": CPU_WORKER_ENV} for name, w in workers.items() if name != 0)
    assert CPU_WORKER_ENV["CUDA_VISIBLE_DEVICES"] == "", "CPU workers cannot open a CUDA context"


def test_gpu_workers_are_named_by_gpu_index_and_small_machines_keep_one_cpu_worker():
    workers = gpu_node_workers(gpu_workers=2, threads_per_worker=6, cpu_workers=None, cores=8)
    assert [name for name, w in workers.items() if w.get("resources")] == [0, 1]
    assert workers[1]["nthreads"] == 6 and list(workers)[2:] == ["cpu-0"]
    assert len(gpu_node_workers(1, 1, cpu_workers=0, cores=16)) == 1


def test_on_a_gpu_node_the_model_runs_on_the_gpu_worker_and_cpu_workers_take_the_rest(
    sample_data, rgb_checkpoint, tmp_path
):
    """The same layout as on a GPU machine, with the 'GPU' worker running the model on CPU."""
    config = ClusterConfig(cpu_workers=2, dashboard_address="127.0.0.1:0")
    workflow = load_workflow(write_workflow(tmp_path, [sample_data / s for s in GOOD_SCENES], rgb_checkpoint))
    with gpu_node(config, gpus=1) as cluster, Client(cluster) as client:
        client.wait_for_workers(3)
        with get_task_stream(client) as stream:
            report = run_workflow(workflow, scheduler_address=cluster.scheduler_address)
        names = {address: w["name"] for address, w in client.scheduler_info(n_workers=-1)["workers"].items()}
        imported = client.run(lambda: "torch" in sys.modules)  # a lambda travels by value: no test import
        torch_loaded = {names[a]: loaded for a, loaded in imported.items()}
    assert report.ok and report.blocks > 3
    assert torch_loaded == {0: True, "cpu-0": False, "cpu-1": False}, "only the model's worker imports torch"
    assert {w["device"] for name, w in report.workers.items() if name != "0"} == {"cpu"}
    ran_on = {stage: set() for stage in ("load-model", "predict", "polygonise", "mask", "vectors")}
    for task in stream.data:
        for stage, workers in ran_on.items():
            if stage in str(task["key"]):
                workers.add(names[task["worker"]])
    assert ran_on["load-model"] == ran_on["predict"] == {0}, "the model is loaded ahead, on the GPU worker"
    assert (ran_on["polygonise"] | ran_on["mask"] | ran_on["vectors"]) - {0}, "the CPU workers took no work"


def test_gpu_workers_of_a_multi_gpu_node_each_take_their_own_gpu(monkeypatch):
    """Worker N uses GPU N for ``auto`` and ``cuda``; an explicit ``cuda:K`` is kept."""
    import types

    import distributed
    import torch

    from geoseg.distributed.worker_state import worker_device

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(distributed, "get_worker", lambda: types.SimpleNamespace(name=1))
    assert worker_device("auto") == worker_device("cuda") == "cuda:1"
    assert worker_device("cuda:0") == "cuda:0" and worker_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    assert worker_device("auto") == "cpu" and worker_device("cuda") == "cuda"  # refused by the predictor


def _malloc_environ() -> dict[str, str | None]:
    import os

    return {name: os.environ.get(name) for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}


def test_local_workers_keep_arrays_under_32_mib_on_the_heap():
    """Dask's trim threshold stays; glibc's mmap threshold is set so arrays are not re-mapped."""
    config = ClusterConfig(n_workers=1, threads_per_worker=1, dashboard_address="127.0.0.1:0")
    with cluster_client(config, device="cpu") as client:
        (environ,) = client.run(_malloc_environ).values()
    assert environ["MALLOC_MMAP_THRESHOLD_"] == str(MMAP_THRESHOLD_BYTES) == str(32 * 2**20)
    assert environ["MALLOC_TRIM_THRESHOLD_"] is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the driver check is Linux's")
@pytest.mark.parametrize("driver_present", [False, True])
def test_gpus_are_counted_by_torch_only_where_an_nvidia_driver_is_loaded(tmp_path, driver_present):
    """A local run on a Linux machine without the NVIDIA driver does not import torch to count 0
    GPUs; with the driver but without NVML (this machine) torch counts them."""
    mark = tmp_path if driver_present else tmp_path / "absent"
    script = (
        "import sys; from pathlib import Path; import geoseg.distributed.cluster as c; "
        f"c.NVIDIA_DRIVER_MARKS = (Path({str(mark)!r}),); "
        "print(c.visible_gpus(), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    by_torch = driver_present and nvml_gpu_count() is None  # a machine with the driver has NVML
    expected = torch.cuda.device_count() if driver_present else 0
    assert result.stdout.split() == [str(expected), str(by_torch)]


@pytest.mark.parametrize(
    ("variable", "expected"),
    [
        (None, 4),
        ("", 0),
        ("0", 1),
        ("2,0", 2),
        ("1,7,2", 1),
        ("-1", 0),
        ("0, 1", 2),
        ("GPU-3f2a,GPU-99b1", 2),
        ("abc", 0),
        ("0,gpu1,1", 1),
    ],
)
def test_cuda_visible_devices_narrows_the_gpus_as_cuda_reads_it(variable, expected):
    assert cuda_visible_count(variable, gpus=4) == expected


class _FakeNvml:
    """The three NVML entry points geoseg calls, for a machine with ``gpus`` GPUs."""

    def __init__(self, gpus: int) -> None:
        self.gpus, self.open = gpus, False

    def nvmlInit_v2(self) -> int:
        self.open = True
        return 0

    def nvmlDeviceGetCount_v2(self, count) -> int:
        count._obj.value = self.gpus
        return 0

    def nvmlShutdown(self) -> int:
        self.open = False
        return 0


def test_the_driver_counts_gpus_through_nvml_and_cuda_visible_devices(monkeypatch, tmp_path):
    """With the NVIDIA driver's library the run's driver counts GPUs without torch."""
    import ctypes

    import geoseg.distributed.cluster as cluster

    nvml = _FakeNvml(gpus=2)
    monkeypatch.setattr(cluster, "NVIDIA_DRIVER_MARKS", (tmp_path,))
    monkeypatch.setattr(ctypes, "CDLL", lambda name: nvml if name == cluster.NVML_LIBRARY else None)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert cluster.nvml_gpu_count() == 2 and not nvml.open, "NVML is shut down again"
    assert cluster.visible_gpus() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert cluster.visible_gpus() == 1


def test_without_nvml_the_gpu_count_is_none(monkeypatch):
    import ctypes

    import geoseg.distributed.cluster as cluster

    def missing(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(ctypes, "CDLL", missing)
    assert cluster.nvml_gpu_count() is None
