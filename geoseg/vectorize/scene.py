"""Vectorise one scene's mask end to end: blockwise polygonise, merge, clean up, write.

Memory is bounded by the block size plus the output polygons: the mask is read with windowed
reads, one block at a time, and never as a whole.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from geoseg.maskformat import iter_mask_blocks, read_mask_info
from geoseg.safepaths import check_replaceable, refuse_overwriting_inputs
from geoseg.vectorize.cleanup import Cleanup, to_features
from geoseg.vectorize.formats import vector_driver, write_features
from geoseg.vectorize.merge import merge_blocks
from geoseg.vectorize.polygonize import Connectivity, polygonize_block

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class VectorizeSummary:
    """What ``vectorize_mask`` did."""

    scene_id: str
    polygons: int
    blocks: int
    pieces: int
    seconds: float
    outputs: tuple[Path, ...]


def vectorize_mask(
    mask_path: PathLike,
    out_paths: PathLike | Sequence[PathLike],
    *,
    block_size: int = 2048,
    connectivity: Connectivity = 8,
    min_area_m2: float = 0.0,
    fill_holes_below_m2: float = 0.0,
    simplify_tolerance_m: float = 0.0,
    scene_id: str | None = None,
) -> VectorizeSummary:
    """Vectorise ``mask_path`` into one feature per connected component, written to each path.

    The result does not depend on ``block_size``: objects cut by block borders are merged.
    """
    start = time.perf_counter()
    outputs = [out_paths] if isinstance(out_paths, str | os.PathLike) else list(out_paths)
    for out in outputs:
        vector_driver(out)
        check_replaceable(out)
    refuse_overwriting_inputs(outputs, [mask_path])
    info = read_mask_info(mask_path)
    pieces = [
        polygonize_block(
            block.classes,
            block.row_off,
            block.col_off,
            connectivity=connectivity,
            probability=block.probability,
        )
        for block in iter_mask_blocks(mask_path, block_size)
    ]
    components = merge_blocks(pieces)
    cleanup = Cleanup(min_area_m2, fill_holes_below_m2, simplify_tolerance_m)
    scene = scene_id if scene_id is not None else Path(mask_path).stem
    features = to_features(components, info, cleanup, scene)
    written = tuple(write_features(features, out) for out in outputs)
    return VectorizeSummary(
        scene_id=scene,
        polygons=len(features),
        blocks=len(pieces),
        pieces=sum(len(p) for p in pieces),
        seconds=time.perf_counter() - start,
        outputs=written,
    )
