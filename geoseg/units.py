"""Ground units: areas, lengths and pixel sizes in metres for rasters in any CRS.

Users give areas and tolerances in metres; a degree is not a metre (FTW #271) and Web
Mercator inflates areas by 1/cos²(latitude). So sizes are measured in the CRS's own linear unit
when it is projected and not Mercator, and otherwise (geographic, Mercator) in a Lambert
azimuthal equal-area CRS centred on the scene. A pixel's ground size (``ground_pixel_size``)
follows the same three cases, at the scene centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pyproj
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
    to_metric = transformer(crs, frame.equal_area_crs)
    metric = shapely.transform(geometries, to_metric.transform, interleaved=False)
    return shapely.area(metric), shapely.length(metric)


def measure_rings(
    xy: FloatArray, ring_sizes: npt.NDArray[np.int64], crs: CRS, frame: MetricFrame
) -> tuple[FloatArray, FloatArray]:
    """Enclosed area (m², unsigned) and length (m) of closed rings whose scene-CRS vertices
    follow one another in ``xy`` (n, 2): ``measure`` without building geometries.

    Areas agree with ``measure``'s to rounding (``signed_ring_areas``).
    """
    if len(ring_sizes) == 0:
        return np.zeros(0), np.zeros(0)
    if frame.equal_area_crs is None:
        scale, metric = frame.metres_per_unit, xy
    else:
        x, y = transformer(crs, frame.equal_area_crs).transform(xy[:, 0], xy[:, 1])
        scale, metric = 1.0, np.column_stack([x, y])
    starts = np.r_[0, np.cumsum(ring_sizes)[:-1]].astype(np.int64)
    step = np.hypot(*np.diff(metric, axis=0).T)
    step[starts[1:] - 1] = 0.0  # from one ring's last vertex to the next ring's first: no edge
    length = np.add.reduceat(np.r_[step, 0.0], starts)
    return np.abs(signed_ring_areas(metric, ring_sizes)) * scale**2, length * scale


def signed_ring_areas(xy: FloatArray, ring_sizes: npt.NDArray[np.int64]) -> FloatArray:
    """The shoelace area of each closed ring whose vertices follow one another in ``xy``:
    positive for counter-clockwise rings. Each ring is summed about its first vertex, as GEOS
    does, so that large coordinates do not swamp small rings."""
    if len(ring_sizes) == 0:
        return np.zeros(0)
    starts = np.r_[0, np.cumsum(ring_sizes)[:-1]].astype(np.int64)
    local = xy - np.repeat(xy[starts], ring_sizes, axis=0)
    cross = local[:-1, 0] * local[1:, 1] - local[1:, 0] * local[:-1, 1]
    cross[starts[1:] - 1] = 0.0  # no edge from one ring to the next
    areas: FloatArray = np.add.reduceat(np.r_[cross, 0.0], starts) / 2
    return areas


def transformer(source: CRS | pyproj.CRS, target: CRS | pyproj.CRS) -> pyproj.Transformer:
    """PROJ's transformation between two CRSs, x/y order (as GeoPandas' ``to_crs`` builds it)."""
    return pyproj.Transformer.from_crs(
        pyproj.CRS.from_user_input(source), pyproj.CRS.from_user_input(target), always_xy=True
    )


def wgs84_transformer(crs: CRS | pyproj.CRS) -> pyproj.Transformer | None:
    """``crs`` → WGS 84 longitude/latitude; None for a CRS that PROJ cannot place on the Earth
    (a local engineering grid)."""
    try:
        return transformer(crs, "EPSG:4326")
    except pyproj.exceptions.ProjError:
        return None


def footprint_area_m2(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """Ground area of a raster's footprint in square metres."""
    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    footprint = np.array([shapely.box(left, bottom, right, top)])
    area, _ = measure(footprint, crs, metric_frame(crs, transform, width, height))
    return float(area[0])


WGS84_SEMI_MAJOR_M = 6378137.0
WGS84_ECCENTRICITY_SQ = 0.00669437999014
"""First eccentricity squared of the WGS 84 ellipsoid (f = 1/298.257223563)."""


@dataclass(frozen=True)
class GroundPixelSize:
    """A pixel's ground size in metres at the scene centre, across (x) and along (y) the columns."""

    x_m: float
    y_m: float

    @property
    def gsd_m(self) -> float:
        """Ground sampling distance: the side of a square pixel of the same ground area."""
        return math.sqrt(self.x_m * self.y_m)


def ground_pixel_size(crs: CRS, transform: Affine, width: int, height: int) -> GroundPixelSize:
    """Ground size of a raster's pixels at its centre, for projected, Mercator and geographic CRSs.

    * projected (not Mercator): pixel size × the CRS's linear unit in metres (the projection's
      own scale error, ≤ 0.1 % for UTM, is ignored);
    * Mercator (EPSG:3857, 3395…): its nominal metres are stretched by 1/cos φ, so pixel size ×
      unit × cos φ, φ the centre latitude (a zoom-20 web-map pixel is 0.149 m at the equator,
      half that at 60°);
    * geographic: angle per pixel × the WGS 84 radii of curvature at φ:
      x = Δλ · N cos φ, y = Δφ · M, with N = a / √(1 − e² sin² φ), M = a (1 − e²) / (1 − e² sin² φ)^1.5
      (1e-5° at 60° N: x 0.558 m, y 1.114 m).
    """
    dx, dy = abs(transform.a), abs(transform.e)
    if crs.is_projected and crs.to_dict().get("proj") != "merc":
        factor = float(crs.linear_units_factor[1])
        return GroundPixelSize(dx * factor, dy * factor)
    latitude = math.radians(_centre_latitude(crs, transform, width, height))
    if crs.is_projected:
        scale = float(crs.linear_units_factor[1]) * math.cos(latitude)
        return GroundPixelSize(dx * scale, dy * scale)
    radians_per_unit = float(crs.units_factor[1])
    w = 1 - WGS84_ECCENTRICITY_SQ * math.sin(latitude) ** 2
    prime_vertical = WGS84_SEMI_MAJOR_M / math.sqrt(w)
    meridional = WGS84_SEMI_MAJOR_M * (1 - WGS84_ECCENTRICITY_SQ) / w**1.5
    return GroundPixelSize(
        dx * radians_per_unit * prime_vertical * math.cos(latitude),
        dy * radians_per_unit * meridional,
    )


def ground_sampling_distance_m(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """A raster's ground sampling distance in metres at its centre (see ``ground_pixel_size``)."""
    return ground_pixel_size(crs, transform, width, height).gsd_m


def _centre_latitude(crs: CRS, transform: Affine, width: int, height: int) -> float:
    """Latitude in degrees of the raster's centre."""
    cx, cy = transform @ (width / 2, height / 2)
    (_,), (lat,) = transform_coords(crs, "EPSG:4326", [cx], [cy])
    return float(lat)
