"""Benchmark: peak memory of the run-level layer, appended per scene vs gathered in memory.

Builds ``--scenes`` per-scene GeoPackages, each holding the real SpaceNet Atlanta building
polygons repeated to ``--polygons`` features, then writes the run layer two ways, each in a
fresh process so peak RSS is its own: ``gather_layers`` to a GeoPackage (appends one scene at
a time) and the in-memory baseline (concatenate every scene, write once). Prints seconds, peak
RSS above the process's start, and checks both layers hold the same features.

    python benchmarks/bench_gather.py [--scenes 20] [--polygons 50000]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import resource
import tempfile
import threading
import time
from pathlib import Path

import geopandas as gpd
import pandas as pd

from geoseg.sampledata import sample_data_dir
from geoseg.vectorize import gather_layers, read_features, write_features
from geoseg.vectorize.formats import WGS84


def build_scenes(folder: Path, scenes: int, polygons: int) -> list[Path]:
    """Per-scene layers of real building polygons (repeated and shifted to ``polygons`` each)."""
    buildings = gpd.read_file(sample_data_dir() / "labeled" / "spacenet-atlanta-pan" / "buildings.geojson")
    buildings = buildings.to_crs(buildings.estimate_utm_crs())[["geometry"]]
    reps = -(-polygons // len(buildings))
    tiled = pd.concat([buildings.translate(2000.0 * i, 0) for i in range(reps)], ignore_index=True)[:polygons]
    layer = gpd.GeoDataFrame({"class_id": 1, "area_m2": tiled.area}, geometry=tiled.values, crs=buildings.crs)
    paths = []
    for i in range(scenes):
        shifted = layer.set_geometry(layer.translate(0, 3000.0 * i).values)
        paths.append(
            write_features(shifted.assign(scene_id=f"scene-{i:03d}"), folder / f"scene-{i:03d}.gpkg")
        )
    return paths


def in_memory(paths: list[Path], out: Path) -> int:
    """The baseline: every scene in one frame, written once."""
    frames = [read_features(p).to_crs(WGS84) for p in paths]
    gathered = gpd.GeoDataFrame(pd.concat(frames, ignore_index=True), crs=WGS84)
    write_features(gathered, out)
    return len(gathered)


def rss_mib() -> float:
    """This process's resident set size now (Linux)."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * resource.getpagesize() / 2**20


def _measure(name: str, paths: list[Path], out: Path, queue: mp.Queue) -> None:
    start, peak, running = rss_mib(), [0.0], True

    def sample() -> None:
        while running:
            peak[0] = max(peak[0], rss_mib())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample)
    sampler.start()
    began = time.perf_counter()
    count = (gather_layers if name == "append" else in_memory)(paths, out)
    seconds = time.perf_counter() - began
    running = False
    sampler.join()
    queue.put((count, seconds, peak[0] - start))


def measure(name: str, paths: list[Path], out: Path) -> tuple[int, float, float]:
    """Features, seconds and peak RSS growth (MiB) of one way, in a fresh process."""
    context = mp.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_measure, args=(name, paths, out, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenes", type=int, default=20)
    parser.add_argument("--polygons", type=int, default=50_000, help="features per scene")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = build_scenes(folder, args.scenes, args.polygons)
        size_mb = sum(p.stat().st_size for p in paths) / 2**20
        print(f"{args.scenes} scenes × {args.polygons} polygons ({size_mb:.0f} MiB of GeoPackages)")
        results = {name: measure(name, paths, folder / f"run-{name}.gpkg") for name in ("append", "memory")}
        for name, (count, seconds, peak) in results.items():
            print(f"{name:>7}: {count} features, {seconds:.1f} s, peak RSS +{peak:.0f} MiB")
        append, memory = (read_features(folder / f"run-{n}.gpkg") for n in ("append", "memory"))
        assert len(append) == len(memory) and append.geometry.geom_equals_exact(memory.geometry, 1e-9).all()
        ratio = results["memory"][2] / max(results["append"][2], 1)
        print(f"identical layers; in-memory peak / append peak = {ratio:.1f}×")


if __name__ == "__main__":
    main()
