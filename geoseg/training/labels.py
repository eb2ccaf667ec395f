"""Training labels for a window of a scene: vector polygons rasterised on the fly, or masks.

Vector labels may be in any CRS: they are reprojected once to the scene's CRS, then only the
polygons touching a window are burned into it with ``rasterio.features.rasterize``. Raster masks
are read by window with ``read_window`` and must share the scene's grid. Labels are class ids
(uint8) plus a validity mask (False outside the scene, or where a mask has no data).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import geopandas as gpd
import numpy as np
import pyogrio
import rasterio
import shapely
from rasterio.crs import CRS
from rasterio.features import rasterize
from rasterio.windows import Window
from rasterio.windows import transform as window_transform
from shapely.geometry import box

from geoseg.errors import GeosegWarning, LabelError, SceneError
from geoseg.safepaths import NOT_A_REGULAR_FILE, is_special_file, local_file
from geoseg.scenes import Scene, open_pixels, open_scene, read_window
from geoseg.units import wgs84_transformer


class LabelSource(Protocol):
    """Labels of one scene, read by window."""

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Class ids (h, w) uint8 and validity (h, w) bool for ``window`` of the scene."""
        ...


def inside_scene(scene: Scene, window: Window) -> np.ndarray:
    """(h, w) bool: True where ``window`` lies on the scene."""
    shape = (int(window.height), int(window.width))
    inside = np.zeros(shape, dtype=bool)
    rows = slice(max(0, -int(window.row_off)), min(shape[0], scene.height - int(window.row_off)))
    cols = slice(max(0, -int(window.col_off)), min(shape[1], scene.width - int(window.col_off)))
    inside[rows, cols] = True
    return inside


@dataclass(frozen=True)
class MaskLabels:
    """A label raster on the scene's grid (binary tasks: any value > 0 is foreground)."""

    mask: Scene
    num_classes: int
    nodata_is_class: bool = False
    """Ignore the mask's nodata tag: every pixel on the scene is a label."""

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Class ids and validity of ``window``; values that are no class id (negative, ≥
        num_classes, fractional) are treated as no data."""
        values, valid = read_window(self.mask, window)
        if self.nodata_is_class:
            valid = inside_scene(self.mask, window)
        ids = values[0]
        if self.num_classes == 2:
            return (ids > 0).astype(np.uint8), valid
        with np.errstate(invalid="ignore"):  # NaN is no class id either
            valid = valid & (ids >= 0) & (ids < self.num_classes) & (ids == np.round(ids))
        return np.where(valid, ids, 0).astype(np.uint8), valid


def open_mask_labels(
    scene: Scene, mask_path: str, num_classes: int, nodata_is_class: bool = False
) -> MaskLabels:
    """Open a mask raster and check that it lies on the scene's pixel grid."""
    try:
        mask = open_scene(mask_path, bands=[1], require_valid_pixels=False)
    except SceneError as exc:
        raise LabelError(f"{mask_path}: mask of {scene.path} cannot be used ({exc.reason})") from None
    with open_pixels(mask_path) as dataset:
        if dataset.count > 2:  # a mask is class ids in band 1 (geoseg's own may add probability)
            raise LabelError(
                f"{mask_path}: is a {dataset.count}-band image, not a label mask of {scene.path} (one "
                "band of class ids; convert colour-coded masks to ids first)"
            )
    if (mask.width, mask.height) != (scene.width, scene.height):
        raise LabelError(
            f"{mask_path}: mask is {mask.width}×{mask.height} px but its scene {scene.path} is "
            f"{scene.width}×{scene.height}"
        )
    if not mask.transform.almost_equals(scene.transform, precision=1e-9) or mask.crs != scene.crs:
        raise LabelError(f"{mask_path}: mask is not on the pixel grid of {scene.path}")
    return MaskLabels(mask, num_classes, nodata_is_class)


@dataclass
class VectorLabelFile:
    """A vector label file read once, with its class ids and one reprojection per CRS."""

    path: str
    frame: gpd.GeoDataFrame
    _by_crs: dict[str, gpd.GeoDataFrame] = field(default_factory=dict, repr=False)

    def in_crs(self, crs: CRS) -> gpd.GeoDataFrame:
        """The polygons reprojected to ``crs`` (cached)."""
        key = crs.to_wkt()
        if key not in self._by_crs:
            frame = self.frame.to_crs(key)
            if len(frame) and not np.isfinite(frame.total_bounds).all():
                raise LabelError(f"{self.path}: labels cannot be reprojected to {crs.to_string()[:60]}")
            self._by_crs[key] = frame
        return self._by_crs[key]


def read_vector_labels(
    path: str | os.PathLike[str], classes: list[str], class_field: str | None = None
) -> VectorLabelFile:
    """Read polygons and their class ids (1 for every polygon when ``class_field`` is None)."""
    path = str(path)
    if (file := local_file(path)) is not None and not Path(file).exists():
        lost = Path(file).is_symlink()
        raise LabelError(
            f"{path}: "
            + ("a link to nothing (a loop or a missing target)" if lost else "label file not found")
        )
    if file is not None and is_special_file(file):
        raise LabelError(f"{path}: {NOT_A_REGULAR_FILE}")
    frame = _read_frame(path)
    if frame.crs is None:
        raise LabelError(f"{path}: labels have no CRS")
    if wgs84_transformer(frame.crs) is None:
        raise LabelError(f"{path}: labels have a CRS that cannot be placed on the Earth ({frame.crs.name!r})")
    if frame.crs.is_geographic and len(frame):
        west, south, east, north = frame.total_bounds
        if not (-360 <= west <= east <= 360 and -90 <= south <= north <= 90):
            raise LabelError(
                f"{path}: coordinates are not longitudes/latitudes although the CRS is "
                f"{frame.crs.to_string()} (are the labels in another CRS?)"
            )
    features = len(frame)
    frame = frame[frame.geometry.notna()]
    frame = frame.set_geometry(gpd.GeoSeries(_polygonal(frame.geometry.values), frame.index, frame.crs))
    frame = frame[~frame.geometry.is_empty]
    if frame.empty:
        raise LabelError(f"{path}: no polygon labels (empty, or only points/lines)")
    if left_out := features - len(frame):
        warnings.warn(
            GeosegWarning(
                f"{path}: {left_out} of {features} features have no polygon (null, empty, points or lines)"
            ),
            stacklevel=2,
        )
    if not np.isfinite(shapely.get_coordinates(frame.geometry.values)).all():
        raise LabelError(f"{path}: labels have NaN or infinite coordinates")
    ids = _class_ids(frame, path, classes, class_field)
    if invalid := int((~frame.geometry.is_valid).sum()):
        warnings.warn(
            GeosegWarning(
                f"{path}: {invalid} invalid label polygons repaired (shapely make_valid: a hole larger "
                "than its shell becomes the polygon; parts without area are dropped)"
            ),
            stacklevel=2,
        )
    repaired = _polygonal(frame.geometry.make_valid().values)  # zero-area parts become lines: dropped
    kept = ~shapely.is_empty(repaired)
    labels = gpd.GeoDataFrame({"class_id": ids[kept]}, geometry=repaired[kept], crs=frame.crs)
    return VectorLabelFile(path, labels)


def _read_frame(path: str) -> gpd.GeoDataFrame:
    """The features of a label file (GeoParquet too); of a file with several layers, the first,
    with a warning naming them."""
    try:
        if path.lower().endswith(".parquet"):
            return gpd.read_parquet(path)
        layers = [str(name) for name, _ in pyogrio.list_layers(path)]
        if len(layers) > 1:
            warnings.warn(
                GeosegWarning(f"{path}: has layers {', '.join(layers)}; reading the first, {layers[0]}"),
                stacklevel=3,
            )
        with warnings.catch_warnings():  # pyogrio's own notes (several layers, odd positions)
            warnings.simplefilter("ignore")
            # on_invalid="fix": an unclosed ring is closed; a geometry past fixing becomes None
            # (counted below) instead of refusing the whole file
            return gpd.read_file(path, layer=layers[0] if layers else None, on_invalid="fix")
    except Exception as exc:  # pyogrio raises several unrelated types for unreadable files
        raise LabelError(f"{path}: cannot read labels ({str(exc).splitlines()[0]})") from None


def _polygonal(geometries: Any) -> Any:
    """Each geometry's polygons: a (multi)polygon as it is, the polygons of a geometry collection
    (nested ones too) as one multipolygon, and an empty polygon for points and lines."""
    kept = []
    for geometry in geometries:
        if geometry.geom_type in ("Polygon", "MultiPolygon"):
            kept.append(geometry)
            continue
        parts = shapely.get_parts(geometry)
        while any(part.geom_type in ("GeometryCollection", "MultiPolygon") for part in parts):
            parts = shapely.get_parts(parts)
        kept.append(shapely.MultiPolygon([p for p in parts if p.geom_type == "Polygon"]))
    return np.asarray(kept, dtype=object)


def _class_ids(frame: gpd.GeoDataFrame, path: str, classes: list[str], class_field: str | None) -> np.ndarray:
    if class_field is None:
        return np.ones(len(frame), dtype=np.uint8)
    if class_field not in frame.columns:
        raise LabelError(f"{path}: no attribute {class_field!r} (has {sorted(map(str, frame.columns))})")
    ids: list[int] = []
    for value in frame[class_field]:
        ids.append(_class_id(value, path, classes))
    return np.asarray(ids, dtype=np.uint8)


def _class_id(value: Any, path: str, classes: list[str]) -> int:
    if isinstance(value, str) and value in classes:
        return classes.index(value)
    try:
        number = int(value) if float(value).is_integer() else -1  # 0.6 is no class, nor 1.7
    except (TypeError, ValueError, OverflowError):
        number = -1
    if not 0 <= number < len(classes):
        raise LabelError(
            f"{path}: class value {value!r} is not one of {classes} nor an id below {len(classes)}"
        )
    return number


def rasterize_window(
    frame: gpd.GeoDataFrame, transform: rasterio.Affine, shape: tuple[int, int]
) -> np.ndarray:
    """Burn the polygons' ``class_id`` into a (h, w) uint8 grid (0 where no polygon); where
    polygons overlap, the later one in ``frame`` wins."""
    height, width = shape
    left, top = transform @ (0, 0)
    right, bottom = transform @ (width, height)
    extent = box(min(left, right), min(top, bottom), max(left, right), max(top, bottom))
    hits = frame.iloc[np.sort(frame.sindex.query(extent, predicate="intersects"))]  # file order
    if hits.empty:
        return np.zeros(shape, dtype=np.uint8)
    burned: np.ndarray = rasterize(
        zip(hits.geometry.values, hits["class_id"].astype(int), strict=True),
        out_shape=shape,
        transform=transform,
        fill=0,
        dtype="uint8",
    )
    return burned


@dataclass(frozen=True)
class VectorLabels:
    """Vector labels of one scene, reprojected to its CRS."""

    scene: Scene
    frame: gpd.GeoDataFrame

    def read(self, window: Window) -> tuple[np.ndarray, np.ndarray]:
        """Rasterised class ids of ``window``; validity is False outside the scene."""
        shape = (int(window.height), int(window.width))
        ids = rasterize_window(self.frame, window_transform(window, self.scene.transform), shape)
        valid = inside_scene(self.scene, window)
        return np.where(valid, ids, 0).astype(np.uint8), valid


def vector_labels_for(scene: Scene, labels: VectorLabelFile) -> VectorLabels:
    """The labels of ``labels`` that fall on ``scene``, in the scene's CRS."""
    frame = labels.in_crs(scene.crs)
    left, bottom, right, top = scene.bounds
    on_scene = frame.iloc[np.sort(frame.sindex.query(box(left, bottom, right, top), predicate="intersects"))]
    return VectorLabels(scene, on_scene.reset_index(drop=True))
