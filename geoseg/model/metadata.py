"""What a checkpoint says about its model, read and checked without torch.

The metadata (architecture, bands, radiometry, normalisation, classes, stride, receptive radius,
training config, provenance, metrics, training domain) lives in the safetensors header, so one file is
all a user ships. Checkpoints come from strangers, so nothing in one is trusted before it is
checked: the header is bounded in size and nesting, every metadata field is within sane bounds
and consistent with the others, and the stored stride and receptive radius must equal what the
architecture gives. Every refusal is a one-line ``CheckpointError`` naming the file and the
field. A pickled (``torch.save``) file is refused before it is parsed.

Torch-free, so a ``geoseg run`` driver checks a checkpoint without importing torch; the weights
themselves are read by ``geoseg.model.checkpoint``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from geoseg.configfile import FieldProblem
from geoseg.errors import CheckpointError
from geoseg.model.architecture import AnyArchitecture, Architecture, LinearArchitecture
from geoseg.safepaths import NOT_A_REGULAR_FILE, is_special_file

if TYPE_CHECKING:
    from geoseg.model.checkpoint import Generator

FORMAT: Final = "geoseg-checkpoint/1"
METADATA_KEY = "geoseg"
"""The safetensors ``__metadata__`` entry holding the JSON metadata."""
_MAX_HEADER_BYTES = 16_000_000
MAX_PARAMETERS = 500_000_000
"""2 GB of float32 weights: far above any useful segmenter, far below what hurts a machine."""


PIXEL_DTYPES: Final = frozenset(
    {"uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64", "float32", "float64"}
)
"""Real pixel types a GeoTIFF band may have (rasterio's names)."""


FLOAT32_SAFE = 1e30
"""Bound of normalisation and radiometry numbers: they are used in float32 (largest 3.4e38,
smallest normal 1.2e-38), where 1e300 would be infinity and 1e-300 zero."""


class Normalization(BaseModel):
    """Per-band statistics: the generator sees ``(pixel - mean) / std``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    mean: list[Annotated[float, Field(ge=-FLOAT32_SAFE, le=FLOAT32_SAFE)]]
    std: list[Annotated[float, Field(ge=1 / FLOAT32_SAFE, le=FLOAT32_SAFE)]]


class Radiometry(BaseModel):
    """How a scene's raw pixels become the model's input, before the normalisation.

    Scenes stored as one of ``kept_dtypes`` are read as they are. Any other scene (11-, 12- or
    16-bit, signed, float reflectance) is stretched linearly from its ``percentiles`` — of a
    decimated sample of its valid pixels, once per scene — onto ``target``, values beyond
    clipped, so it reaches the model in the range of the 8-bit pixels it learnt from
    (``geoseg.radiometry``). ``joint``: one map for all bands, from the lowest band's low
    percentile to the highest band's high one (keeps the bands' relative values: colours);
    ``per_band``: each band from its own percentiles.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)
    kept_dtypes: list[str] = Field(default_factory=lambda: ["uint8"])
    percentiles: tuple[
        Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)],
        Annotated[float, Field(ge=0, le=100, allow_inf_nan=False)],
    ] = (0.5, 99.5)
    target: tuple[
        Annotated[float, Field(ge=-FLOAT32_SAFE, le=FLOAT32_SAFE)],
        Annotated[float, Field(ge=-FLOAT32_SAFE, le=FLOAT32_SAFE)],
    ] = (0.0, 255.0)
    stretch: Literal["joint", "per_band"] = "joint"

    @field_validator("kept_dtypes")
    @classmethod
    def _known_dtypes(cls, dtypes: list[str]) -> list[str]:
        unknown = sorted(set(dtypes) - PIXEL_DTYPES)
        if unknown:
            raise ValueError(f"unknown pixel types {unknown} (known: {sorted(PIXEL_DTYPES)})")
        return dtypes

    @field_validator("percentiles", "target")
    @classmethod
    def _increasing(cls, pair: tuple[float, float]) -> tuple[float, float]:
        if not pair[0] < pair[1]:
            raise ValueError(f"must increase, got {list(pair)}")
        return pair


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

    @model_validator(mode="after")
    def _ordered(self) -> Domain:
        if self.gsd_min_m > self.gsd_max_m:
            raise FieldProblem("gsd_min_m", f"{self.gsd_min_m} is above gsd_max_m {self.gsd_max_m}")
        if any(s < 0 for s in self.std):
            raise FieldProblem("std", "a standard deviation is negative")
        if any(low > high for low, high in zip(self.p1, self.p99, strict=False)):  # counts: checked above
            raise FieldProblem("p1", "a band's 1st percentile is above its 99th")
        return self


COLOUR_NAME = r"^[A-Za-z][A-Za-z_]{0,19}$"
"""A GDAL colour interpretation as rasterio spells it: ``red``, ``nir``, ``Cb`` …"""
NAMELESS_COLOURS = frozenset({"undefined", "gray", "palette", "alpha"})
"""Colour interpretations that do not name a band."""


def names_its_bands(colours: Iterable[str]) -> bool:
    """True when each of a file's band ``colours`` names its band (none is gray, undefined …)."""
    return NAMELESS_COLOURS.isdisjoint(colours)


class ModelMetadata(BaseModel):
    """Everything needed to use a checkpoint correctly, stored beside its weights."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    format: Literal["geoseg-checkpoint/1"] = FORMAT
    architecture: AnyArchitecture
    classes: list[str]
    bands: list[Annotated[int, Field(ge=1)]] = Field(
        description="1-based band indexes of its training scenes it read (scenes to segment are read "
        "by band_colours where their files name them, else all non-alpha bands, or the bands chosen)"
    )
    band_colours: list[Annotated[str, Field(pattern=COLOUR_NAME)]] | None = Field(
        None,
        description="GDAL colour interpretation of each band as trained (red, green, blue …); "
        "scenes are read by these colours where they name them (None: by position)",
    )
    normalization: Normalization
    total_stride: int = Field(description="must equal the architecture's (checked, never trusted)")
    receptive_radius_px: int = Field(description="must equal the architecture's (checked, never trusted)")
    training: dict[str, Any] = Field(default_factory=dict)
    provenance: dict[str, Any] = Field(default_factory=dict)
    metrics: dict[str, Any] = Field(default_factory=dict)
    domain: Domain | None = Field(None, description="what it was trained on (GSD, band statistics)")
    radiometry: Radiometry | None = Field(
        None, description="how raw pixels are scaled for the model (None: read as they are)"
    )

    @field_validator("architecture")
    @classmethod
    def _bounded_size(cls, arch: Architecture | LinearArchitecture) -> Architecture | LinearArchitecture:
        parameters = arch.parameters
        if parameters > MAX_PARAMETERS:
            raise ValueError(f"needs {parameters:,} parameters, more than the {MAX_PARAMETERS:,} allowed")
        return arch

    @field_validator("classes")
    @classmethod
    def _one_name_per_class(cls, classes: list[str], info: ValidationInfo) -> list[str]:
        if any(not name.strip() or not name.isprintable() for name in classes):
            raise ValueError("class names must be printable text, not empty")
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

    @field_validator("band_colours")
    @classmethod
    def _distinct_named_colours(cls, colours: list[str] | None, info: ValidationInfo) -> list[str] | None:
        arch = info.data.get("architecture")
        if colours is not None and arch is not None and len(colours) != arch.in_bands:
            raise ValueError(f"{len(colours)} colours for in_bands {arch.in_bands}")
        if colours is not None and len(set(colours)) != len(colours):
            raise ValueError(f"colours must be distinct, got {colours}")
        if colours is not None and (nameless := NAMELESS_COLOURS.intersection(colours)):
            raise ValueError(f"{sorted(nameless)} do not name a band")
        return colours

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
            expected: int = getattr(arch, info.field_name)
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
            architecture=model.architecture,
            classes=classes,
            bands=bands or list(range(1, model.in_bands + 1)),
            normalization=Normalization(mean=mean, std=std),
            total_stride=model.total_stride,
            receptive_radius_px=model.receptive_radius_px,
            **extra,
        )


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """The checkpoint's metadata, read from the safetensors header only (no weights)."""
    return parse_metadata(Path(path), read_header(Path(path)))


_TAGS = frozenset({"unet", "linear"})
"""Architecture names, which pydantic puts in an error's location; the field is what follows."""


def parse_metadata(path: Path, header: dict[str, Any]) -> ModelMetadata:
    """Validate the geoseg metadata of a parsed header; errors name the field."""
    raw = header.get("__metadata__", {}).get(METADATA_KEY)
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


def read_header(path: Path) -> dict[str, Any]:
    """Parse the safetensors JSON header, refusing anything else (pickles above all).

    A safetensors file is an 8-byte little-endian header size followed by a JSON object. That
    shape is checked first: the size's low byte may be anything (0x80, like a pickle's first
    byte, included), so pickle signatures only name what a non-safetensors file is. The header
    is bounded in size and nesting, and ``__metadata__`` must map names to strings.
    """
    if is_special_file(path):
        raise CheckpointError(f"{path}: {NOT_A_REGULAR_FILE}")
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
    except (UnicodeDecodeError, ValueError):  # ValueError: bad JSON, or an integer of 5 000 digits
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
    weights = max((_end_of(entry) for name, entry in header.items() if name != "__metadata__"), default=0)
    if (held := path.stat().st_size - 8 - size) != weights:
        raise CheckpointError(
            f"{path}: the header promises {weights:,} bytes of weights and the file holds {held:,} "
            f"({'truncated' if held < weights else 'bytes after the weights'})"
        )
    return header


def _end_of(entry: object) -> int:
    """Where a tensor's bytes end (``data_offsets[1]``); 0 for a malformed entry, which the
    tensor checks refuse by name."""
    offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
    if isinstance(offsets, list) and len(offsets) == 2 and isinstance(offsets[1], int):
        return offsets[1]
    return 0


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
