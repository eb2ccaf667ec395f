"""How a scene is read for a model: its bands, its pixel scaling, the grid it is read on, and the notes.

``open_for_model`` is the step between a scene's path and tiling it, shared by ``geoseg
predict`` and ``geoseg run``'s open task: the scene is opened with the bands the model reads
(by their colours where the checkpoint records them and the file names them), then
``prepare_scene`` takes one decimated sample of its pixels for both its scaling
(``geoseg.radiometry``, when the checkpoint asks for one) and its applicability warnings
(``geoseg.applicability``, compared as the model sees the pixels); with ``resample: model`` a
scene outside the model's GSD range is placed on its model grid (``geoseg.resample``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from geoseg.applicability import sample_pixels
from geoseg.errors import SceneError
from geoseg.model.metadata import Domain, ModelMetadata, Radiometry, names_its_bands
from geoseg.radiometry import band_scaling, needs_scaling
from geoseg.resample import ModelGrid, model_grid, scene_notes
from geoseg.scenes import ONE_STRIP_NOTE, Scene, open_scene
from geoseg.workflow import Resample


@dataclass(frozen=True)
class ModelInput:
    """What reading a scene for a model needs of its checkpoint (a small part of its metadata,
    which travels to the workers instead of the whole of it)."""

    bands: int
    colours: tuple[str, ...] | None
    domain: Domain | None
    radiometry: Radiometry | None

    @classmethod
    def of(cls, metadata: ModelMetadata) -> ModelInput:
        """The model input ``metadata`` describes."""
        colours = tuple(metadata.band_colours) if metadata.band_colours else None
        return cls(metadata.architecture.in_bands, colours, metadata.domain, metadata.radiometry)


@dataclass(frozen=True)
class PreparedScene:
    """A scene as the model reads it (with its ``scaling``), the notes about it, and the grid it
    is read on (None: its own)."""

    scene: Scene
    notes: list[str]
    grid: ModelGrid | None


def open_for_model(
    path: str | os.PathLike[str],
    model: ModelInput,
    bands: Sequence[int] | None = None,
    resample: Resample = "none",
) -> PreparedScene:
    """Open the scene at ``path`` with ``bands`` (None: the model's, by colour where it can) and
    prepare it for ``model``; raises ``SceneError`` naming the file and the problem."""
    scene = open_scene(path, bands=bands, expected_bands=model.bands, colours=model.colours)
    return prepare_scene(scene, model, resample)


def prepare_scene(scene: Scene, model: ModelInput, resample: Resample = "none") -> PreparedScene:
    """Scale, place and describe ``scene`` for ``model``.

    Raises ``SceneError`` when a scene that must be scaled has no readable valid pixel to scale
    by, or when its model grid is over the scene limit.
    """
    domain, radiometry = model.domain, model.radiometry
    sample = sample_pixels(scene) if domain is not None or needs_scaling(scene.dtype, radiometry) else None
    scene = scaled_scene(scene, radiometry, sample)
    grid = model_grid(scene, domain) if resample == "model" else None
    notes = [*band_notes(scene, model.colours), *scene_notes(scene, domain, grid, sample)]
    if scene.one_strip:
        notes.append(ONE_STRIP_NOTE)
    return PreparedScene(scene, notes if scene.scaling is None else [*notes, scene.scaling.note], grid)


def band_notes(scene: Scene, colours: Sequence[str] | None) -> list[str]:
    """How the scene's bands were chosen by colour; or that the colours it names are not the
    model's (bands chosen by hand, or a file that names only some of them)."""
    if scene.band_choice is not None:
        return [scene.band_choice]
    named = names_its_bands(scene.colours) or "alpha" in scene.colours  # alpha is a wrong band too
    if colours is None or not named or tuple(scene.colours) == tuple(colours):
        return []
    return [f"bands read as {', '.join(scene.colours)}; the model's are {', '.join(colours)}"]


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
        raise SceneError(
            scene.path,
            "no readable valid pixel to scale its values by for the model "
            "(every pixel read is nodata, not finite, or 0 in every band: untagged fill)",
        )
    return dataclasses.replace(scene, scaling=band_scaling(sample, radiometry))
