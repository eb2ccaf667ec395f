"""A vector layer ready to write: attribute columns and WKB geometries, as one Arrow table.

Workers write their scenes' layers from this table without GeoPandas (the writers in
``formats.py`` take Arrow); a GeoDataFrame converts to and from it for everything else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import shapely
from rasterio.crs import CRS

from geoseg.units import transformer

if TYPE_CHECKING:
    import geopandas as gpd

GEOMETRY = "geometry"


@dataclass(frozen=True)
class Features:
    """Attribute columns, then ``geometry`` (WKB), in ``crs``."""

    table: pa.Table
    crs: CRS | None
    bounds: tuple[float, float, float, float] | None = None
    """(xmin, ymin, xmax, ymax) of every geometry, where known."""

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Any],
        wkb: pa.Array,
        crs: CRS | None,
        bounds: tuple[float, float, float, float] | None = None,
    ) -> Features:
        """A layer of ``columns`` (numpy arrays or lists: strings become strings, NaN nulls)."""
        arrays = {name: _arrow(values) for name, values in columns.items()}
        return cls(pa.table({**arrays, GEOMETRY: wkb}), crs, bounds)

    @classmethod
    def from_frame(cls, frame: gpd.GeoDataFrame) -> Features:
        """A GeoDataFrame's attributes and geometries (its CRS read as a rasterio CRS)."""
        attributes = frame.drop(columns=frame.geometry.name)
        columns = {str(name): attributes[name].to_numpy() for name in attributes.columns}
        wkb = pa.array(shapely.to_wkb(frame.geometry.values), type=pa.binary())
        crs = None if frame.crs is None else CRS.from_user_input(frame.crs.to_wkt())
        bounds = tuple(map(float, frame.total_bounds)) if len(frame) else None
        return cls.from_columns(columns, wkb, crs, bounds)  # type: ignore[arg-type]

    @classmethod
    def concat(cls, layers: Sequence[Features]) -> Features:
        """The features of ``layers`` (same columns and CRS), one after another."""
        layers = [layer for layer in layers if len(layer)] or list(layers[:1])  # empty: any column types
        table = pa.concat_tables([layer.table for layer in layers], promote_options="permissive")
        known = np.array([layer.bounds for layer in layers if layer.bounds is not None]).reshape(-1, 4)
        bounds = (*known[:, :2].min(axis=0), *known[:, 2:].max(axis=0)) if len(known) else None
        return cls(table, layers[0].crs, bounds)

    def to_crs(self, crs: CRS | str) -> Features:
        """The features reprojected to ``crs`` (x/y order, as GeoPandas' ``to_crs``)."""
        crs = CRS.from_user_input(crs)
        geometries = shapely.from_wkb(np.asarray(self.table[GEOMETRY].to_numpy(zero_copy_only=False)))
        moved = shapely.transform(geometries, transformer(self.crs, crs).transform, interleaved=False)
        wkb = pa.array(shapely.to_wkb(moved), type=pa.binary())
        table = self.table.set_column(self.table.schema.get_field_index(GEOMETRY), GEOMETRY, wkb)
        bounds = tuple(map(float, shapely.total_bounds(moved))) if len(self) else None
        return Features(table, crs, bounds)  # type: ignore[arg-type]  # (4 floats)

    def to_ipc(self) -> bytes:
        """The layer as an Arrow IPC stream (CRS and bounds in its metadata), to hand over."""
        crs = self.crs.to_wkt() if self.crs else ""
        metadata = {b"crs": crs.encode(), b"bounds": json.dumps(self.bounds).encode()}
        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, self.table.schema.with_metadata(metadata)) as stream:
            stream.write_table(self.table)
        return bytes(sink.getvalue())

    @classmethod
    def from_ipc(cls, data: bytes) -> Features:
        """A layer handed over by ``to_ipc``."""
        table = pa.ipc.open_stream(data).read_all()
        metadata = table.schema.metadata or {}
        crs = CRS.from_wkt(metadata[b"crs"].decode()) if metadata.get(b"crs") else None
        bounds = json.loads(metadata.get(b"bounds", b"null"))
        return cls(table.replace_schema_metadata(None), crs, tuple(bounds) if bounds else None)

    def to_frame(self) -> gpd.GeoDataFrame:
        """The layer as a GeoDataFrame."""
        import geopandas as gpd

        attributes = self.table.drop_columns([GEOMETRY]).to_pandas()
        geometry = shapely.from_wkb(np.asarray(self.table[GEOMETRY].to_numpy(zero_copy_only=False)))
        crs = None if self.crs is None else self.crs.to_wkt()
        return gpd.GeoDataFrame(attributes, geometry=geometry, crs=crs)

    def __len__(self) -> int:
        return int(self.table.num_rows)


def _arrow(values: Any) -> pa.Array:
    array = np.asarray(values)
    if array.dtype.kind in "OUS":
        return pa.array(array, type=pa.large_string())
    return pa.array(array, from_pandas=True)  # NaN → null, as GeoPandas writes it
