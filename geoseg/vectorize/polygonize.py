"""Blockwise polygonising: one block of class ids → polygon pieces in the scene's pixel grid.

A block is a rectangle of *core* pixels (no halo) at ``(row_off, col_off)`` in the scene. Its
connected components become pieces whose vertices are exact integers of the scene's pixel grid,
so pieces of one object cut by a block border share their edges exactly and merge without
slivers (see ``merge.py``). Each piece keeps what the merge and the attributes need: class id,
pixel count, probability sum, and the labels along the block's four edges.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Literal

import numpy as np
import numpy.typing as npt
import shapely
from rasterio.features import shapes
from rasterio.transform import Affine
from scipy import ndimage

from geoseg.stitching import NODATA

Connectivity = Literal[4, 8]

_STRUCTURES = {
    4: ndimage.generate_binary_structure(2, 1),
    8: ndimage.generate_binary_structure(2, 2),
}


@dataclass(frozen=True)
class Components:
    """Connected components, column-wise; geometries in scene pixel coordinates."""

    class_ids: npt.NDArray[np.uint8]
    pixel_counts: npt.NDArray[np.int64]
    prob_sums: npt.NDArray[np.float64]
    prob_counts: npt.NDArray[np.int64]
    geometries: npt.NDArray[np.object_]

    def __len__(self) -> int:
        return len(self.class_ids)

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
            np.zeros(0, np.int64),
            np.zeros(0, np.float64),
            np.zeros(0, np.int64),
            np.zeros(0, object),
        )


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
    labels = np.zeros(classes.shape, dtype=np.int32)
    class_of: list[npt.NDArray[np.uint8]] = []
    count = 0
    present = np.flatnonzero(np.bincount(classes.ravel(), minlength=256))
    for class_id in present[(present != 0) & (present != nodata)]:
        class_labels, n = ndimage.label(classes == class_id, structure=_STRUCTURES[connectivity])
        np.add(labels, class_labels + count, out=labels, where=class_labels > 0)
        class_of.append(np.full(n, class_id, dtype=np.uint8))
        count += n
    ids = np.concatenate(class_of) if class_of else np.zeros(0, dtype=np.uint8)
    return labels, ids


def polygonize_labels(
    labels: npt.NDArray[np.int32], count: int, row_off: int = 0, col_off: int = 0
) -> npt.NDArray[np.object_]:
    """One (Multi)Polygon per label, in scene pixel coordinates (x = column, y = row).

    GDAL polygonises 4-connected regions; the parts of an 8-connected label that touch only at
    corners are gathered into one MultiPolygon, which is valid since parts meet at points only.
    """
    coords: list[npt.NDArray[np.float64]] = []
    ring_sizes: list[int] = []
    rings_per_polygon: list[int] = []
    polygon_labels: list[int] = []
    transform = Affine.translation(col_off, row_off)
    for geojson, value in shapes(labels, mask=labels > 0, connectivity=4, transform=transform):
        for ring in geojson["coordinates"]:
            coords.append(np.asarray(ring, dtype=np.float64))
            ring_sizes.append(len(ring))
        rings_per_polygon.append(len(geojson["coordinates"]))
        polygon_labels.append(int(value) - 1)
    geometries = np.empty(count, dtype=object)
    if not coords:
        return geometries
    rings = shapely.linearrings(
        np.concatenate(coords), indices=np.repeat(np.arange(len(ring_sizes)), ring_sizes)
    )
    polygons = shapely.polygons(
        rings, indices=np.repeat(np.arange(len(rings_per_polygon)), rings_per_polygon)
    )
    owner = np.asarray(polygon_labels)
    parts_per_label = np.bincount(owner, minlength=count)
    single = parts_per_label[owner] == 1
    geometries[owner[single]] = polygons[single]
    if not single.all():
        multi = np.flatnonzero(~single)
        multi = multi[np.argsort(owner[multi], kind="stable")]
        labels_with_parts = np.unique(owner[multi])
        geometries[labels_with_parts] = shapely.multipolygons(
            polygons[multi], indices=np.searchsorted(labels_with_parts, owner[multi])
        )
    invalid = ~shapely.is_valid(geometries)
    if invalid.any():
        geometries[invalid] = shapely.make_valid(geometries[invalid])
    return geometries


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
    index = np.arange(1, count + 1)
    pixel_counts = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.int64)
    if probability is None or count == 0:
        prob_sums = np.zeros(count, dtype=np.float64)
        prob_counts = np.zeros(count, dtype=np.int64)
    else:
        known = np.where(probability != nodata, labels, 0)
        prob_sums = np.asarray(ndimage.sum_labels(probability, known, index), dtype=np.float64)
        prob_counts = np.bincount(known.ravel(), minlength=count + 1)[1:].astype(np.int64)
    return BlockPieces(
        row_off=row_off,
        col_off=col_off,
        height=classes.shape[0],
        width=classes.shape[1],
        connectivity=connectivity,
        pieces=Components(
            class_ids=class_ids,
            pixel_counts=pixel_counts,
            prob_sums=prob_sums,
            prob_counts=prob_counts,
            geometries=polygonize_labels(labels, count, row_off, col_off),
        ),
        top=labels[0].copy(),
        bottom=labels[-1].copy(),
        left=labels[:, 0].copy(),
        right=labels[:, -1].copy(),
    )
