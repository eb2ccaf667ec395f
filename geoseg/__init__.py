"""geoseg: satellite and aerial scenes to georeferenced segmentation masks and vector maps.

The package follows the pipeline: ``scenes`` (open and validate) → ``tiling`` (haloed windows)
→ ``model`` (generator, checkpoints) → ``inference`` → ``predict`` (blocks read, predicted, their
tiles' cores stitched) → ``maskwriter`` (COG masks) → ``vectorize`` (polygons) → outputs;
``distributed`` orchestrates it on Dask and ``cli`` is a thin layer over all of it.
"""

__version__ = "0.1.0"
