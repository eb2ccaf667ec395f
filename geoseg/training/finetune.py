"""Fine-tuning: a training run that starts from a checkpoint's generator (``init_from``).

The starting weights were learnt on pixels scaled, ordered and normalised as that checkpoint
says, so the run keeps its normalisation and must read its scenes the same way: the config's
generator, classes and radiometry, and the colours its files name their bands, must be the
checkpoint's. What the model was trained on then spans both datasets: the recorded domain is
the union of the checkpoint's and the new data's. ``init_from_share`` saves a blend of the
fine-tuned and the starting weights instead (``interpolated``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from geoseg.errors import ConfigError
from geoseg.model.architecture import Architecture, LinearArchitecture
from geoseg.model.checkpoint import Generator, load_generator
from geoseg.model.metadata import Domain, ModelMetadata
from geoseg.training.config import TrainConfig
from geoseg.training.provenance import portable_path


@dataclass(frozen=True)
class StartingPoint:
    """The generator a fine-tuning run starts from, and what its checkpoint says of it."""

    generator: Generator
    metadata: ModelMetadata
    provenance: dict[str, object]
    """``init_from`` as the new checkpoint records it: the file (portable) and its SHA-256."""


def starting_point(config: TrainConfig, in_bands: int, colours: list[str] | None) -> StartingPoint:
    """The generator of ``config.init_from``, checked against the run it is to start; ``colours``
    are the ones the training files name (``chips.band_colours``: None where they name none).

    Raises ``ConfigError`` naming ``init_from`` when the checkpoint's architecture, classes,
    radiometry or band colours are not the run's (``CheckpointError`` when it is unreadable).
    """
    path = Path(str(config.init_from))
    generator, metadata = load_generator(path)
    check_start(config, metadata, in_bands, colours)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return StartingPoint(generator, metadata, {"checkpoint": portable_path(str(path)), "sha256": digest})


def check_start(
    config: TrainConfig,
    metadata: ModelMetadata,
    in_bands: int | None = None,
    colours: list[str] | None = None,
) -> None:
    """Refuse a starting checkpoint (``metadata``) whose generator, classes, radiometry or band
    colours are not the run's, in one ``ConfigError`` naming ``init_from`` and every difference.

    Before the training data is read (``in_bands`` None) the band count and colours are not
    known yet: ``train`` checks the rest then, so a mismatch costs no data preparation.
    """
    bands = metadata.architecture.in_bands if in_bands is None else in_bands
    wanted = config.generator.architecture(bands, len(config.data.classes))
    problems = []
    if metadata.architecture != wanted:
        theirs, ours = _differences(metadata.architecture, wanted)
        problems.append(f"its generator has {theirs}, the config's {ours}")
    if metadata.classes != list(config.data.classes):
        problems.append(f"its classes are {metadata.classes}, the config's {list(config.data.classes)}")
    if metadata.radiometry is not None and metadata.radiometry != config.data.radiometry:
        problems.append("its radiometry is not the config's data.radiometry")
    if metadata.band_colours and colours and colours != metadata.band_colours:
        theirs, ours = ", ".join(metadata.band_colours), ", ".join(colours)
        problems.append(f"it reads bands as {theirs}, the training files name {ours}")
    if problems:
        raise ConfigError(f"init_from: {config.init_from}: {'; '.join(problems)}")


def widened(start: Domain | None, new: Domain) -> Domain:
    """The domain of a model trained on ``start``'s data and then on ``new``'s: both GSD ranges
    and percentile ranges; the normalisation statistics stay the starting model's."""
    if start is None:
        return new
    return Domain(
        gsd_min_m=min(start.gsd_min_m, new.gsd_min_m),
        gsd_max_m=max(start.gsd_max_m, new.gsd_max_m),
        mean=start.mean,
        std=start.std,
        p1=[min(a, b) for a, b in zip(start.p1, new.p1, strict=True)],
        p99=[max(a, b) for a, b in zip(start.p99, new.p99, strict=True)],
    )


def interpolated(
    tuned: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor], share: float
) -> dict[str, torch.Tensor]:
    """``(1 - share) × tuned + share × start`` for every floating tensor of a generator's state
    (weights and batch-norm statistics), on ``tuned``'s devices; counters stay ``tuned``'s.

    Weight-space ensembling of a fine-tuned model with the one it started from (WiSE-FT:
    Wortsman et al. 2022, "Robust fine-tuning of zero-shot models"): the blend keeps much of what
    fine-tuning gained and much of what it forgot (MODEL_CARD.md, "The shipped model").
    """
    if tuned.keys() != start.keys():
        raise ValueError("the two generators' states name different tensors")
    return {
        name: torch.lerp(value, start[name].to(value.device, value.dtype), share)
        if value.is_floating_point()
        else value
        for name, value in tuned.items()
    }


def _differences(
    first: Architecture | LinearArchitecture, second: Architecture | LinearArchitecture
) -> tuple[str, str]:
    """The fields in which two architectures differ, as each has them ("upsample transpose")."""
    a, b = first.model_dump(), second.model_dump()
    names = [name for name in {**a, **b} if a.get(name) != b.get(name)]

    def listed(fields: dict[str, object]) -> str:
        return ", ".join(f"{name} {fields.get(name, '-')}" for name in names)

    return listed(a), listed(b)
