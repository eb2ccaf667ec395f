"""Ground units: areas and lengths in metres for rasters in any CRS.

Users give areas and tolerances in metres; a degree is not a metre (FTW #271) and Web
Mercator inflates areas by 1/cos²(latitude). So sizes are measured in the CRS's own linear unit
when it is projected and not Mercator, and otherwise (geographic, Mercator) in a Lambert
azimuthal equal-area CRS centred on the scene.
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import numpy.typing as npt
import shapely
from affine import Affine
from rasterio.crs import CRS
from rasterio.warp import transform as transform_coords

GeometryArray = npt.NDArray[np.object_]
FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class MetricFrame:
    """How to measure geometries of a scene CRS in metres."""

    equal_area_crs: CRS | None
    """Reproject to this CRS before measuring; ``None``: scale the scene CRS's own units."""
    metres_per_unit: float = 1.0


def metric_frame(crs: CRS, transform: Affine, width: int, height: int) -> MetricFrame:
    """The metric frame for a raster: its own units when safe, a local LAEA otherwise."""
    if crs.is_projected and crs.to_dict().get("proj") != "merc":
        return MetricFrame(None, float(crs.linear_units_factor[1]))
    cx, cy = transform @ (width / 2, height / 2)
    (lon,), (lat,) = transform_coords(crs, "EPSG:4326", [cx], [cy])
    laea = CRS.from_proj4(f"+proj=laea +lat_0={lat} +lon_0={lon} +datum=WGS84 +units=m +no_defs")
    return MetricFrame(laea)


def measure(geometries: GeometryArray, crs: CRS, frame: MetricFrame) -> tuple[FloatArray, FloatArray]:
    """Area (m²) and perimeter (m) of scene-CRS geometries."""
    if frame.equal_area_crs is None:
        scale = frame.metres_per_unit
        return shapely.area(geometries) * scale**2, shapely.length(geometries) * scale
    metric = gpd.GeoSeries(geometries, crs=crs).to_crs(frame.equal_area_crs).values
    return shapely.area(metric), shapely.length(metric)


def footprint_area_m2(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """Ground area of a raster's footprint in square metres."""
    left, top = transform * (0, 0)
    right, bottom = transform * (width, height)
    footprint = np.array([shapely.box(left, bottom, right, top)])
    area, _ = measure(footprint, crs, metric_frame(crs, transform, width, height))
    return float(area[0])
