"""Benchmark (issue 11): ``geoseg run``'s own cost per pixel against the plain library chain.

The model is a ``linear`` checkpoint (class 1 where band 1 is in its top ``--foreground``
percent: 10 %, a building-like share, as for the U-Net of ``_scenes.py``), whose forward pass
costs almost nothing, so what the run spends is the pipeline's own cost. On the
same real-pixel mosaics (``_scenes.py``) and the same cores, in one invocation:

(a) ``geoseg run`` with ``--workers`` worker processes of one thread, writing COG masks and
    GeoParquet vectors: wall clock of the local cluster's start plus the ``geoseg run``
    subprocess (imports, model loading, every task, run-level outputs). The cluster is started
    here, with the settings ``geoseg run`` uses, only so that the workers' stage timers
    (``geoseg.timing``) can be read afterwards.
(b) The library chain in ``--workers`` processes: per 2048² block, one rasterio windowed read,
    a threshold of band 1, ``rasterio.features.shapes``; nothing written. Pool start included.
    Run before and after (a), and averaged: the machine's speed drifts between runs by more
    than the margin the ratio is judged on.

Prints both Mpx/s and their ratio (the issue's bar: ≥ 0.5), then per stage the worker-seconds
and Mpx/s per core of geoseg beside the library's rate for the same work.

    python benchmarks/bench_pipeline_ceiling.py [--size 8192] [--scenes 4] [--workers 2] [--foreground 10]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
import yaml
from rasterio.features import shapes
from rasterio.windows import Window

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import CACHE, mosaic_scene, scene_megapixels, source_pixels

from geoseg.distributed.cluster import cluster_client
from geoseg.model.checkpoint import save_checkpoint
from geoseg.model.linear import LinearSegmenter
from geoseg.model.metadata import ModelMetadata
from geoseg.timing import stage_seconds
from geoseg.workflow import parse_workflow

LIBRARY_STAGES = ("read", "threshold", "shapes")
MATCHING_STAGES = {
    "read": ("read",),
    "threshold": ("to_device", "forward", "stitch"),
    "shapes": ("polygonise",),
}
"""geoseg stages doing the work of each library stage; the rest (COG, vectors) has no match."""


def threshold_model(foreground_percent: float) -> tuple[Path, float]:
    """A linear checkpoint: class 1 where band 1 (raw uint8) is in its top ``foreground_percent``."""
    pixels, _ = source_pixels()
    valid = (pixels > 0).all(axis=0)
    threshold = float(np.percentile(pixels[0][valid], 100 - foreground_percent)) + 0.5
    path = CACHE / f"linear-band1-above-{threshold:g}.safetensors"
    if not path.exists():
        model = LinearSegmenter.band_threshold(3, band=0, threshold=threshold)
        meta = ModelMetadata.for_generator(
            model, classes=["background", "bright"], mean=[0.0] * 3, std=[1.0] * 3
        )
        CACHE.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, model, meta)
    return path, threshold


_DATASETS: dict[str, Any] = {}


def library_block(path: str, window: tuple[int, int, int, int], threshold: float) -> dict[str, float]:
    """Read one block, threshold band 1, polygonise: seconds per stage and polygons."""
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    if path not in _DATASETS:
        _DATASETS[path] = rasterio.open(path)
    dataset = _DATASETS[path]
    pixels = dataset.read(window=Window(*window))
    seconds["read"] = time.perf_counter() - start
    start = time.perf_counter()
    mask = (pixels[0] > threshold).astype(np.uint8)
    seconds["threshold"] = time.perf_counter() - start
    start = time.perf_counter()
    transform = dataset.window_transform(Window(*window))
    polygons = sum(1 for _ in shapes(mask, mask=mask > 0, transform=transform))
    seconds["shapes"] = time.perf_counter() - start
    return {**seconds, "polygons": polygons}


def library_chain(scenes: list[Path], block: int, threshold: float, processes: int) -> dict[str, float]:
    """Wall seconds and summed stage seconds of the library chain over every block of ``scenes``."""
    tasks = []
    for scene in scenes:
        with rasterio.open(scene) as src:
            width, height = src.width, src.height
        for row in range(0, height, block):
            for col in range(0, width, block):
                window = (col, row, min(block, width - col), min(block, height - row))
                tasks.append((str(scene), window, threshold))
    start = time.perf_counter()
    with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
        results = list(pool.map(library_block, *zip(*tasks, strict=True), chunksize=4))
    totals = {key: sum(r[key] for r in results) for key in (*LIBRARY_STAGES, "polygons")}
    return {**totals, "wall": time.perf_counter() - start}


def geoseg_run(scenes: list[Path], model: Path, folder: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Wall seconds of cluster start + ``geoseg run`` subprocess; workers' stage seconds; report."""
    workflow = {
        "inputs": [str(s) for s in scenes],
        "model": str(model),
        "output": str(folder / "out"),
        "tiling": {"tile_size_px": args.tile_size, "block_size_px": args.block_size},
        "outputs": {"vector_formats": ["parquet"], "run_layer": None},
        "inference": {"device": "cpu"},
        "cluster": {"n_workers": args.workers, "threads_per_worker": 1, "dashboard_address": "127.0.0.1:0"},
    }
    path = folder / "workflow.yaml"
    path.write_text(yaml.safe_dump(workflow))
    config = parse_workflow(workflow, base_dir=folder).cluster
    start, epoch = time.perf_counter(), time.time()
    with cluster_client(config, device="cpu") as client:
        client.wait_for_workers(args.workers)
        marks = {"cluster up": time.time() - epoch}
        command = [sys.executable, "-m", "geoseg", "run", str(path), "--scheduler", client.scheduler.address]
        done = subprocess.run(command, capture_output=True, text=True)
        wall = time.perf_counter() - start
        marks["driver exits"] = time.time() - epoch
        if done.returncode != 0:
            raise SystemExit(f"geoseg run failed:\n{done.stderr[-3000:]}")
        stages = client.run(stage_seconds)
        peak_rss = client.run(_peak_rss_mib)
        computes = [
            (s["start"] - epoch, s["stop"] - epoch, _task_kind(task["key"]))
            for task in client.get_task_stream(start=epoch)
            for s in task["startstops"]
            if s["action"] == "compute"
        ]
    report = json.loads((folder / "out" / "run-report.json").read_text())
    if computes:
        marks["first task starts"] = min(a for a, _, _ in computes)
        marks["last task ends"] = max(b for _, b, _ in computes)
        marks["tasks computing (worker-s)"] = sum(b - a for a, b, _ in computes)
    by_kind: dict[str, float] = {}
    for a, b, kind in computes:
        by_kind[kind] = by_kind.get(kind, 0.0) + b - a
    return {
        "wall": wall,
        "stages": stages,
        "report": report,
        "marks": marks,
        "peak_rss": peak_rss,
        "tasks": by_kind,
    }


def _task_kind(key: Any) -> str:
    """The first element of a run's task key, ("predict", "<scene>@<run>", row, col)."""
    return str(key[0]) if isinstance(key, tuple) else str(key)


def _peak_rss_mib() -> float:
    """This process's peak resident memory in MiB (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def print_figures(mpx: float, ours: dict[str, Any], library: dict[str, float], workers: int) -> None:
    """Headline rates and ratio, then the stage table (Markdown)."""
    ours_rate, library_rate = mpx / ours["wall"], mpx / library["wall"]
    polygons = sum(s.get("polygons") or 0 for s in ours["report"]["scenes"])
    print(f"(a) geoseg run: {ours['wall']:.1f} s wall, {ours_rate:.2f} Mpx/s, {polygons} polygons")
    print(f"    (run report: {ours['report']['seconds']:.1f} s inside the driver)")
    print(
        f"(b) library chain: {library['wall']:.1f} s wall, {library_rate:.2f} Mpx/s, "
        f"{library['polygons']:.0f} polygons (not merged across blocks)"
    )
    print(f"ratio (a) / (b): {ours_rate / library_rate:.2f}  (bar: ≥ 0.5)")
    peaks = ", ".join(f"{mib:.0f}" for mib in sorted(ours["peak_rss"].values()))
    print(f"peak RSS of the workers of (a): {peaks} MiB")
    print(
        "timeline of (a), seconds from the cluster's start: "
        + ", ".join(f"{name} {value:.1f}" for name, value in ours["marks"].items())
    )
    print(
        "tasks computing by kind (worker-s): "
        + ", ".join(f"{kind} {seconds:.1f}" for kind, seconds in sorted(ours["tasks"].items()))
    )
    totals: dict[str, float] = {}
    for seconds in ours["stages"].values():
        for name, value in seconds.items():
            totals[name] = totals.get(name, 0.0) + value
    print("\n| stage | geoseg worker-s | geoseg Mpx/s per core | library s | library Mpx/s per core |")
    print("|---|---|---|---|---|")
    matched: set[str] = set()
    for lib_stage, our_stages in MATCHING_STAGES.items():
        ours_s = sum(totals.get(s, 0.0) for s in our_stages)
        matched.update(our_stages)
        lib_s = library[lib_stage]
        print(
            f"| {lib_stage} ({' + '.join(our_stages)}) | {ours_s:.1f} | {_rate(mpx, ours_s)} "
            f"| {lib_s:.1f} | {_rate(mpx, lib_s)} |"
        )
    for name in sorted(set(totals) - matched):
        print(f"| {name} | {totals[name]:.1f} | {_rate(mpx, totals[name])} | — | — |")
    budget = ours["wall"] * workers
    idle = budget - sum(totals.values())
    print(f"| idle / untimed (of {budget:.0f} worker-s) | {idle:.1f} | | | |")


def _rate(mpx: float, seconds: float) -> str:
    return f"{mpx / seconds:.1f}" if seconds > 0 else "—"


def main() -> None:
    """Build the scenes and the model, measure both chains, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="scene side in pixels")
    parser.add_argument("--scenes", type=int, default=4)
    parser.add_argument("--workers", type=int, default=2, help="geoseg workers = library processes")
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--foreground", type=float, default=10, help="percent of valid pixels in class 1")
    args = parser.parse_args()
    scenes = [mosaic_scene(args.size, offset_px=300 * i) for i in range(args.scenes)]
    model, threshold = threshold_model(args.foreground)
    mpx = sum(scene_megapixels(s) for s in scenes)
    print(
        f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {args.scenes} × {args.size}² "
        f"({mpx:.0f} Mpx); model: linear, band 1 > {threshold:g}; {args.workers} workers / processes"
    )
    before = library_chain(scenes, args.block_size, threshold, args.workers)
    with tempfile.TemporaryDirectory() as tmp:
        ours = geoseg_run(scenes, model, Path(tmp), args)
    after = library_chain(scenes, args.block_size, threshold, args.workers)
    print(f"library chain before / after (a): {before['wall']:.1f} / {after['wall']:.1f} s (mean: (b))")
    print_figures(mpx, ours, {key: (before[key] + after[key]) / 2 for key in before}, args.workers)


if __name__ == "__main__":
    main()
