"""Helpers for the vectorize tests: in-memory blockwise vectorising and small mask files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.transform import Affine

from geoseg.vectorize import Components, merge_blocks, polygonize_block
from geoseg.vectorize.polygonize import Connectivity


def vectorize_array(
    classes: np.ndarray,
    block_size: int,
    connectivity: Connectivity = 8,
    probability: np.ndarray | None = None,
) -> Components:
    """Polygonise ``classes`` in ``block_size`` squares and merge; one block = whole reference."""
    height, width = classes.shape
    pieces = [
        polygonize_block(
            classes[r : r + block_size, c : c + block_size],
            r,
            c,
            connectivity=connectivity,
            probability=None if probability is None else probability[r : r + block_size, c : c + block_size],
        )
        for r in range(0, height, block_size)
        for c in range(0, width, block_size)
    ]
    return merge_blocks(pieces)


def assert_same_components(a: Components, b: Components) -> None:
    """Same objects: one-to-one equal geometries, classes and areas."""
    assert len(a) == len(b)
    assert shapely.is_valid(a.geometries).all() and shapely.is_valid(b.geometries).all()

    def order(c: Components) -> np.ndarray:
        centroids = shapely.get_coordinates(shapely.centroid(c.geometries)).round(6)
        return np.lexsort((centroids[:, 1], centroids[:, 0], shapely.area(c.geometries), c.class_ids))

    ia, ib = order(a), order(b)
    np.testing.assert_array_equal(a.class_ids[ia], b.class_ids[ib])
    assert shapely.equals(a.geometries[ia], b.geometries[ib]).all()
    assert shapely.area(shapely.symmetric_difference(a.geometries[ia], b.geometries[ib])).max(initial=0) == 0


def write_mask(
    path: Path,
    classes: np.ndarray,
    *,
    crs: str | CRS = "EPSG:32631",
    transform: Affine | None = None,
    probability: np.ndarray | None = None,
    class_names: list[str] | None = None,
) -> Path:
    """Write ``classes`` (and band 2 ``probability``) as a mask GeoTIFF following the convention."""
    transform = transform or Affine(10.0, 0, 500_000.0, 0, -10.0, 5_000_000.0)
    bands = [classes] if probability is None else [classes, probability]
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=classes.shape[1],
        height=classes.shape[0],
        count=len(bands),
        dtype="uint8",
        nodata=255,
        crs=crs,
        transform=transform,
        tiled=True,
        blockxsize=16,
        blockysize=16,
    ) as dst:
        for i, band in enumerate(bands, start=1):
            dst.write(band.astype(np.uint8), i)
        if class_names is not None:
            dst.update_tags(GEOSEG_CLASSES=json.dumps(class_names))
    return path
