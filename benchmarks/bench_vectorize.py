"""Benchmark: vectorising per stage against GDAL's polygonize, and whole masks end to end.

1. Stages (default). Real-pixel mosaics (``_scenes.py``, ``--scenes`` × ``--size``²), class 1
   where band 1 is in the top ``--foreground`` percent of the valid pixels (a linear model's
   mask; nodata where the scene has none), cut in ``--block-size``² blocks. Per block,
   alternated so that both see the same machine load: ``rasterio.features.shapes`` on the
   block's binary mask (GDALPolygonize, the library's rate) and ``polygonize_block``. Then per
   scene ``merge_blocks``, ``to_features`` (default clean-up) and the GeoParquet write. Prints
   seconds and Mpx/s per stage beside the library's, so one run shows where vectorising stands.
2. ``--whole-mask``: the real SpaceNet Atlanta building polygons, rasterised onto their 0.5 m
   grid and tiled to ``--size``², as a tiled, deflate-compressed GeoTIFF: ``vectorize_mask``
   end to end against ``rasterio.features.shapes`` on the whole mask in memory (what
   ``gdal_polygonize.py`` runs), 8-connected like ours.

    python benchmarks/bench_vectorize.py [--size 8192] [--scenes 2] [--foreground 10 25] [--whole-mask]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize, shapes

sys.path.insert(0, str(Path(__file__).parent))
from _scenes import mosaic_scene

from geoseg.maskformat import MaskInfo
from geoseg.sampledata import sample_data_dir
from geoseg.vectorize import (
    Cleanup,
    merge_blocks,
    polygonize_block,
    read_features,
    to_features,
    vectorize_mask,
    write_features,
)

DATA = sample_data_dir()
STAGES = ("shapes (library)", "polygonise", "merge", "to_features", "write (GeoParquet)")


def threshold_blocks(
    scene: Path, foreground: float, block: int
) -> tuple[list[tuple[int, int, np.ndarray]], MaskInfo]:
    """The scene's mask blocks: class 1 where band 1 is in its top ``foreground`` %, 255 on nodata."""
    with rasterio.open(scene) as src:
        band = src.read(1)
        info = MaskInfo(src.width, src.height, src.transform, src.crs, ("background", "bright"))
    valid = band != 0
    threshold = np.percentile(band[valid], 100 - foreground)
    classes = np.where(valid, band > threshold, 255).astype(np.uint8)
    blocks = [
        (row, col, np.ascontiguousarray(classes[row : row + block, col : col + block]))
        for row in range(0, info.height, block)
        for col in range(0, info.width, block)
    ]
    return blocks, info


def time_stages(scene: Path, foreground: float, block: int, folder: Path) -> dict[str, float]:
    """Seconds per stage for one scene, and the counts of polygons and pieces."""
    blocks, info = threshold_blocks(scene, foreground, block)
    seconds = dict.fromkeys(STAGES, 0.0)
    pieces, library_polygons = [], 0
    for row, col, classes in blocks:
        start = time.perf_counter()
        binary = (classes == 1).astype(np.uint8)
        transform = info.transform * rasterio.Affine.translation(col, row)
        library_polygons += sum(1 for _ in shapes(binary, mask=binary > 0, transform=transform))
        seconds["shapes (library)"] += time.perf_counter() - start
        start = time.perf_counter()
        pieces.append(polygonize_block(classes, row, col))
        seconds["polygonise"] += time.perf_counter() - start
    start = time.perf_counter()
    components = merge_blocks(pieces)
    seconds["merge"] = time.perf_counter() - start
    start = time.perf_counter()
    features = to_features(components, info, Cleanup(), scene.stem)
    seconds["to_features"] = time.perf_counter() - start
    start = time.perf_counter()
    write_features(features, folder / f"{scene.stem}.parquet")
    seconds["write (GeoParquet)"] = time.perf_counter() - start
    return {
        **seconds,
        "library polygons": library_polygons,
        "pieces": sum(len(p) for p in pieces),
        "polygons": len(features),
    }


def stage_table(args: argparse.Namespace) -> None:
    """Print, per foreground share, seconds and Mpx/s per stage over every scene."""
    scenes = [mosaic_scene(args.size, offset_px=300 * i) for i in range(args.scenes)]
    megapixels = len(scenes) * args.size**2 / 1e6
    print(
        f"machine: {os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}; {len(scenes)} × {args.size}² "
        f"real-pixel mosaics ({megapixels:.0f} Mpx), blocks of {args.block_size}²"
    )
    for foreground in args.foreground:
        with tempfile.TemporaryDirectory() as tmp:
            runs = [time_stages(scene, foreground, args.block_size, Path(tmp)) for scene in scenes]
        total = {key: sum(run[key] for run in runs) for key in runs[0]}
        print(
            f"\nforeground {foreground:g} %: {total['library polygons']:,.0f} GDAL polygons (4-connected, "
            f"per block), {total['pieces']:,.0f} pieces, {total['polygons']:,.0f} merged polygons"
        )
        print("| stage | seconds | Mpx/s | × library (shapes) time |")
        print("|---|---|---|---|")
        library = total["shapes (library)"]
        for stage in STAGES:
            rate = megapixels / total[stage] if total[stage] else float("inf")
            print(f"| {stage} | {total[stage]:.2f} | {rate:.1f} | {total[stage] / library:.2f} |")
        vectorise = sum(total[s] for s in STAGES[1:])
        print(
            f"| polygonise → write | {vectorise:.2f} | {megapixels / vectorise:.1f} "
            f"| {vectorise / library:.2f} |"
        )


def build_mask(size: int, path: Path) -> np.ndarray:
    """Tile the rasterised real Atlanta buildings to ``size``² and write them as a mask."""
    folder = DATA / "labeled" / "spacenet-atlanta-pan"
    with rasterio.open(folder / "image.tif") as image:
        buildings = gpd.read_file(folder / "buildings.geojson").to_crs(image.crs)
        tile = rasterize(buildings.geometry, out_shape=image.shape, transform=image.transform, dtype="uint8")
        crs, transform = image.crs, image.transform
    reps = -(-size // tile.shape[0])
    classes = np.tile(tile, (reps, reps))[:size, :size]
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=1, dtype="uint8",
        nodata=255, crs=crs, transform=transform, tiled=True, blockxsize=512,
        blockysize=512, compress="deflate",
    ) as dst:  # fmt: skip
        dst.write(classes, 1)
    return classes


def gdal_polygonize(path: Path) -> tuple[np.ndarray, float]:
    """GDALPolygonize over the whole mask (read whole into memory); polygons and seconds."""
    start = time.perf_counter()
    with rasterio.open(path) as src:
        classes = src.read(1)
        transform = src.transform
    polygons = [
        shapely.geometry.shape(geojson)
        for geojson, _ in shapes(classes, mask=classes > 0, connectivity=8, transform=transform)
    ]
    return np.array(polygons, dtype=object), time.perf_counter() - start


def whole_mask(args: argparse.Namespace) -> None:
    """Build the Atlanta mask, time both, print the ratio and how equal the polygons are."""
    with tempfile.TemporaryDirectory() as tmp:
        mask, out = Path(tmp) / "mask.tif", Path(tmp) / "polygons.parquet"
        classes = build_mask(args.size, mask)
        print(f"mask: {args.size}² px, {int((classes == 1).sum()):,} building pixels (real labels)")
        del classes
        tracemalloc.start()
        baseline, baseline_s = gdal_polygonize(mask)
        baseline_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.reset_peak()
        summary = vectorize_mask(mask, out, block_size=args.block_size)
        ours_mib = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        ours = read_features(out).geometry.values
    print(
        f"GDALPolygonize (rasterio.features.shapes, whole mask, 8-conn): {baseline_s:.2f} s, "
        f"peak numpy/Python memory {baseline_mib:,.0f} MiB"
    )
    print(
        f"vectorize_mask (blocks of {args.block_size}², merge, attributes, GeoParquet write): "
        f"{summary.seconds:.2f} s, peak {ours_mib:,.0f} MiB  "
        f"({summary.blocks} blocks, {summary.pieces:,} pieces)"
    )
    print(f"time ratio vectorize_mask / GDALPolygonize: {summary.seconds / baseline_s:.2f}")
    union_ours = shapely.coverage_union_all(ours)
    union_gdal = shapely.union_all(shapely.make_valid(baseline))
    difference = shapely.symmetric_difference(union_ours, union_gdal).area
    print(
        f"polygons: ours {len(ours):,}, GDAL {len(baseline):,}; union area ours "
        f"{union_ours.area:,.1f} m², GDAL {union_gdal.area:,.1f} m², "
        f"symmetric difference {difference:.3g} m²"
    )


def main() -> None:
    """Run the stage comparison, and the whole-mask comparison when asked."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="scene / mask side in pixels")
    parser.add_argument("--scenes", type=int, default=2, help="real-pixel mosaics for the stages (0: none)")
    parser.add_argument("--block-size", type=int, default=2048, help="vectorize block side")
    parser.add_argument(
        "--foreground", type=float, nargs="+", default=[10.0, 25.0], help="percent of valid pixels"
    )
    parser.add_argument("--whole-mask", action="store_true", help="also the Atlanta whole-mask run")
    args = parser.parse_args()
    if args.scenes > 0:
        stage_table(args)
    if args.whole_mask:
        print()
        whole_mask(args)


if __name__ == "__main__":
    main()
