"""Self-describing checkpoints: safetensors weights plus JSON metadata in the same file.

The metadata (architecture, bands, normalisation, classes, stride, receptive radius, training
config, provenance, metrics) lives in the safetensors header, so one file is all a user ships.
Loading never unpickles: a pickled (``torch.save``) file is refused before it is parsed.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from geoseg.atomic import atomic_output
from geoseg.errors import CheckpointError
from geoseg.model.unet import UNetGenerator

FORMAT = "geoseg-checkpoint/1"
_METADATA_KEY = "geoseg"
_MAX_HEADER_BYTES = 100_000_000


class Architecture(BaseModel):
    """How to rebuild the generator."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = "unet"
    in_bands: int = Field(ge=1)
    num_classes: int = Field(ge=2)
    base_width: int = Field(16, ge=1)
    depth: int = Field(3, ge=1, le=6)


class Normalization(BaseModel):
    """Per-band statistics: the generator sees ``(pixel - mean) / std``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mean: list[float]
    std: list[float]


class ModelMetadata(BaseModel):
    """Everything needed to use a checkpoint correctly, stored beside its weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: str = FORMAT
    architecture: Architecture
    classes: list[str]
    bands: list[int] = Field(description="1-based band indexes the model reads from a scene")
    normalization: Normalization
    total_stride: int
    receptive_radius_px: int
    training: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)

    @classmethod
    def for_generator(
        cls,
        model: UNetGenerator,
        *,
        classes: list[str],
        mean: list[float],
        std: list[float],
        bands: list[int] | None = None,
        **extra: Any,
    ) -> ModelMetadata:
        """Metadata describing ``model``, with the data-dependent parts given."""
        return cls(
            architecture=Architecture(
                in_bands=model.in_bands,
                num_classes=model.num_classes,
                base_width=model.base_width,
                depth=model.depth,
            ),
            classes=classes,
            bands=bands or list(range(1, model.in_bands + 1)),
            normalization=Normalization(mean=mean, std=std),
            total_stride=model.total_stride,
            receptive_radius_px=model.receptive_radius_px,
            **extra,
        )


def build_generator(metadata: ModelMetadata) -> UNetGenerator:
    """An untrained generator with the checkpoint's architecture."""
    arch = metadata.architecture
    if arch.name != "unet":
        raise CheckpointError(f"unknown architecture {arch.name!r}")
    return UNetGenerator(arch.in_bands, arch.num_classes, arch.base_width, arch.depth)


def save_checkpoint(path: str | os.PathLike[str], model: UNetGenerator, metadata: ModelMetadata) -> Path:
    """Write weights and metadata to one safetensors file (atomically)."""
    tensors = {name: t.detach().cpu().contiguous() for name, t in model.state_dict().items()}
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={_METADATA_KEY: metadata.model_dump_json()})
    return Path(path)


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The checkpoint's metadata, read from the safetensors header only (no weights)."""
    header = _read_header(Path(path))
    raw = header.get("__metadata__", {}).get(_METADATA_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file has no geoseg metadata")
    try:
        return ModelMetadata.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(p) for p in first["loc"])
        raise CheckpointError(f"{path}: bad metadata field {field!r}: {first['msg']}") from None


def load_generator(path: str | os.PathLike[str]) -> tuple[UNetGenerator, ModelMetadata]:
    """Rebuild the generator from a checkpoint, in eval mode on the CPU."""
    metadata = read_metadata(path)
    model = build_generator(metadata)
    try:
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the metadata: {reason}") from None
    return model.eval(), metadata


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors JSON header, refusing anything else (pickles above all).

    A safetensors file is an 8-byte little-endian header size followed by a JSON object. That
    shape is checked first: the size's low byte may be anything (0x80, like a pickle's first
    byte, included), so pickle signatures only name what a non-safetensors file is.
    """
    try:
        with path.open("rb") as f:
            head = f.read(9)
            size = int.from_bytes(head[:8], "little")
            if len(head) < 9 or head[8:9] != b"{" or size > _MAX_HEADER_BYTES:
                raise CheckpointError(f"{path}: {_what_it_is_instead(head)}")
            f.seek(8)
            header: dict[str, Any] = json.loads(f.read(size))
            return header
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a safetensors checkpoint (unreadable header)") from None


def _what_it_is_instead(head: bytes) -> str:
    """Why a file that does not start like safetensors is refused."""
    if head[:2] == b"PK" or head[:1] == b"\x80":  # torch.save zip archive / legacy pickle
        return (
            "is a pickled PyTorch file; geoseg only loads safetensors checkpoints "
            "because unpickling can run arbitrary code"
        )
    if len(head) < 9:
        return "too short to be a safetensors checkpoint"
    return "not a safetensors checkpoint (bad header)"
