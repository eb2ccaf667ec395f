"""Ring tracing: every region's rings are GDAL's, vertex for vertex, without GDAL."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.features import shapes
from rasterio.windows import Window

from geoseg.vectorize.polygonize import label_components
from geoseg.vectorize.rings import trace_regions


def regions_of(classes: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected regions of each non-zero class, numbered 1..n."""
    regions, region_class = label_components(classes.astype(np.uint8), 4)
    return regions, len(region_class)


def gdal_rings(regions: np.ndarray) -> dict[int, list[list[tuple[float, float]]]]:
    """GDAL's polygon of each region (``rasterio.features.shapes``): the reference."""
    return {
        int(value): [[(float(x), float(y)) for x, y in ring] for ring in geojson["coordinates"]]
        for geojson, value in shapes(regions, mask=regions > 0, connectivity=4)
    }


def traced_rings(regions: np.ndarray, count: int) -> dict[int, list[list[tuple[float, float]]]]:
    rings = trace_regions(regions, count)
    ring_ends = np.cumsum(rings.ring_sizes)
    polygon_ends = np.cumsum(rings.rings_per_polygon)
    coords = [[(float(x), float(y)) for x, y in ring] for ring in np.split(rings.coords, ring_ends[:-1])]
    return {
        index + 1: coords[start:end]
        for index, (start, end) in enumerate(
            zip(polygon_ends - rings.rings_per_polygon, polygon_ends, strict=True)
        )
    }


@pytest.mark.parametrize("seed", range(4))
def test_random_masks_give_gdals_rings_vertex_for_vertex(seed):
    """Start vertex, direction, ring order, saddles where a region touches itself or another."""
    rng = np.random.default_rng(seed)
    for _ in range(400):
        height, width = rng.integers(1, 14, size=2)
        classes = np.where(rng.random((height, width)) < rng.random(), rng.integers(1, 4, (height, width)), 0)
        regions, count = regions_of(classes)
        assert traced_rings(regions, count) == gdal_rings(regions), classes


def test_holes_touching_each_other_and_the_shell_at_corners_are_separate_rings():
    classes = np.ones((5, 6), dtype=np.uint8)
    classes[1, 1] = classes[2, 2] = classes[3, 1] = 0  # three holes meeting at corners
    classes[3, 4] = classes[4, 5] = 0  # a hole touching the outside at a corner
    regions, count = regions_of(classes)
    traced = traced_rings(regions, count)
    assert traced == gdal_rings(regions)
    assert len(traced[1]) == 5  # the shell and four holes, none passing a vertex twice
    for ring in traced[1]:
        assert len(set(ring[:-1])) == len(ring) - 1


def test_a_real_mask_block_gives_gdals_rings(sample_data):
    """A 1024² block of the Landsat scene thresholded like a building mask (≈ 10 % foreground)."""
    with rasterio.open(sample_data / "scenes" / "landsat8-224078-rgb.tif") as dataset:
        band = dataset.read(1, window=Window(512, 512, 1024, 1024))
    regions, count = regions_of((band > np.percentile(band, 90)).astype(np.uint8))
    assert count > 1000
    assert traced_rings(regions, count) == gdal_rings(regions)


def test_no_region_gives_no_rings():
    rings = trace_regions(np.zeros((3, 4), dtype=np.int32), 0)
    assert len(rings.coords) == len(rings.ring_sizes) == len(rings.rings_per_polygon) == 0


def diagonal_pairs(regions: np.ndarray) -> set[tuple[int, int]]:
    """Regions at diagonal pixels of a 2×2 square whose other two pixels are neither (brute force)."""
    pairs = set()
    for r in range(regions.shape[0] - 1):
        for c in range(regions.shape[1] - 1):
            a, b, d_, e = regions[r, c], regions[r, c + 1], regions[r + 1, c], regions[r + 1, c + 1]
            for p, q, others in ((a, e, (b, d_)), (b, d_, (a, e))):
                if p and q and p != q and p not in others and q not in others:
                    pairs.add((min(p, q), max(p, q)))
    return pairs


@pytest.mark.parametrize("seed", range(2))
def test_corner_contacts_are_every_pair_of_regions_meeting_diagonally(seed):
    rng = np.random.default_rng(10 + seed)
    for _ in range(200):
        classes = np.where(rng.random((12, 12)) < rng.random(), rng.integers(1, 3, (12, 12)), 0)
        regions, count = regions_of(classes)
        contacts = trace_regions(regions, count).corner_contacts
        assert {(min(p, q), max(p, q)) for p, q in contacts.tolist()} == diagonal_pairs(regions)
