"""Masks → polygons: blockwise polygonising with an exact cross-block merge.

One call does a whole scene: ``vectorize_mask(mask_path, out_path)``. A distributed pipeline
splits the same steps across tasks:

* in each inference task, on the block of core pixels it has stitched (no halo; blocks must
  not overlap): ``pieces = polygonize_block(classes, row_off, col_off, connectivity=8,
  probability=prob)`` — pure, small, picklable;
* in one per-scene task, with every block's pieces: ``components = merge_blocks(pieces)``,
  ``features = to_features(components, read_mask_info(mask), Cleanup(...), scene_id)``,
  ``write_features(features, out)``;
* in one run-level task: ``gather_layers(per_scene_paths, run_out)``.

Pieces carry geometries in the scene's pixel grid (exact integer vertices), so the merge is
exact whatever the block layout; metres and the CRS enter only in ``to_features``, which
gives a ``Features`` table of WKB (``.to_frame()`` for a GeoDataFrame).
"""

from geoseg.maskformat import MaskBlock, MaskInfo, iter_mask_blocks, read_mask_info
from geoseg.vectorize.cleanup import Cleanup, to_features
from geoseg.vectorize.features import Features
from geoseg.vectorize.formats import gather_layers, read_features, write_features
from geoseg.vectorize.merge import merge_blocks
from geoseg.vectorize.polygonize import BlockPieces, Components, polygonize_block
from geoseg.vectorize.scene import VectorizeSummary, vectorize_mask

__all__ = [
    "BlockPieces",
    "Cleanup",
    "Components",
    "Features",
    "MaskBlock",
    "MaskInfo",
    "VectorizeSummary",
    "gather_layers",
    "iter_mask_blocks",
    "merge_blocks",
    "polygonize_block",
    "read_features",
    "read_mask_info",
    "to_features",
    "vectorize_mask",
    "write_features",
]
