"""Benchmark: blockwise ``vectorize_mask`` vs GDAL's polygonize on one large real-label mask.

The mask tiles the real SpaceNet Atlanta building polygons, rasterised onto their 0.5 m
image grid, to ``--size``² pixels (default 8192²), as a tiled, deflate-compressed GeoTIFF.
The baseline is ``rasterio.features.shapes`` on the whole mask in memory, which is
GDALPolygonize itself (what ``gdal_polygonize.py`` runs), 8-connected like ours.

    python benchmarks/bench_vectorize.py [--size 8192] [--block-size 2048]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import tracemalloc
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
import shapely
from rasterio.features import rasterize, shapes

from geoseg.sampledata import sample_data_dir
from geoseg.vectorize import read_features, vectorize_mask

DATA = sample_data_dir()


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


def main() -> None:
    """Build the mask, time both, print the ratio and how equal the polygons are."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192, help="mask side in pixels")
    parser.add_argument("--block-size", type=int, default=2048, help="vectorize block side")
    args = parser.parse_args()
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


if __name__ == "__main__":
    main()
