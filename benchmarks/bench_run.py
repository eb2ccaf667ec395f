"""Benchmark (issue 4): a set of scenes by a naive loop vs ``geoseg run`` with 1 and 2 workers.

(a) Naive: the textbook single-process loop. Per scene, read the whole image into memory,
    reflect-pad it, cut overlapping tiles (each with its own halo), predict them in batches,
    write the whole mask as a GeoTIFF. No vectors, no COG, no nodata handling, no resume.
(b) ``geoseg run`` on a local cluster with 1 worker of ``--cores`` threads, and
(c) with ``--cores`` workers of 1 thread each. Both also write COG masks, vectors (GeoPackage
    and GeoJSON), the results catalog and the run report; cluster start-up is included.

Scenes are real-pixel mosaics (``_scenes.py``) shifted against each other.

    python benchmarks/bench_run.py [--scenes 3] [--size 3072] [--model PATH]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import rasterio

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import benchmark_model, mosaic_scene, write_workflow

from geoseg.inference import Predictor
from geoseg.predict import tiling_for


def naive_predict(scene: Path, predictor: Predictor, out: Path, tile: int) -> None:
    """Whole image in memory, overlapping haloed tiles, one GeoTIFF written at the end."""
    halo = tiling_for(predictor, tile, None, tile).halo_px
    with rasterio.open(scene) as src:
        image = src.read()
        profile = {**src.profile, "count": 1, "nodata": None}
    _, height, width = image.shape
    rows, cols = -(-height // tile), -(-width // tile)
    pad = ((0, 0), (halo, rows * tile - height + halo), (halo, cols * tile - width + halo))
    padded = np.pad(image, pad, "reflect")
    mask = np.zeros((rows * tile, cols * tile), dtype=np.uint8)
    origins = [(r * tile, c * tile) for r in range(rows) for c in range(cols)]
    for start in range(0, len(origins), predictor.batch_size):
        batch = origins[start : start + predictor.batch_size]
        tiles = np.stack([padded[:, y : y + tile + 2 * halo, x : x + tile + 2 * halo] for y, x in batch])
        classes, _ = predictor.predict(tiles)
        for (y, x), tile_classes in zip(batch, classes, strict=True):
            mask[y : y + tile, x : x + tile] = tile_classes[halo : halo + tile, halo : halo + tile]
    with rasterio.open(out, "w", **{**profile, "dtype": "uint8", "compress": "deflate"}) as dst:
        dst.write(mask[:height, :width], 1)


def geoseg_run(workflow: Path) -> float:
    """Wall seconds of ``geoseg run WORKFLOW`` as a user runs it (subprocess, cluster included)."""
    start = time.perf_counter()
    command = [sys.executable, "-m", "geoseg", "run", str(workflow)]
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"geoseg run failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main() -> None:
    """Time the three ways on the same scenes and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--size", type=int, default=3072, help="scene side in pixels")
    parser.add_argument("--model", type=Path, help="checkpoint (default: shipped, else untrained)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--tile-size", type=int, default=512)
    parser.add_argument("--block-size", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()
    model, described = benchmark_model(args.model)
    scenes = [mosaic_scene(args.size, offset_px=i * 300) for i in range(args.scenes)]
    print(f"model: {described}; {args.scenes} scenes of {args.size}²; {args.cores} cores")
    tiling = {"tile_size_px": args.tile_size, "block_size_px": args.block_size, "batch_size": args.batch_size}
    walls: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        predictor = Predictor.from_checkpoint(model, device="cpu", batch_size=args.batch_size)
        for scene in scenes:
            naive_predict(scene, predictor, Path(tmp) / f"naive-{scene.name}", args.tile_size)
        walls["(a) naive loop, 1 process"] = time.perf_counter() - start
        del predictor
        setups = {f"(b) geoseg run, 1 worker × {args.cores} threads": (1, args.cores)}
        setups[f"(c) geoseg run, {args.cores} workers × 1 thread"] = (args.cores, 1)
        for i, (name, (workers, threads)) in enumerate(setups.items()):
            folder = Path(tmp) / f"run{i}"
            workflow = write_workflow(
                folder, scenes, model, n_workers=workers, threads_per_worker=threads, **tiling
            )
            walls[name] = geoseg_run(workflow)
    baseline = walls["(a) naive loop, 1 process"]
    print("| how | wall | naive ÷ this |")
    print("|---|---|---|")
    for name, seconds in walls.items():
        print(f"| {name} | {seconds:.1f} s | {baseline / seconds:.2f} |")


if __name__ == "__main__":
    main()
