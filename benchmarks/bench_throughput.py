"""Benchmark (issue 6): model-only vs end-to-end ``geoseg run`` throughput, and where time goes.

1. Model only: forward passes (normalisation, network, class/probability) of real tiles at the
   configured tile + halo and batch size, already on the device, after a warm-up; run on every
   worker of the cluster at once (same processes, threads and device as the pipeline), before
   and after the end-to-end run, summed over workers.
2. End to end: ``run_workflow`` on a real-pixel mosaic on a fresh local cluster (model loading,
   reads, predict, parts, polygonising, COG and vectors; cluster start-up excluded).
3. Pipeline efficiency = end-to-end core Mpx/s ÷ model-only core Mpx/s (the halo overhead is
   in both, so this measures only what the pipeline adds).
4. Peak RSS of each worker process; 5. seconds per stage summed over workers (``geoseg.timing``).

``--compare REF`` also runs ``geoseg run`` as a subprocess from a git worktree of REF and from
this tree, alternating, for a before/after wall-time ratio in the same invocation.

    python benchmarks/bench_throughput.py [--size 2048] [--device cpu] [--compare HEAD~1]
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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from distributed import Client, LocalCluster

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import REPO, benchmark_model, mosaic_scene, scene_megapixels, worktree, write_workflow

from geoseg.distributed.run import run_workflow
from geoseg.distributed.worker_state import worker_device
from geoseg.inference import Predictor
from geoseg.model.unet import class_probabilities
from geoseg.predict import tiling_for
from geoseg.scenes import open_scene, read_window
from geoseg.tiling import block_grid, tiles_in_block
from geoseg.timing import reset_stages, stage_seconds
from geoseg.workflow import load_workflow

MODEL_BATCHES = 3
STAGES = ("read", "to_device", "forward", "stitch", "polygonise", "assemble", "vectorise")


def model_throughput(
    model: Path, device: str, batch_size: int, scene_path: Path, tile_size: int, compile_model: bool = False
) -> float:
    """Tiles/s of the network alone on one batch of real tiles already on the device.

    Normalisation, forward pass and class/probability, after a warm-up batch; it runs as a task
    on a worker, with the same threads and device as the pipeline's tasks.
    """
    predictor = Predictor.from_checkpoint(model, worker_device(device), batch_size, compile_model)
    scene = open_scene(scene_path)
    spec = tiling_for(predictor, tile_size, None, tile_size * 4)
    first = block_grid(scene.width, scene.height, spec)[0]
    tiles = list(tiles_in_block(first, scene.width, scene.height, spec))[:batch_size]
    pixels = torch.from_numpy(np.stack([read_window(scene, t.read)[0] for t in tiles])).to(predictor.device)
    norm = predictor.metadata.normalization
    mean = torch.tensor(norm.mean, device=predictor.device).view(1, -1, 1, 1)
    std = torch.tensor(norm.std, device=predictor.device).view(1, -1, 1, 1)
    autocast = predictor.device.type == "cuda"

    @torch.inference_mode()
    def forward() -> None:
        with torch.autocast(predictor.device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = predictor.model((pixels.float() - mean) / std)
        class_probabilities(logits.float()).max(dim=1)[0].cpu()

    forward()
    start = time.perf_counter()
    for _ in range(MODEL_BATCHES):
        forward()
    return MODEL_BATCHES * len(tiles) / (time.perf_counter() - start)


def peak_rss_mib() -> float:
    """This process's peak resident memory (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def on_every_worker(client: Client, function: Callable[..., float], *args: object) -> float:
    """Run ``function`` as a task on every worker at once (as the pipeline loads them); the sum."""
    workers = list(client.scheduler_info(n_workers=-1)["workers"])
    futures = [
        client.submit(function, *args, workers=[w], allow_other_workers=False, pure=False) for w in workers
    ]
    return float(sum(client.gather(futures)))


def measure(workflow_path: Path, scene: Path) -> dict[str, object]:
    """Model-only tiles/s on the cluster before and after a timed end-to-end run.

    Also the run's stage seconds and each worker's peak RSS.
    """
    workflow = load_workflow(workflow_path)
    config, tiling, inference = workflow.cluster, workflow.tiling, workflow.inference
    model_args = (
        workflow.model,
        inference.device,
        inference.batch_size,
        scene,
        tiling.tile_size_px,
        inference.compile_model,
    )
    with (
        LocalCluster(
            n_workers=config.n_workers,
            threads_per_worker=config.threads_per_worker,
            processes=True,
            dashboard_address=config.dashboard_address,
        ) as cluster,
        Client(cluster) as client,
    ):
        client.wait_for_workers(config.n_workers or 1)
        model_before = on_every_worker(client, model_throughput, *model_args)
        client.run(reset_stages)
        report = run_workflow(workflow, scheduler_address=cluster.scheduler_address)
        if not report.ok:
            raise SystemExit(f"run failed: {[s.error for s in report.scenes]}")
        stages = client.run(stage_seconds)
        model_after = on_every_worker(client, model_throughput, *model_args)
        memory = client.run(peak_rss_mib)
    return {
        "seconds": report.seconds,
        "polygons": sum(s.polygons or 0 for s in report.scenes),
        "model_tiles_s": (model_before, model_after),
        "workers": {w: {**stages[w], "peak_rss_mib": memory[w]} for w in stages},
    }


def compare_refs(ref: str, workflow_path: Path, repeat: int) -> dict[str, list[float]]:
    """Wall seconds of ``geoseg run`` from a worktree of ``ref`` and from this tree, alternating."""
    before = worktree(ref)
    seconds: dict[str, list[float]] = {ref: [], "this tree": []}
    for _ in range(repeat):
        for name, tree in ((ref, before), ("this tree", REPO)):
            seconds[name].append(_subprocess_run(tree, workflow_path))
    return seconds


def _subprocess_run(tree: Path, workflow_path: Path) -> float:
    """``python -m geoseg run`` with ``tree`` first on the path; the run report's seconds."""
    out = workflow_path.parent / "out"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run(
        [sys.executable, "-m", "geoseg", "run", str(workflow_path)], env=env, check=True, capture_output=True
    )
    return float(json.loads((out / "run-report.json").read_text())["seconds"])


def main() -> None:
    """Measure, then print the figures as Markdown-ready lines."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, help="checkpoint (default: shipped, else untrained)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    parser.add_argument("--size", type=int, default=4096, help="scene side in pixels")
    parser.add_argument("--scenes", type=int, default=1, help="scenes in the batch (shifted mosaics)")
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--block-size", type=int, default=2048)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads-per-worker", type=int, default=1)
    parser.add_argument("--compile", action="store_true", help="torch.compile the network on each worker")
    parser.add_argument("--compare", metavar="REF", help="git ref to compare wall times against")
    parser.add_argument("--repeat", type=int, default=1, help="alternating runs per tree with --compare")
    args = parser.parse_args()

    model, described = benchmark_model(args.model)
    scenes = [mosaic_scene(args.size, offset_px=300 * i) for i in range(args.scenes)]
    scene = scenes[0]
    mpx = sum(scene_megapixels(s) for s in scenes)
    print(f"machine: {os.cpu_count()} CPUs, torch {torch.__version__}; model: {described}")
    names = ", ".join(s.name for s in scenes)
    print(f"scenes {names} ({mpx:.1f} Mpx); {args.workers} workers × {args.threads_per_worker} threads")
    with tempfile.TemporaryDirectory() as tmp:
        workflow = write_workflow(
            Path(tmp), scenes, model, n_workers=args.workers, threads_per_worker=args.threads_per_worker,
            device=args.device, tile_size_px=args.tile_size, block_size_px=args.block_size,
            batch_size=args.batch_size, compile_model=args.compile,
        )  # fmt: skip
        result = measure(workflow, scene)
        print_figures(result, mpx, args.tile_size, args.batch_size)
        if args.compare:
            walls = compare_refs(args.compare, workflow, args.repeat)
            for name, values in walls.items():
                print(f"geoseg run from {name}: " + ", ".join(f"{v:.1f} s" for v in values))
            ratio = np.median(walls[args.compare]) / np.median(walls["this tree"])
            print(f"wall-time ratio {args.compare} / this tree (medians): {ratio:.2f}")


def print_figures(result: dict[str, Any], mpx: float, tile_size: int, batch_size: int) -> None:
    """Model-only and end-to-end throughput, their ratio, memory and the stage breakdown."""
    before, after = result["model_tiles_s"]
    model_mpx_s = (before + after) / 2 * tile_size**2 / 1e6
    e2e_mpx_s = mpx / result["seconds"]
    print(f"model only (all workers, tile {tile_size}, batch {batch_size}): ", end="")
    print(f"{before:.2f} / {after:.2f} tiles/s before / after the run, {model_mpx_s:.3f} Mpx/s")
    print(f"end to end: {result['seconds']:.1f} s, {e2e_mpx_s:.3f} Mpx/s, {result['polygons']} polygons")
    print(f"pipeline efficiency: {e2e_mpx_s / model_mpx_s:.0%}")
    print_breakdown(result["workers"], result["seconds"])


def print_breakdown(workers: dict[str, dict[str, float]], seconds: float) -> None:
    """Peak RSS per worker and seconds per stage (summed over workers, share of worker time)."""
    for name, stats in workers.items():
        print(f"worker {name}: peak RSS {stats['peak_rss_mib']:.0f} MiB")
    budget = seconds * len(workers)
    totals = {s: sum(w.get(s, 0.0) for w in workers.values()) for s in STAGES}
    other = budget - sum(totals.values())
    cells = [f"{s} {v:.1f} s ({v / budget:.0%})" for s, v in totals.items()]
    print(
        "stages (worker-seconds): " + ", ".join(cells) + f", idle/other {other:.1f} s ({other / budget:.0%})"
    )


if __name__ == "__main__":
    main()
