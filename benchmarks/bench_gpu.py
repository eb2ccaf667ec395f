"""Benchmark (issue 11): the GPU node's table in one run — model, predict, run, library rates.

On a GPU machine (the issue's H100 node: 1 GPU, 16 cores) it prints, for the shipped model (or
``--model``) at tile 512 + its receptive radius, on the real-pixel mosaics of ``_scenes.py``:

1. model only, pixels already on the device: core Mpx/s per batch size;
2. ``Predictor.predict`` from host numpy arrays: core Mpx/s per batch size;
3. ``geoseg predict`` of one scene in-process: seconds after the model is loaded, Mpx/s;
4. ``geoseg run`` of ``--scenes`` scenes (subprocess, local cluster), once per layout: the GPU
   worker alone (``cpu_workers: 0``: it reads, predicts, polygonises and writes on its 4
   threads) and the GPU node (the GPU worker reads and predicts, one CPU worker per core left
   polygonises, stitches and writes): wall seconds, Mpx/s, worker-seconds on the GPU worker and
   on the CPU workers, and from ``nvidia-smi`` sampled every 0.5 s: mean GPU busy, seconds to
   the first busy sample, seconds after the last one (the tail). Vectors are GeoParquet;
6. masks of the GPU (bf16 autocast, and fp32) against the CPU's fp32 on the same 64 tiles: the
   share of pixels whose class differs (issue 11 asks for ≤ 0.1 %);
5. library rates on the same mosaics: rasterio windowed reads of 2048² + halo blocks on
   1, 4 and all threads, and ``rasterio.features.shapes`` on 2048² mask blocks per process.

``--arch WIDTH,DEPTH,UPSAMPLE`` adds an untrained U-Net of that architecture to sections 1-2
(the forward pass's cost does not depend on the weights). Without a GPU, ``--device cpu --size
2048 --scenes 2`` runs every section (GPU busy: n/a; both layouts are then the plain CPU
cluster), which is how this script is checked on CPU-only machines.

    python benchmarks/bench_gpu.py [--size 8192] [--scenes 8] [--device cuda] [--batch-sizes 32,64,128]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import rasterio
import torch
from rasterio.features import shapes
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import benchmark_model, mosaic_scene, scene_megapixels, untrained_model, write_workflow

from geoseg.inference import Predictor
from geoseg.predict import predict_scene, tiling_for
from geoseg.scenes import open_scene, read_window


class GpuBusy:
    """``nvidia-smi`` utilisation sampled every 0.5 s in the background: (seconds, percent)."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._process: subprocess.Popen[str] | None = None

    def __enter__(self) -> GpuBusy:
        smi = shutil.which("nvidia-smi")
        if smi:
            query = [smi, "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "500"]
            self._process = subprocess.Popen(query, stdout=subprocess.PIPE, text=True)
            self.start = time.perf_counter()
            threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self._process is not None and self._process.stdout is not None
        for line in self._process.stdout:
            value = line.strip().split(",")[0]
            if value.replace(".", "").isdigit():
                self.samples.append((time.perf_counter() - self.start, float(value)))

    def __exit__(self, *_: object) -> None:
        if self._process is not None:
            self._process.terminate()

    def summary(self, wall: float) -> str:
        """Mean busy, time to the first busy sample, time after the last one."""
        if not self.samples:
            return "GPU busy n/a (no nvidia-smi)"
        busy = [t for t, percent in self.samples if percent > 0]
        mean = sum(p for _, p in self.samples) / len(self.samples)
        if not busy:
            return f"GPU busy {mean:.0f} % (never busy)"
        tail = wall - busy[-1]
        return f"GPU busy {mean:.0f} % on average; first busy at {busy[0]:.1f} s; {tail:.1f} s after the last"


def tiles_of(scene_path: Path, predictor: Predictor, batch: int) -> tuple[np.ndarray, int]:
    """``batch`` real tiles (tile + halo) of the scene, and the core side in pixels."""
    spec = tiling_for(predictor, 512, None, 2048)
    scene = open_scene(scene_path)
    side = spec.tile_size_px + 2 * spec.halo_px
    pixels, _ = read_window(scene, Window(0, 0, side * 4, side * 4))
    tiles = [
        pixels[:, r : r + side, c : c + side]
        for r in range(0, 4 * side, side)
        for c in range(0, 4 * side, side)
    ]
    return np.stack([tiles[i % len(tiles)] for i in range(batch)]), spec.tile_size_px


def model_only(predictor: Predictor, tiles: np.ndarray, core: int, repeats: int = 5) -> float:
    """Core Mpx/s of normalisation + forward + class on a batch already on the device."""
    device = predictor.device
    with torch.inference_mode():
        pixels = torch.from_numpy(tiles).to(device)
        if device.type == "cuda":
            pixels = pixels.contiguous(memory_format=torch.channels_last)
        mean = torch.tensor(predictor.metadata.normalization.mean, device=device).view(1, -1, 1, 1)
        std = torch.tensor(predictor.metadata.normalization.std, device=device).view(1, -1, 1, 1)

        def once() -> None:
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                predictor.model((pixels.float() - mean) / std).argmax(dim=1)

        once()
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            once()
        _sync(device)
    return repeats * len(tiles) * core**2 / 1e6 / (time.perf_counter() - start)


def from_host(predictor: Predictor, tiles: np.ndarray, core: int, repeats: int = 3) -> float:
    """Core Mpx/s of ``Predictor.predict`` from host numpy tiles (copies and results included)."""
    predictor.predict(tiles)
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.predict(tiles)
    return repeats * len(tiles) * core**2 / 1e6 / (time.perf_counter() - start)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def gpu_vs_cpu(model: Path, scene: Path, device: str) -> str:
    """Share of pixels whose class differs between ``device`` (bf16, then fp32) and the CPU's fp32."""
    cpu = Predictor.from_checkpoint(model, "cpu", 8)
    tiles, _ = tiles_of(scene, cpu, 64)
    reference, _ = cpu.predict(tiles)
    shares = []
    for precision in ("bf16", "fp32"):
        gpu = Predictor.from_checkpoint(model, device, 32, precision=precision)
        classes, _ = gpu.predict(tiles)
        shares.append(100 * float(np.mean(classes != reference)))
    return f"bf16 {shares[0]:.3f} %, fp32 {shares[1]:.3f} % of {reference.size / 1e6:.0f} Mpx"


def library_reads(scene: Path, threads: int, block: int = 2048, halo: int = 64) -> float:
    """Mpx/s of windowed reads of every haloed block of ``scene`` on ``threads`` threads."""
    with rasterio.open(scene) as src:
        width, height = src.width, src.height
    windows = [
        Window(
            max(0, c - halo), max(0, r - halo), min(block + 2 * halo, width), min(block + 2 * halo, height)
        )
        for r in range(0, height, block)
        for c in range(0, width, block)
    ]
    local = threading.local()

    def read(window: Window) -> None:
        if not hasattr(local, "dataset"):
            local.dataset = rasterio.open(scene)
        local.dataset.read(window=window.intersection(Window(0, 0, width, height)))

    start = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(read, windows))
    return width * height / 1e6 / (time.perf_counter() - start)


def library_shapes(mask_path: Path, block: int = 2048) -> float:
    """Mpx/s of ``rasterio.features.shapes`` on 2048² blocks of a class mask, one process."""
    with rasterio.open(mask_path) as src:
        width, height = src.width, src.height
        blocks = [
            src.read(1, window=Window(c, r, min(block, width - c), min(block, height - r)))
            for r in range(0, height, block)
            for c in range(0, width, block)
        ]
    start = time.perf_counter()
    for classes in blocks:
        foreground = (classes == 1).astype(np.uint8)
        sum(1 for _ in shapes(foreground, mask=foreground > 0))
    return width * height / 1e6 / (time.perf_counter() - start)


def run_layout(
    folder: Path,
    scenes: list[Path],
    model: Path,
    args: argparse.Namespace,
    cpu_workers: int | None,
    gpu_threads: int = 4,
) -> str:
    """One ``geoseg run`` of ``scenes`` in a subprocess with this many CPU workers: a table row."""
    workflow = write_workflow(
        folder,
        scenes,
        model,
        n_workers=1,
        threads_per_worker=gpu_threads,
        cpu_workers=cpu_workers,
        device=args.device,
        batch_size=args.run_batch_size,
        precision=args.precision,
        outputs={"vector_formats": ["parquet"], "run_layer": "parquet"},
    )
    with GpuBusy() as busy:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "geoseg", "run", str(workflow)], capture_output=True, text=True
        )
        wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"geoseg run failed:\n{done.stderr[-3000:]}")
    report = json.loads((folder / "out" / "run-report.json").read_text())
    workers = report["workers"].values()
    gpu_s = sum(w["seconds"] for w in workers if w["resources"])
    cpu_s = sum(w["seconds"] for w in workers if not w["resources"])
    mpx = sum(scene_megapixels(s) for s in scenes)
    timeline = report["timeline"]
    stages = "; ".join(
        f"{name} {t['first_start_s']:.1f}-{t['last_stop_s']:.1f} s "
        f"({t['tasks']:.0f} tasks, {t['seconds']:.1f} s)"
        for name, t in timeline["stages"].items()
    )

    def stage_sums(gpu: bool) -> str:
        sums: dict[str, float] = {}
        for w in workers:
            if bool(w["resources"]) == gpu:
                for name, seconds in w["stages"].items():
                    sums[name] = sums.get(name, 0.0) + seconds
        return ", ".join(f"{name} {seconds:.1f}" for name, seconds in sorted(sums.items())) or "none"

    return (
        f"{len(workers)} workers: {wall:.1f} s wall = {mpx / wall:.1f} Mpx/s ({report['summary']['ok']} ok); "
        f"worker-s GPU worker {gpu_s:.0f}, CPU workers {cpu_s:.0f}; {busy.summary(wall)}\n"
        f"    timeline from the driver's start ({report['seconds']:.1f} s in all): cluster up "
        f"{timeline['cluster_ready_s']:.1f} s; {stages}\n"
        f"    stage seconds: GPU worker {stage_sums(True)}; CPU workers {stage_sums(False)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--scenes", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch-sizes", default="32,64,128")
    parser.add_argument("--run-batch-size", type=int, default=32)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--arch", default=None, help="WIDTH,DEPTH,UPSAMPLE of an extra untrained U-Net")
    parser.add_argument("--precision", default="fp32", help="fp32 (geoseg's default) or bf16 (the H100 runs)")
    parser.add_argument("--sections", default="1,3,4,5,6", help="sections to run (1 = 1-2)")
    parser.add_argument(
        "--layouts", default="alone,node", help="section 4: alone, node, node:T (T GPU worker threads)"
    )
    args = parser.parse_args()
    model, what = benchmark_model(args.model)
    with ProcessPoolExecutor(min(args.scenes, os.cpu_count() or 1)) as pool:
        scenes = list(
            pool.map(
                mosaic_scene,
                [args.size] * args.scenes,
                ["DEFLATE"] * args.scenes,
                [300 * i for i in range(args.scenes)],
            )
        )
    mpx = sum(scene_megapixels(s) for s in scenes)
    gpu = torch.cuda.get_device_name() if args.device.startswith("cuda") else "none"
    print(
        f"model: {what}; device {args.device} ({gpu}); {os.cpu_count()} cores; "
        f"{args.scenes} × {args.size}² ({mpx:.0f} Mpx)"
    )

    models = [(model, "benchmark model")]
    if args.arch:
        width, depth, upsample = args.arch.split(",")
        models.append((untrained_model(int(width), int(depth), upsample), f"untrained U-Net {args.arch}"))
    sections = set(args.sections.split(","))
    for path, name in models if "1" in sections else []:
        print(f"\n1-2. model alone, {name} (core Mpx/s): batch | on device | from host numpy")
        for batch in map(int, args.batch_sizes.split(",")):
            predictor = Predictor.from_checkpoint(path, args.device, batch, precision=args.precision)
            tiles, core = tiles_of(scenes[0], predictor, batch)
            on_device, host = model_only(predictor, tiles, core), from_host(predictor, tiles, core)
            print(f"  {batch:4d} | {on_device:8.1f} | {host:8.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        predictor = Predictor.from_checkpoint(
            model, args.device, args.run_batch_size, precision=args.precision
        )
        with GpuBusy() as busy:
            start = time.perf_counter()
            mask = predict_scene(scenes[0], predictor, folder / "mask.tif")
            seconds = time.perf_counter() - start
        if "3" in sections:
            print(
                f"\n3. geoseg predict, one {args.size}² scene after model load: {seconds:.1f} s, "
                f"{scene_megapixels(scenes[0]) / seconds:.1f} Mpx/s; {busy.summary(seconds)}"
            )

        layouts = {"alone": ("GPU worker alone (4 threads)", 0), "node": ("GPU node (+ CPU workers)", None)}
        if "4" in sections:
            print(
                f"\n4. geoseg run, {args.scenes} × {args.size}² ({mpx:.0f} Mpx), batch {args.run_batch_size}:"
            )
        for layout in args.layouts.split(",") if "4" in sections else []:
            kind, _, threads = layout.partition(":")
            name, cpu_workers = layouts[kind]
            gpu_threads = int(threads or 4)
            row = run_layout(folder / layout.replace(":", "-"), scenes, model, args, cpu_workers, gpu_threads)
            print(f"  {name}, GPU worker of {gpu_threads} threads: {row}", flush=True)

        if "5" in sections:
            cores = os.cpu_count() or 1
            reads = ", ".join(
                f"{t} threads {library_reads(scenes[0], t):.0f}" for t in sorted({1, min(4, cores), cores})
            )
            print(
                f"\n5. library: windowed reads of 2048² + halo blocks (Mpx/s): {reads}; "
                f"rasterio.features.shapes on 2048² mask blocks: {library_shapes(mask):.1f} Mpx/s per process"
            )
    if "6" in sections:  # on the CPU itself the comparison is empty, and bf16 there is very slow
        versus = "n/a on the CPU" if args.device == "cpu" else gpu_vs_cpu(model, scenes[0], args.device)
        print(f"\n6. classes differing from the CPU's fp32: {versus}")


if __name__ == "__main__":
    main()
