"""Re-describe a trained checkpoint: record its training domain, make its provenance portable.

For checkpoints trained before ``ModelMetadata.domain`` existed (the shipped model among them),
without retraining. The training config stored in the checkpoint is loaded again and its data
prepared exactly as ``train`` prepares it; the normalisation recomputed from that data must equal
the stored one (the proof that the same chips were read), otherwise nothing is written. The
weights are copied unchanged; only the metadata in the header differs.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from geoseg.errors import CheckpointError
from geoseg.model.checkpoint import load_generator, save_checkpoint
from geoseg.model.metadata import ModelMetadata
from geoseg.training.config import parse_config
from geoseg.training.provenance import CHECKOUT, portable_config, portable_path
from geoseg.training.trainer import prepare_data

_PATH_LISTS = ("train_scenes", "train_labels", "val_scenes", "val_labels")


def restamp_checkpoint(
    path: str | os.PathLike[str], out: str | os.PathLike[str] | None = None
) -> ModelMetadata:
    """Write ``path`` (or ``out``) with the training domain and portable paths; same weights."""
    model, metadata = load_generator(path)
    stored = metadata.training.get("config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{path}: no training config stored, so its training data is unknown")
    config = parse_config(stored, CHECKOUT, source=f"{path}: training.config")
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
