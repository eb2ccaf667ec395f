"""Self-describing checkpoints: safetensors weights plus JSON metadata in the same file.

The metadata (architecture, bands, normalisation, classes, stride, receptive radius, training
config, provenance, metrics) lives in the safetensors header, so one file is all a user ships.
Loading never unpickles: a pickled (``torch.save``) file is refused before it is parsed.

Checkpoints come from strangers, so nothing in one is trusted before it is checked: the header
is bounded in size and nesting, every metadata field is within sane bounds and consistent
with the others, the stored stride and receptive radius must equal what the architecture
gives, and each tensor's name, dtype and shape must equal the architecture's before any
weight is read. Every refusal is a one-line ``CheckpointError`` naming the file and the field.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import torch
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    FiniteFloat,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from geoseg.atomic import atomic_output
from geoseg.configfile import FieldProblem
from geoseg.errors import CheckpointError
from geoseg.model.linear import LinearSegmenter
from geoseg.model.unet import UNetGenerator, Upsampling
from geoseg.safepaths import is_special_file

FORMAT: Final = "geoseg-checkpoint/1"
_METADATA_KEY = "geoseg"
_MAX_HEADER_BYTES = 16_000_000
MAX_BANDS = 64
MAX_CLASSES = 255
"""Class ids are uint8 and 255 is the mask's nodata, so ids 0..254."""
MAX_PARAMETERS = 500_000_000
"""2 GB of float32 weights: far above any useful segmenter, far below what hurts a machine."""
_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})

Generator = UNetGenerator | LinearSegmenter
"""The networks a checkpoint can hold."""


class Architecture(BaseModel):
    """How to rebuild the U-Net generator."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["unet"] = "unet"
    in_bands: int = Field(ge=1, le=MAX_BANDS)
    num_classes: int = Field(ge=2, le=MAX_CLASSES)
    base_width: int = Field(16, ge=1, le=1024)
    depth: int = Field(3, ge=1, le=6)
    upsample: Upsampling = Field("transpose", description="absent in older checkpoints: transpose")


class LinearArchitecture(BaseModel):
    """How to rebuild the per-pixel linear classifier."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["linear"] = "linear"
    in_bands: int = Field(ge=1, le=MAX_BANDS)
    num_classes: int = Field(ge=2, le=MAX_CLASSES)


def architecture_name(value: Any) -> str:
    """The architecture's name; a U-Net when a mapping does not say (older checkpoints and configs)."""
    name = value.get("name", "unet") if isinstance(value, Mapping) else getattr(value, "name", None)
    return str(name)


AnyArchitecture = Annotated[
    Annotated[Architecture, Tag("unet")] | Annotated[LinearArchitecture, Tag("linear")],
    Discriminator(architecture_name),
]


class Normalization(BaseModel):
    """Per-band statistics: the generator sees ``(pixel - mean) / std``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mean: list[FiniteFloat]
    std: list[Annotated[float, Field(gt=0, allow_inf_nan=False)]]


class Domain(BaseModel):
    """The data the model was trained on: ground sampling distance and per-band raw statistics.

    ``geoseg.applicability`` compares a scene against it; absent in older checkpoints.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    gsd_min_m: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    gsd_max_m: Annotated[float, Field(gt=0, allow_inf_nan=False)]
    mean: list[FiniteFloat]
    std: list[FiniteFloat]
    p1: list[FiniteFloat] = Field(description="1st percentile of each band's training pixels")
    p99: list[FiniteFloat] = Field(description="99th percentile of each band's training pixels")


@dataclass(frozen=True)
class Blueprint:
    """What an architecture is made of, known without allocating a weight.

    ``tensors`` maps each state-dict name to its shape and whether it is floating point.
    """

    parameters: int
    total_stride: int
    receptive_radius_px: int
    tensors: Mapping[str, tuple[tuple[int, ...], bool]]


@functools.lru_cache(maxsize=16)
def blueprint(architecture: Architecture | LinearArchitecture) -> Blueprint:
    """The architecture's parameter count, stride, receptive radius and tensors (built on ``meta``)."""
    with torch.device("meta"):
        model = _build(architecture)
    return Blueprint(
        parameters=sum(p.numel() for p in model.parameters()),
        total_stride=model.total_stride,
        receptive_radius_px=model.receptive_radius_px,
        tensors={name: (tuple(t.shape), t.is_floating_point()) for name, t in model.state_dict().items()},
    )


class ModelMetadata(BaseModel):
    """Everything needed to use a checkpoint correctly, stored beside its weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["geoseg-checkpoint/1"] = FORMAT
    architecture: AnyArchitecture
    classes: list[str]
    bands: list[Annotated[int, Field(ge=1)]] = Field(
        description="1-based band indexes the model reads from a scene"
    )
    normalization: Normalization
    total_stride: int = Field(description="must equal the architecture's (checked, never trusted)")
    receptive_radius_px: int = Field(description="must equal the architecture's (checked, never trusted)")
    training: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    domain: Domain | None = Field(None, description="what it was trained on (GSD, band statistics)")

    @field_validator("architecture")
    @classmethod
    def _bounded_size(cls, arch: Architecture | LinearArchitecture) -> Architecture | LinearArchitecture:
        parameters = blueprint(arch).parameters
        if parameters > MAX_PARAMETERS:
            raise ValueError(f"needs {parameters:,} parameters, more than the {MAX_PARAMETERS:,} allowed")
        return arch

    @field_validator("classes")
    @classmethod
    def _one_name_per_class(cls, classes: list[str], info: ValidationInfo) -> list[str]:
        if any(not name.strip() for name in classes):
            raise ValueError("class names must not be empty")
        if len(set(classes)) != len(classes):
            raise ValueError(f"class names must be distinct, got {classes}")
        arch = info.data.get("architecture")
        if arch is not None and len(classes) != arch.num_classes:
            raise ValueError(f"{len(classes)} names for num_classes {arch.num_classes}")
        return classes

    @field_validator("bands")
    @classmethod
    def _one_index_per_band(cls, bands: list[int], info: ValidationInfo) -> list[int]:
        arch = info.data.get("architecture")
        if arch is not None and len(bands) != arch.in_bands:
            raise ValueError(f"{len(bands)} band indexes for in_bands {arch.in_bands}")
        return bands

    @field_validator("normalization")
    @classmethod
    def _one_statistic_per_band(cls, norm: Normalization, info: ValidationInfo) -> Normalization:
        arch = info.data.get("architecture")
        if arch is not None and not len(norm.mean) == len(norm.std) == arch.in_bands:
            raise ValueError(f"{len(norm.mean)} means and {len(norm.std)} stds for in_bands {arch.in_bands}")
        return norm

    @field_validator("domain")
    @classmethod
    def _one_domain_statistic_per_band(cls, domain: Domain | None, info: ValidationInfo) -> Domain | None:
        arch = info.data.get("architecture")
        if domain is not None and arch is not None:
            for name in ("mean", "std", "p1", "p99"):
                values = len(getattr(domain, name))
                if values != arch.in_bands:
                    raise FieldProblem(name, f"{values} values for {arch.in_bands} bands")
        return domain

    @field_validator("total_stride", "receptive_radius_px")
    @classmethod
    def _as_the_architecture_gives(cls, value: int, info: ValidationInfo) -> int:
        arch = info.data.get("architecture")
        if arch is not None and info.field_name is not None:
            expected: int = getattr(blueprint(arch), info.field_name)
            if value != expected:
                raise ValueError(f"{value} stored, but the architecture gives {expected}")
        return value

    @classmethod
    def for_generator(
        cls,
        model: Generator,
        *,
        classes: list[str],
        mean: list[float],
        std: list[float],
        bands: list[int] | None = None,
        **extra: Any,
    ) -> ModelMetadata:
        """Metadata describing ``model``, with the data-dependent parts given."""
        return cls(
            architecture=architecture_of(model),
            classes=classes,
            bands=bands or list(range(1, model.in_bands + 1)),
            normalization=Normalization(mean=mean, std=std),
            total_stride=model.total_stride,
            receptive_radius_px=model.receptive_radius_px,
            **extra,
        )


def architecture_of(model: Generator) -> Architecture | LinearArchitecture:
    """The architecture record that rebuilds ``model``."""
    if isinstance(model, LinearSegmenter):
        return LinearArchitecture(in_bands=model.in_bands, num_classes=model.num_classes)
    return Architecture(
        in_bands=model.in_bands,
        num_classes=model.num_classes,
        base_width=model.base_width,
        depth=model.depth,
        upsample=model.upsample,
    )


def build_generator(metadata: ModelMetadata) -> Generator:
    """An untrained generator with the checkpoint's architecture."""
    return _build(metadata.architecture)


def _build(arch: Architecture | LinearArchitecture) -> Generator:
    if isinstance(arch, LinearArchitecture):
        return LinearSegmenter(arch.in_bands, arch.num_classes)
    return UNetGenerator(arch.in_bands, arch.num_classes, arch.base_width, arch.depth, arch.upsample)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Generator,
    metadata: ModelMetadata,
    float_dtype: torch.dtype | None = None,
) -> Path:
    """Write weights (floating ones cast to ``float_dtype`` if given) and metadata to one file, atomically.

    ``load_generator`` casts them back to the model's float32.
    """
    tensors = {}
    for name, tensor in model.state_dict().items():
        if float_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(float_dtype)
        tensors[name] = tensor.detach().cpu().contiguous()
    with atomic_output(path) as tmp:
        save_file(tensors, str(tmp), metadata={_METADATA_KEY: metadata.model_dump_json()})
    return Path(path)


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The checkpoint's metadata, read from the safetensors header only (no weights)."""
    return _metadata(Path(path), _read_header(Path(path)))


def load_generator(path: str | os.PathLike[str]) -> tuple[Generator, ModelMetadata]:
    """Rebuild the generator from a checkpoint, in eval mode on the CPU.

    Tensor names, dtypes and shapes are checked against the architecture before any weight is
    read, and the weights must be finite.
    """
    header = _read_header(Path(path))
    metadata = _metadata(Path(path), header)
    _check_tensors(Path(path), header, blueprint(metadata.architecture))
    model = build_generator(metadata)
    try:
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the metadata: {reason}") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: bad tensor {name!r}: weights are not all finite")
    return model.eval(), metadata


_TAGS = frozenset({"unet", "linear"})
"""Architecture names, which pydantic puts in an error's location; the field is what follows."""


def _metadata(path: Path, header: dict[str, Any]) -> ModelMetadata:
    """Validate the geoseg metadata of a parsed header; errors name the field."""
    raw = header.get("__metadata__", {}).get(_METADATA_KEY)
    if raw is None:
        raise CheckpointError(f"{path}: safetensors file has no geoseg metadata")
    try:
        return ModelMetadata.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        message = first["msg"].removeprefix("Value error, ")
        if first["type"] == "union_tag_invalid":
            message = f"unknown name {first['ctx']['tag']!r} (known: {first['ctx']['expected_tags']})"
        field = ".".join(str(p) for p in first["loc"] if p not in _TAGS)
        problem = first.get("ctx", {}).get("error")
        if isinstance(problem, FieldProblem):
            field = f"{field}.{problem.field}"
        if not field:
            raise CheckpointError(f"{path}: bad metadata: {message}") from None
        raise CheckpointError(f"{path}: bad metadata field {field!r}: {message}") from None


def _check_tensors(path: Path, header: dict[str, Any], expected: Blueprint) -> None:
    """Each tensor named as the architecture's, floating point where it is, of the same shape."""
    stored = {name: entry for name, entry in header.items() if name != "__metadata__"}
    missing = sorted(expected.tensors.keys() - stored.keys())
    unexpected = sorted(stored.keys() - expected.tensors.keys())
    if missing:
        raise CheckpointError(f"{path}: tensor {missing[0]!r} missing ({len(missing)} in all)")
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all)")
    for name, (shape, floating) in expected.tensors.items():
        entry = stored[name] if isinstance(stored[name], dict) else {}
        dtype = entry.get("dtype")
        if floating and dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"{path}: bad tensor {name!r}: dtype {dtype} is not floating point")
        if not floating and dtype != "I64":
            raise CheckpointError(f"{path}: bad tensor {name!r}: dtype {dtype}, expected I64")
        if entry.get("shape") != list(shape):
            raise CheckpointError(
                f"{path}: bad tensor {name!r}: shape {entry.get('shape')}, the architecture has {list(shape)}"
            )


def _read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors JSON header, refusing anything else (pickles above all).

    A safetensors file is an 8-byte little-endian header size followed by a JSON object. That
    shape is checked first: the size's low byte may be anything (0x80, like a pickle's first
    byte, included), so pickle signatures only name what a non-safetensors file is. The header
    is bounded in size and nesting, and ``__metadata__`` must map names to strings.
    """
    if is_special_file(path):
        raise CheckpointError(f"{path}: not a regular file (a pipe, socket or device)")
    try:
        with path.open("rb") as f:
            head = f.read(9)
            size = int.from_bytes(head[:8], "little")
            if len(head) < 9 or head[8:9] != b"{":
                raise CheckpointError(f"{path}: {_what_it_is_instead(head)}")
            if size > _MAX_HEADER_BYTES:
                limit = _MAX_HEADER_BYTES // 1_000_000
                raise CheckpointError(f"{path}: header of {size:,} bytes is over the {limit} MB limit")
            f.seek(8)
            header = json.loads(f.read(size))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: checkpoint not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CheckpointError(f"{path}: not a safetensors checkpoint (unreadable header)") from None
    except RecursionError:
        raise CheckpointError(f"{path}: header JSON is nested too deeply") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read checkpoint: {exc.strerror or exc}") from None
    if not isinstance(header, dict):
        raise CheckpointError(f"{path}: header is not a JSON object")
    metadata = header.get("__metadata__", {})
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise CheckpointError(f"{path}: bad header field '__metadata__': must map names to strings")
    return header


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
