"""Re-describe a trained checkpoint: record its training domain, make its provenance portable,
record its radiometry, record its bands' colours.

For checkpoints trained before ``ModelMetadata.domain`` existed (the shipped model among them),
without retraining. The training config stored in the checkpoint is loaded again and its data
prepared exactly as ``train`` prepares it; the normalisation recomputed from that data must equal
the stored one (the proof that the same chips were read), otherwise nothing is written. The
weights are copied unchanged; only the metadata in the header differs.

``record_radiometry`` adds the ``Radiometry`` that ``train`` records now to a checkpoint trained
before it existed, when every training scene named in its provenance is of a type the rule
keeps as it is: the model then saw exactly the pixels the rule gives, so the rule describes it.

``record_band_colours`` adds ``ModelMetadata.band_colours`` from the files of the scenes its
provenance names, when its config read every scene's bands as the file lists them, so that
scenes are read by their bands' colours.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import rasterio

from geoseg.errors import CheckpointError
from geoseg.model.checkpoint import load_generator, rewrite_metadata, save_checkpoint
from geoseg.model.metadata import ModelMetadata, read_metadata
from geoseg.sampledata import expand_variables
from geoseg.scenes import listed_bands, open_pixels
from geoseg.training.chips import agreed_colours
from geoseg.training.config import TrainConfig, parse_config
from geoseg.training.provenance import CHECKOUT, portable_config, portable_path
from geoseg.training.trainer import prepare_data

_PATH_LISTS = ("train_scenes", "train_labels", "val_scenes", "val_labels")


def restamp_checkpoint(
    path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> ModelMetadata:
    """Write ``path`` (or ``out``) with the training domain and portable paths; same weights."""
    model, metadata = load_generator(path)
    config = _stored_config(path, metadata)
    data = prepare_data(config)
    expected = metadata.normalization
    same = all(
        math.isclose(a, b, rel_tol=1e-6)
        for a, b in zip([*data.mean, *data.std], [*expected.mean, *expected.std], strict=True)
    )
    if not same or data.provenance["counts"] != metadata.provenance.get("counts"):
        raise CheckpointError(
            f"{path}: its training data has changed (normalisation or chip counts differ), "
            "so the recorded domain would not describe it"
        )
    provenance = dict(metadata.provenance)
    for key in _PATH_LISTS:
        provenance[key] = [portable_path(p) for p in provenance.get(key, [])]
    updated = metadata.model_copy(
        update={
            "domain": data.domain,
            "provenance": provenance,
            "training": {**metadata.training, "config": portable_config(config)},
        }
    )
    save_checkpoint(Path(out or path), model, updated)
    return updated


def record_radiometry(
    path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> ModelMetadata:
    """Write ``path`` (or ``out``) with the radiometry its training config gives; same weights.

    Refused when a training scene is missing or of a pixel type the rule would have scaled.
    """
    metadata = read_metadata(path)
    radiometry = _stored_config(path, metadata).data.radiometry
    scenes = _training_scenes(path, metadata)
    for scene in scenes:
        with _open_named(scene) as dataset:
            if not set(dataset.dtypes) <= set(radiometry.kept_dtypes):
                raise CheckpointError(
                    f"{path}: training scene {scene} has pixels of type {dataset.dtypes[0]}, which "
                    "the rule would scale: retrain instead"
                )
    updated = metadata.model_copy(update={"radiometry": radiometry})
    rewrite_metadata(path, updated, out)
    return updated


def record_band_colours(
    path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> ModelMetadata:
    """Write ``path`` (or ``out``) with the colours its training and validation scenes name their
    bands (``chips.agreed_colours``, as ``train`` records them now); same weights.

    Refused when its config chose bands (the files' order is then not what it read) or a scene
    is missing.
    """
    metadata = read_metadata(path)
    config = _stored_config(path, metadata)
    if any(entry.bands for entry in [*config.data.train, *config.data.val]):
        raise CheckpointError(f"{path}: its training config chose bands: retrain to record their colours")
    scenes = [*_training_scenes(path, metadata), *metadata.provenance.get("val_scenes", [])]
    named = []
    for scene in scenes:
        with _open_named(scene) as dataset:
            colours = [ci.name for ci in dataset.colorinterp]
        named.append((scene, tuple(colours[b - 1] for b in listed_bands(colours))))
    updated = metadata.model_copy(update={"band_colours": agreed_colours(named)})
    rewrite_metadata(path, updated, out)
    return updated


def _stored_config(path: str | os.PathLike[str], metadata: ModelMetadata) -> TrainConfig:
    stored = metadata.training.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: no training config stored, so its training data is unknown")
    return parse_config(stored, CHECKOUT, source=f"{path}: training.config")


def _training_scenes(path: str | os.PathLike[str], metadata: ModelMetadata) -> list[str]:
    scenes = metadata.provenance.get("train_scenes") or []
    if not scenes:
        raise CheckpointError(f"{path}: no training scenes named in its provenance")
    return list(scenes)


def _open_named(scene: str) -> rasterio.DatasetReader:
    """A scene named in a provenance (``$GEOSEG_SAMPLE_DATA/…``; an absolute path stays absolute)."""
    return open_pixels(str(CHECKOUT / expand_variables(scene)))
