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
import numpy.typing as npt
import shapely
from rasterio.transform import Affine

from geoseg.maskformat import PROBABILITY_SCALE, MaskInfo
from geoseg.units import GeometryArray, MetricFrame, measure, metric_frame
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
    if _north_up(transform):
        scale = np.array([a, e])
        offset = np.array([c, f])

        def scale_and_shift(xy: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
            xy *= scale  # in place: the coordinates are a fresh copy
            xy += offset
            return xy

        return np.asarray(shapely.transform(geometries, scale_and_shift))
    matrix = np.array([[a, d], [b, e]])
    offset = np.array([c, f])
    return np.asarray(shapely.transform(geometries, lambda xy: xy @ matrix + offset))


def scene_geometries(components: Components, transform: Affine) -> GeometryArray:
    """``pixel_to_scene(components.geometries, transform)``, without building the pixel geometries.

    With a north-up transform, components that kept their outlines are built directly in scene
    coordinates (the same arithmetic, so the same bits); only merged ones are transformed.
    """
    if not _north_up(transform):
        return pixel_to_scene(components.geometries, transform)
    a, _, c, _, e, f = transform[:6]
    unions = pixel_to_scene(components.unions, transform)  # None where a component kept its outlines
    return components.geometries_with(unions, scale=(a, e), offset=(c, f))


def fill_small_holes(geometries: GeometryArray, max_hole_area: float) -> GeometryArray:
    """Remove interior rings smaller than ``max_hole_area`` (in the geometries' units).

    A part of a MultiPolygon lying in a filled hole (an island touching the part around it at
    corners) is then covered by that part and dropped, so the parts stay interior-disjoint.
    """
    parts, owner = shapely.get_parts(geometries, return_index=True)
    rings, part_of_ring = shapely.get_rings(parts, return_index=True)
    holes = np.flatnonzero(np.r_[False, part_of_ring[1:] == part_of_ring[:-1]])
    filled = holes[shapely.area(shapely.polygons(rings[holes])) < max_hole_area]
    if len(filled) == 0:
        return geometries
    kept = np.ones(len(rings), dtype=bool)
    kept[filled] = False
    changed = np.unique(part_of_ring[filled])
    in_changed = kept & np.isin(part_of_ring, changed)
    covered = _parts_in_holes(parts, owner, rings[filled], owner[part_of_ring[filled]])
    parts = parts.copy()
    parts[changed] = shapely.polygons(
        rings[in_changed], indices=np.searchsorted(changed, part_of_ring[in_changed])
    )
    result = geometries.copy()
    touched = np.unique(owner[changed])
    first, stop = np.searchsorted(owner, touched), np.searchsorted(owner, touched, side="right")
    one_part = stop - first == 1
    result[touched[one_part]] = parts[first[one_part]]
    remains = np.ones(len(parts), dtype=bool)
    remains[covered] = False
    for g, start, end in zip(touched[~one_part], first[~one_part], stop[~one_part], strict=True):
        own = parts[start:end][remains[start:end]]
        result[g] = own[0] if len(own) == 1 else shapely.multipolygons(own)
    return result


def _parts_in_holes(
    parts: GeometryArray,
    owner: npt.NDArray[np.int64],
    holes: GeometryArray,
    hole_owner: npt.NDArray[np.int64],
) -> npt.NDArray[np.int64]:
    """Indices of the parts that lie in one of the holes (rings) of their own geometry.

    Parts of one geometry are interior-disjoint, so a part lies in a hole if a point of its
    interior does.
    """
    candidates = np.flatnonzero(np.isin(owner, hole_owner))
    if len(candidates) == len(np.unique(owner[candidates])):  # one part each: no islands
        return np.zeros(0, dtype=np.int64)
    inside = shapely.point_on_surface(parts[candidates])
    hole, found = shapely.STRtree(inside).query(shapely.polygons(holes), predicate="contains")
    same = hole_owner[hole] == owner[candidates[found]]
    return np.asarray(candidates[found[same]], dtype=np.int64)


def to_features(components: Components, info: MaskInfo, cleanup: Cleanup, scene_id: str) -> gpd.GeoDataFrame:
    """Clean the components and build the attribute table, in the mask's CRS.

    Columns: ``class_id``, ``class_name``, ``area_m2``, ``perimeter_m``, ``mean_prob`` (0–1,
    only when the mask has a probability band; null where no pixel had one) and ``scene_id``.
    Every feature has ``area_m2 >= cleanup.min_area_m2``.
    """
    frame = metric_frame(info.crs, info.transform, info.width, info.height)
    pixel_area_m2 = _pixel_area_m2(info, frame)
    if cleanup.fill_holes_below_m2 > 0 or cleanup.simplify_tolerance_m > 0:
        geometries = components.geometries
        if cleanup.fill_holes_below_m2 > 0:
            geometries = fill_small_holes(geometries, cleanup.fill_holes_below_m2 / pixel_area_m2)
        if cleanup.simplify_tolerance_m > 0:
            tolerance_px = cleanup.simplify_tolerance_m / np.sqrt(pixel_area_m2)
            geometries = shapely.simplify(geometries, tolerance_px, preserve_topology=True)
        geometries = pixel_to_scene(geometries, info.transform)
    else:
        geometries = scene_geometries(components, info.transform)
    if cleanup.simplify_tolerance_m > 0 or not _north_up(info.transform):
        geometries = _valid(geometries)
    area_m2, perimeter_m = measure(geometries, info.crs, frame)
    keep = (area_m2 > 0) & (area_m2 >= cleanup.min_area_m2)
    class_ids = components.class_ids[keep].astype(np.int64)
    names = {c: info.class_name(c) for c in np.unique(class_ids).tolist()}
    columns: dict[str, object] = {
        "class_id": class_ids,
        "class_name": [names[c] for c in class_ids.tolist()],
        "area_m2": area_m2[keep],
        "perimeter_m": perimeter_m[keep],
    }
    if info.has_probability:
        counts = components.prob_counts[keep]
        sums = components.prob_sums[keep]
        columns["mean_prob"] = np.where(counts > 0, sums / np.maximum(counts, 1) / PROBABILITY_SCALE, np.nan)
    columns["scene_id"] = [scene_id] * int(keep.sum())
    return gpd.GeoDataFrame(columns, geometry=geometries[keep], crs=info.crs)


def _pixel_area_m2(info: MaskInfo, frame: MetricFrame) -> float:
    """The area of the scene's centre pixel in m²."""
    col, row = info.width // 2, info.height // 2
    pixel = pixel_to_scene(np.array([shapely.box(col, row, col + 1, row + 1)]), info.transform)
    area, _ = measure(pixel, info.crs, frame)
    return float(area[0])


def _north_up(transform: Affine) -> bool:
    """Whether the transform maps x and y apart (no rotation or shear)."""
    return bool(transform.b == 0 and transform.d == 0)


def _valid(geometries: GeometryArray) -> GeometryArray:
    """Repair invalid geometries; needed only where a step can break validity.

    Merged components are valid (``Outlines.geometries``, ``merge.union_pieces``), and filling
    holes keeps them so. Their edges are axis-parallel with integer vertices, so validity is a
    matter of how x values and y values compare; a north-up transform maps x and y each through
    one increasing or decreasing function, which keeps every such comparison, ties included.
    Simplification (GEOS's topology preservation has known exceptions) and a rotated or sheared
    transform (rounding can move a vertex that touches an edge across it) are checked here.
    """
    invalid = ~shapely.is_valid(geometries)
    if invalid.any():
        geometries = geometries.copy()
        geometries[invalid] = shapely.make_valid(
            geometries[invalid], method="structure", keep_collapsed=False
        )
    return geometries
