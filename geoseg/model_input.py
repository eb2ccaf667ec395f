"""How a scene is read for a model: its pixel scaling, the grid it is read on, and the notes.

``prepare_scene`` is the step between opening a scene and tiling it, shared by ``geoseg
predict`` and ``geoseg run``'s open task. One decimated sample of the scene's pixels gives both
its scaling (``geoseg.radiometry``, when the checkpoint asks for one) and its applicability
warnings (``geoseg.applicability``, compared as the model sees the pixels); with ``resample:
model`` a scene outside the model's GSD range is placed on its model grid (``geoseg.resample``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from geoseg.applicability import sample_pixels
from geoseg.errors import SceneError
from geoseg.model.metadata import Domain, Radiometry
from geoseg.radiometry import band_scaling, needs_scaling
from geoseg.resample import ModelGrid, model_grid, scene_notes
from geoseg.scenes import Scene
from geoseg.workflow import Resample


@dataclass(frozen=True)
class PreparedScene:
    """A scene as the model reads it (with its ``scaling``), the notes about it, and the grid it
    is read on (None: its own)."""

    scene: Scene
    notes: list[str]
    grid: ModelGrid | None


def prepare_scene(
    scene: Scene, domain: Domain | None, radiometry: Radiometry | None, resample: Resample = "none"
) -> PreparedScene:
    """Scale, place and describe ``scene`` for a model trained on ``domain`` with ``radiometry``.

    Raises ``SceneError`` when a scene that must be scaled has no readable valid pixel to scale
    by, or when its model grid is over the scene limit.
    """
    sample = sample_pixels(scene) if domain is not None or needs_scaling(scene.dtype, radiometry) else None
    scene = scaled_scene(scene, radiometry, sample)
    grid = model_grid(scene, domain) if resample == "model" else None
    notes = scene_notes(scene, domain, grid, sample)
    return PreparedScene(scene, notes if scene.scaling is None else [*notes, scene.scaling.note], grid)


def scaled_scene(scene: Scene, radiometry: Radiometry | None, sample: np.ndarray | None = None) -> Scene:
    """``scene`` with the scaling ``radiometry`` gives it (by ``sample``, a ``sample_pixels`` of
    it, read here when not given); unchanged when its pixels are read as they are.

    Pixels that are 0 in every band, NaN or infinite do not count towards the percentiles: in
    11/16-bit and float products they are fill that the file does not tag (a Landsat collar),
    and a collar of more than 0.5 % of the scene would otherwise set its dark end.
    """
    if not needs_scaling(scene.dtype, radiometry):
        return scene
    assert radiometry is not None
    sample = sample_pixels(scene) if sample is None else sample
    if sample is not None:  # fill that no nodata tag marks: NaN, inf, or 0 in every band (a collar)
        sample = sample[:, np.isfinite(sample).all(axis=0) & (sample != 0).any(axis=0)]
    if sample is None or not sample.size:
        raise SceneError(scene.path, "no readable valid pixel to scale its values by for the model")
    return dataclasses.replace(scene, scaling=band_scaling(sample, radiometry))
