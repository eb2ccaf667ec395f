"""Clean-up and attributes of merged components, with every threshold in metres.

Areas and lengths are measured in metres whatever the mask's CRS (see ``geoseg.units``).
Hole filling and simplification run on the
pixel-grid geometries, with metre thresholds converted through the pixel size in metres at the
scene's centre; the scene's affine transform is applied once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import shapely
from rasterio.transform import Affine

from geoseg.units import GeometryArray, MetricFrame, measure, metric_frame
from geoseg.vectorize.mask import MaskInfo
from geoseg.vectorize.polygonize import Components


@dataclass(frozen=True)
class Cleanup:
    """Clean-up options; zero turns a step off."""

    min_area_m2: float = 0.0
    fill_holes_below_m2: float = 0.0
    simplify_tolerance_m: float = 0.0


def pixel_to_scene(geometries: GeometryArray, transform: Affine) -> GeometryArray:
    """Apply the scene's affine transform to pixel-grid (column, row) geometries."""
    a, b, c, d, e, f = transform[:6]
    matrix = np.array([[a, d], [b, e]])
    offset = np.array([c, f])
    return np.asarray(shapely.transform(geometries, lambda xy: xy @ matrix + offset))


def fill_small_holes(geometries: GeometryArray, max_hole_area: float) -> GeometryArray:
    """Remove interior rings smaller than ``max_hole_area`` (in the geometries' units)."""
    parts, owner = shapely.get_parts(geometries, return_index=True)
    holed = np.flatnonzero(shapely.get_num_interior_rings(parts) > 0)
    if len(holed) == 0:
        return geometries
    for i in holed:
        polygon = parts[i]
        kept = [ring for ring in polygon.interiors if shapely.Polygon(ring).area >= max_hole_area]
        if len(kept) < len(polygon.interiors):
            parts[i] = shapely.Polygon(polygon.exterior, kept)
    filled = geometries.copy()
    for g in np.unique(owner[holed]):
        own = parts[np.searchsorted(owner, g) : np.searchsorted(owner, g, side="right")]
        # A filled hole may now cover another part of the same component: union, not collect.
        filled[g] = own[0] if len(own) == 1 else shapely.union_all(own)
    return filled


def to_features(components: Components, info: MaskInfo, cleanup: Cleanup, scene_id: str) -> gpd.GeoDataFrame:
    """Clean the components and build the attribute table, in the mask's CRS.

    Columns: ``class_id``, ``class_name``, ``area_m2``, ``perimeter_m``, ``mean_prob`` (0–1,
    only when the mask has a probability band; null where no pixel had one) and ``scene_id``.
    Every feature has ``area_m2 >= cleanup.min_area_m2``.
    """
    frame = metric_frame(info.crs, info.transform, info.width, info.height)
    pixel_area_m2 = _pixel_area_m2(info, frame)
    geometries = components.geometries
    if cleanup.fill_holes_below_m2 > 0:
        geometries = fill_small_holes(geometries, cleanup.fill_holes_below_m2 / pixel_area_m2)
    if cleanup.simplify_tolerance_m > 0:
        tolerance_px = cleanup.simplify_tolerance_m / np.sqrt(pixel_area_m2)
        geometries = shapely.simplify(geometries, tolerance_px, preserve_topology=True)
    geometries = _valid(pixel_to_scene(geometries, info.transform))
    area_m2, perimeter_m = measure(geometries, info.crs, frame)
    keep = (area_m2 > 0) & (area_m2 >= cleanup.min_area_m2)
    class_ids = components.class_ids[keep].astype(np.int64)
    columns: dict[str, object] = {
        "class_id": class_ids,
        "class_name": [info.class_name(int(c)) for c in class_ids],
        "area_m2": area_m2[keep],
        "perimeter_m": perimeter_m[keep],
    }
    if info.has_probability:
        counts = components.prob_counts[keep]
        sums = components.prob_sums[keep]
        columns["mean_prob"] = np.where(counts > 0, sums / np.maximum(counts, 1) / 100.0, np.nan)
    columns["scene_id"] = [scene_id] * int(keep.sum())
    return gpd.GeoDataFrame(columns, geometry=geometries[keep], crs=info.crs)


def _pixel_area_m2(info: MaskInfo, frame: MetricFrame) -> float:
    """The area of the scene's centre pixel in m²."""
    col, row = info.width // 2, info.height // 2
    pixel = pixel_to_scene(np.array([shapely.box(col, row, col + 1, row + 1)]), info.transform)
    area, _ = measure(pixel, info.crs, frame)
    return float(area[0])


def _valid(geometries: GeometryArray) -> GeometryArray:
    invalid = ~shapely.is_valid(geometries)
    if invalid.any():
        geometries = geometries.copy()
        geometries[invalid] = shapely.make_valid(
            geometries[invalid], method="structure", keep_collapsed=False
        )
    return geometries
