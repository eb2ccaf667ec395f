"""What a run's tasks hand each other: a block's saved part, its polygon pieces, a scene's files.

Small and picklable. Apart from ``tasks.py`` because Dask's client unpickles the type of every
finished task's result: defined with the tasks, that would import the task module (torch,
GeoPandas, SciPy) into ``geoseg run``'s driver.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from geoseg.quicklook import ThumbnailPart
    from geoseg.tiling import Block
    from geoseg.vectorize import BlockPieces


@dataclass(frozen=True)
class BlockPart:
    """What a block's prediction hands on: its saved part's path, valid pixels and thumbnail share."""

    block: Block
    part: str
    valid_pixels: int
    thumbnail: ThumbnailPart


@dataclass(frozen=True)
class BlockPolygons:
    """What a block hands to its scene's vectors: the polygon pieces of its core."""

    valid_pixels: int
    pieces: BlockPieces


@dataclass(frozen=True)
class MaskFiles:
    """What ``write_mask_task`` wrote."""

    mask: str
    quicklook: str


@dataclass(frozen=True)
class VectorFiles:
    """What ``write_vectors_task`` wrote, with the figures the record keeps."""

    paths: list[str]
    polygons: int
    building_area_m2: float
    run_layer_part: bytes | None = None
    """The scene's features in EPSG:4326 for the run layer (``Features.to_ipc``), reprojected
    on the worker so that the client only appends them; None when the run writes no layer."""
