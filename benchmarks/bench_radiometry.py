"""Benchmark: what the checkpoint's radiometry costs on a 16-bit scene (issue 12).

A 16-bit scene is stretched once per scene (the percentiles of the decimated sample the
applicability check reads anyway) and every read is scaled as it is read. This times, in one
process and alternating, ``read_window`` of the whole real Landsat 8 scene (2041 × 1860 × 3
uint16, LZW) with the scaling and without it but converted to float32 as the prediction of a
16-bit scene always did (GDAL's block cache holds the scene after the first read, so these are
the costs beyond decoding), and the sample and percentiles that set it up.

    python benchmarks/bench_radiometry.py [--repeats 7]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time
from pathlib import Path

import numpy as np

from geoseg.applicability import sample_pixels
from geoseg.model.metadata import read_metadata
from geoseg.model_input import scaled_scene
from geoseg.sampledata import sample_data_dir
from geoseg.scenes import open_pixels, open_scene, read_window

SHIPPED_MODEL = Path(__file__).parents[1] / "geoseg" / "models" / "buildings-unet.safetensors"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    plain = open_scene(sample_data_dir() / "scenes" / "landsat8-224078-rgb.tif")
    radiometry = read_metadata(SHIPPED_MODEL).radiometry
    started = time.perf_counter()
    sample = sample_pixels(plain)
    sampled = time.perf_counter()
    scaled = scaled_scene(plain, radiometry, sample)
    set_up = time.perf_counter()
    unscaled = dataclasses.replace(scaled, scaling=None)
    times: dict[str, list[float]] = {"unscaled": [], "scaled": []}
    with open_pixels(plain.path) as dataset:
        for _ in range(args.repeats):
            for name, scene in (("unscaled", unscaled), ("scaled", scaled)):
                began = time.perf_counter()
                pixels, _ = read_window(scene, scene.window, dataset)
                pixels.astype(np.float32, copy=False)  # as read_block does for other types than uint8
                times[name].append(time.perf_counter() - began)
    base, with_scaling = (statistics.median(times[n]) for n in ("unscaled", "scaled"))
    mpx = plain.width * plain.height / 1e6
    print(f"scene {plain.width}×{plain.height}×{len(plain.bands)} {plain.dtype} ({mpx:.2f} Mpx)")
    print(f"set-up: sample {1e3 * (sampled - started):.0f} ms, percentiles {1e3 * (set_up - sampled):.1f} ms")
    median = f"median of {args.repeats}"
    print(f"read_window, {median}: unscaled {1e3 * base:.0f} ms, scaled {1e3 * with_scaling:.0f} ms")
    added = with_scaling - base
    print(f"scaling adds {1e3 * added:.0f} ms ({added / base:+.0%}) per {mpx:.2f} Mpx read")


if __name__ == "__main__":
    main()
