"""Blockwise polygonising: one block of class ids → polygon pieces in the scene's pixel grid.

A block is a rectangle of *core* pixels (no halo) at ``(row_off, col_off)`` in the scene. Its
connected components become pieces whose vertices are exact integers of the scene's pixel grid,
so pieces of one object cut by a block border share their edges exactly and merge without
slivers (see ``merge.py``). Each piece keeps what the merge and the attributes need: class id,
probability sum, and the labels along the block's four edges.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, fields
from itertools import chain
from typing import Literal

import numpy as np
import numpy.typing as npt
import shapely
from rasterio.features import shapes
from rasterio.transform import Affine
from scipy import ndimage

from geoseg.maskformat import NODATA

Connectivity = Literal[4, 8]

_STRUCTURES = {
    4: ndimage.generate_binary_structure(2, 1),
    8: ndimage.generate_binary_structure(2, 2),
}


@dataclass(frozen=True)
class Components:
    """Connected components, column-wise; geometries in scene pixel coordinates."""

    class_ids: npt.NDArray[np.uint8]
    prob_sums: npt.NDArray[np.float64]
    prob_counts: npt.NDArray[np.int64]
    geometries: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.class_ids)

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        """Pickle the geometries as WKB in one vectorised call: pieces travel between workers,
        and shapely pickles geometry by geometry (4–5× slower for a block's thousands)."""
        columns = (self.class_ids, self.prob_sums, self.prob_counts)
        return _components_from_wkb, (*columns, shapely.to_wkb(self.geometries))

    @classmethod
    def concat(cls, parts: Sequence[Components]) -> Components:
        """All components of ``parts``, in order."""
        if not parts:
            return cls.empty()
        columns = [np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(cls)]
        return cls(*columns)

    @classmethod
    def empty(cls) -> Components:
        """No components."""
        return cls(
            np.zeros(0, np.uint8),
            np.zeros(0, np.float64),
            np.zeros(0, np.int64),
            np.zeros(0, object),
        )


def _components_from_wkb(
    class_ids: npt.NDArray[np.uint8],
    prob_sums: npt.NDArray[np.float64],
    prob_counts: npt.NDArray[np.int64],
    wkb: npt.NDArray[np.object_],
) -> Components:
    return Components(class_ids, prob_sums, prob_counts, np.asarray(shapely.from_wkb(wkb)))


@dataclass(frozen=True)
class BlockPieces:
    """The connected components of one block; piece ``i`` has label ``i + 1`` on the edges.

    Edge arrays hold the label of each pixel along the block's top and bottom rows and left and
    right columns (0 where there is no piece), which is all the cross-block merge looks at.
    """

    row_off: int
    col_off: int
    height: int
    width: int
    connectivity: Connectivity
    pieces: Components
    top: npt.NDArray[np.int32]
    bottom: npt.NDArray[np.int32]
    left: npt.NDArray[np.int32]
    right: npt.NDArray[np.int32]

    def __len__(self) -> int:
        return len(self.pieces)


def label_components(
    classes: npt.NDArray[np.uint8], connectivity: Connectivity, nodata: int = NODATA
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.uint8]]:
    """Label connected components of each class (0 and ``nodata`` excluded).

    Returns the label image (0 = no component, labels 1..n) and the class id of each label.
    """
    highest = int(np.max(classes, where=classes != nodata, initial=0))  # 2 ms a 2048² block; bincount 16
    labels = np.zeros(classes.shape, dtype=np.int32)
    scratch: npt.NDArray[np.int32] | None = None
    class_of: list[npt.NDArray[np.uint8]] = []
    count = 0
    for class_id in range(1, highest + 1):
        if class_id == nodata:
            continue
        mask = classes == class_id
        if not mask.any():
            continue
        if count == 0:
            n = ndimage.label(mask, structure=_STRUCTURES[connectivity], output=labels)
        else:
            scratch = np.empty_like(labels) if scratch is None else scratch
            n = ndimage.label(mask, structure=_STRUCTURES[connectivity], output=scratch)
            np.add(scratch, count, out=scratch, where=scratch > 0)
            labels += scratch
        class_of.append(np.full(n, class_id, dtype=np.uint8))
        count += n
    ids = np.concatenate(class_of) if class_of else np.zeros(0, dtype=np.uint8)
    return labels, ids


def polygonize_labels(
    labels: npt.NDArray[np.int32], count: int, row_off: int = 0, col_off: int = 0
) -> npt.NDArray[np.object_]:
    """One (Multi)Polygon per label, in scene pixel coordinates (x = column, y = row).

    GDAL polygonises 4-connected regions; the parts of an 8-connected label that touch only at
    corners are gathered into one MultiPolygon, which is valid since parts meet at points only,
    in the order of their top-left vertex (see ``merge.in_polygonize_order``).
    """
    geometries = np.empty(count, dtype=object)
    rings = _trace_rings(labels, row_off, col_off)
    if rings is None:
        return geometries
    coords, ring_sizes, rings_per_polygon, owner = rings
    ring_offsets = np.concatenate([[0], np.cumsum(ring_sizes)])
    polygon_offsets = np.concatenate([[0], np.cumsum(rings_per_polygon)])
    polygons = shapely.from_ragged_array(
        shapely.GeometryType.POLYGON, coords, (ring_offsets, polygon_offsets)
    )
    parts_per_label = np.bincount(owner, minlength=count)
    single = parts_per_label[owner] == 1
    geometries[owner[single]] = polygons[single]
    if not single.all():
        multi = np.flatnonzero(~single)
        top_left = coords[ring_offsets[polygon_offsets[:-1]]][multi]  # where GDAL starts a ring
        multi = multi[np.lexsort((top_left[:, 0], top_left[:, 1], owner[multi]))]
        labels_with_parts = np.unique(owner[multi])
        geometries[labels_with_parts] = shapely.multipolygons(
            polygons[multi], indices=np.searchsorted(labels_with_parts, owner[multi])
        )
    suspects = np.unique(owner[_has_self_touching_ring(coords, ring_sizes, rings_per_polygon)])
    invalid = suspects[~shapely.is_valid(geometries[suspects])]
    if len(invalid):
        geometries[invalid] = shapely.make_valid(geometries[invalid])
    return geometries


_MIN_GAP_ROWS = 16
"""Empty rows that split a block into bands polygonised apart (GDAL then skips those rows)."""


def _foreground_windows(foreground: npt.NDArray[np.bool_]) -> list[tuple[slice, slice]]:
    """Bands of rows with foreground, split at runs of empty rows, each cropped to its columns.

    No region crosses an empty row, so the bands can be polygonised one by one.
    """
    rows = np.flatnonzero(foreground.any(axis=1))
    if len(rows) == 0:
        return []
    gaps = np.flatnonzero(np.diff(rows) > _MIN_GAP_ROWS)
    starts, stops = rows[np.r_[0, gaps + 1]], rows[np.r_[gaps, len(rows) - 1]] + 1
    windows = []
    for start, stop in zip(starts.tolist(), stops.tolist(), strict=True):
        cols = np.flatnonzero(foreground[start:stop].any(axis=0))
        windows.append((slice(start, stop), slice(int(cols[0]), int(cols[-1]) + 1)))
    return windows


_Rings = tuple[npt.NDArray[np.float64], npt.NDArray[np.int64], npt.NDArray[np.int64], npt.NDArray[np.int64]]


def _trace_rings(labels: npt.NDArray[np.int32], row_off: int, col_off: int) -> _Rings | None:
    """GDAL's 4-connected polygons of the labelled regions, as flat arrays (``None``: no region).

    Returns the closed rings' (x, y) vertices end to end, the vertex count of each ring, the
    ring count of each polygon (exterior first) and the label index (label - 1) of each polygon.
    Coordinates go straight into C arrays, so no Python object outlives its polygon: the garbage
    collector has nothing to rescan (holding GDAL's GeoJSON costs as much as GDAL itself).
    """
    foreground = labels > 0
    xy, ring_sizes, rings_per_polygon, owner = array("d"), array("q"), array("q"), array("q")
    for rows, cols in _foreground_windows(foreground):
        transform = Affine.translation(col_off + cols.start, row_off + rows.start)
        window = labels[rows, cols]
        for geojson, value in shapes(
            window, mask=foreground[rows, cols], connectivity=4, transform=transform
        ):
            rings = geojson["coordinates"]
            xy.extend(chain.from_iterable(chain.from_iterable(rings)))
            ring_sizes.extend(map(len, rings))
            rings_per_polygon.append(len(rings))
            owner.append(int(value) - 1)
    if not owner:
        return None
    return (
        np.frombuffer(xy, dtype=np.float64).reshape(-1, 2),
        np.frombuffer(ring_sizes, dtype=np.int64),
        np.frombuffer(rings_per_polygon, dtype=np.int64),
        np.frombuffer(owner, dtype=np.int64),
    )


def _has_self_touching_ring(
    coords: npt.NDArray[np.float64],
    ring_sizes: npt.NDArray[np.int64],
    rings_per_polygon: npt.NDArray[np.int64],
) -> npt.NDArray[np.bool_]:
    """Which polygons have a ring that passes through one vertex twice (closing vertex aside).

    The rings of one polygon bound one 4-connected pixel region. They run along pixel edges,
    each edge used once, so they can meet only at a grid vertex where region pixels touch
    diagonally, and there they touch without crossing. Rings that touch each other at such
    points are valid (the region's pixels, joined through shared edges, keep the interior
    connected); a ring touching itself is not. GDAL 3.10 never traces one, but that is its
    choice, not a guarantee, so the polygons that have one go to GEOS's validity check. Such a
    ring is two loops of at least 4 corners through one vertex: 9 vertices with the closing one.
    """
    ring_of_vertex = np.repeat(np.arange(len(ring_sizes)), ring_sizes)
    checked = np.repeat(ring_sizes >= 9, ring_sizes)
    checked[np.cumsum(ring_sizes) - 1] = False
    if not checked.any():
        return np.zeros(len(rings_per_polygon), dtype=bool)
    grid = coords[checked].astype(np.int64)
    grid -= grid.min(axis=0)
    span = grid.max(axis=0) + 1
    keys = (ring_of_vertex[checked] * span[0] + grid[:, 0]) * span[1] + grid[:, 1]
    keys.sort()
    touching_rings = keys[1:][keys[1:] == keys[:-1]] // (span[0] * span[1])
    polygon_of_ring = np.repeat(np.arange(len(rings_per_polygon)), rings_per_polygon)
    flags = np.zeros(len(rings_per_polygon), dtype=bool)
    flags[polygon_of_ring[touching_rings]] = True
    return flags


def polygonize_block(
    classes: npt.NDArray[np.uint8],
    row_off: int,
    col_off: int,
    *,
    connectivity: Connectivity = 8,
    probability: npt.NDArray[np.uint8] | None = None,
    nodata: int = NODATA,
) -> BlockPieces:
    """Polygonise one block of class ids whose top-left pixel is ``(row_off, col_off)``.

    ``probability`` is the mask's optional band 2 (percent, ``nodata`` where unknown) for the
    same block. Pure: no I/O, so a distributed task can call it on the block it just stitched.
    """
    if classes.ndim != 2:
        raise ValueError(f"classes must be 2-D, got shape {classes.shape}")
    labels, class_ids = label_components(classes, connectivity, nodata)
    count = len(class_ids)
    if probability is None or count == 0:
        prob_sums = np.zeros(count, dtype=np.float64)
        prob_counts = np.zeros(count, dtype=np.int64)
    else:
        flat = labels.ravel()
        inside = np.flatnonzero(flat)
        percent = probability.ravel()[inside]
        known = percent != nodata
        label_of = flat[inside][known]
        prob_sums = np.bincount(label_of, weights=percent[known], minlength=count + 1)[1:].astype(np.float64)
        prob_counts = np.bincount(label_of, minlength=count + 1)[1:].astype(np.int64)
    return BlockPieces(
        row_off=row_off,
        col_off=col_off,
        height=classes.shape[0],
        width=classes.shape[1],
        connectivity=connectivity,
        pieces=Components(
            class_ids=class_ids,
            prob_sums=prob_sums,
            prob_counts=prob_counts,
            geometries=polygonize_labels(labels, count, row_off, col_off),
        ),
        top=labels[0].copy(),
        bottom=labels[-1].copy(),
        left=labels[:, 0].copy(),
        right=labels[:, -1].copy(),
    )
