"""Workflow files: what a batch run does, validated before any work starts.

A workflow is a YAML file; every field except ``inputs``, ``model`` and ``output`` has a
default. Unknown or mistyped fields fail at load time with a message naming the field.
Relative paths are resolved against the workflow file's folder, and ``$GEOSEG_SAMPLE_DATA``
(default: ``../shared/data`` beside the repository) can be used in paths.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import socket
from pathlib import Path
from typing import Any, Literal

import psutil
from dask.utils import parse_bytes
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from geoseg.configfile import BandList, FieldProblem, read_mapping, resolve_path, validate
from geoseg.tiling import TilingSpec

VectorFormat = Literal["geojson", "gpkg", "shp", "parquet", "fgb"]
TTA = Literal["none", "flips", "dihedral"]
"""Test-time augmentation: none, the 4 flips or the 8 dihedral views, probabilities averaged."""
Precision = Literal["fp32", "bf16"]
"""Forward-pass arithmetic: fp32 everywhere, or bf16 autocast."""
Resample = Literal["none", "model"]
"""Reading scenes outside the model's GSD range: as they are, or at the model's GSD (``geoseg.resample``)."""


MAX_HALO_PX = 1024
"""Far beyond any U-Net's receptive radius (the shipped one: 58 px); a larger halo only makes
every tile's read, and its memory, grow with its square."""
MIN_WORKER_MEMORY = "1GiB"
"""Below this a worker that has loaded the model cannot hold a block: Dask pauses it for good."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TilingConfig(_Strict):
    """How scenes are cut: tile core, halo (default: the model's receptive radius), blocks."""

    tile_size_px: int = Field(512, ge=16)
    halo_px: int | None = Field(None, ge=0, le=MAX_HALO_PX)
    block_size_px: int = Field(2048, ge=16, description="pixels per task side (work and memory unit)")

    def spec(self, stride_px: int, receptive_radius_px: int) -> TilingSpec:
        """The runtime tiling for a model of that stride and receptive radius (once per run)."""
        return TilingSpec.for_model(
            stride_px=stride_px,
            receptive_radius_px=receptive_radius_px,
            tile_size_px=self.tile_size_px,
            halo_px=self.halo_px,
            block_size_px=self.block_size_px,
        )


class InferenceConfig(_Strict):
    """How the model runs: where, how many tiles at once, in what arithmetic, with what extras."""

    device: str = Field("auto", description="auto, cpu, cuda or cuda:N (also lays out a local cluster)")
    batch_size: int = Field(8, ge=1, description="tiles per forward pass")
    precision: Precision = Field(
        "fp32",
        description="forward-pass arithmetic: fp32 (GPU masks match the CPU's) or bf16 autocast "
        "(a faster forward pass; on an H100 0.11 % of pixels differ from the CPU's)",
    )
    tta: TTA = Field(
        "none", description="test-time augmentation: flips (4 forward passes) or dihedral (8), averaged"
    )
    compile_model: bool = Field(
        False, description="torch.compile the network on each worker: slower start, faster forward"
    )
    resample: Resample = Field(
        "none",
        description="model: read scenes outside the model's GSD range at its GSD (through a GDAL "
        "WarpedVRT); masks stay on the scene's grid",
    )

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if DEVICE.fullmatch(value) is None:
            raise ValueError(f"expected auto, cpu, cuda or cuda:N, got {value!r}")
        return value


class OutputConfig(_Strict):
    """What is written per scene."""

    probability: bool = Field(False, description="add a probability band (percent) to the mask")
    compress: Literal["DEFLATE", "ZSTD", "LZW"] = "DEFLATE"
    vector_formats: tuple[VectorFormat, ...] = ("gpkg", "geojson")
    connectivity: Literal[4, 8] = 8
    min_area_m2: float = Field(0.0, ge=0)
    fill_holes_below_m2: float = Field(0.0, ge=0)
    simplify_tolerance_m: float = Field(0.0, ge=0)
    run_layer: VectorFormat | None = Field("gpkg", description="one layer gathering every scene")

    @field_validator("vector_formats")
    @classmethod
    def _once_each(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if repeated := sorted({f for f in value if value.count(f) > 1}):
            raise ValueError(f"lists {', '.join(repeated)} more than once")
        return value

    @model_validator(mode="after")
    def _run_layer_has_vectors(self) -> OutputConfig:
        if self.run_layer is not None and not self.vector_formats:
            raise FieldProblem(
                "outputs.run_layer",
                "gathers the scenes' vectors, but vector_formats is empty (masks only: run_layer: null)",
            )
        return self


class ClusterConfig(_Strict):
    """The local cluster started when no ``--scheduler`` is given."""

    n_workers: int | None = Field(None, ge=1, le=1024, description="default: one per GPU, else 2")
    threads_per_worker: int = Field(
        1, ge=1, le=1024, description="GPU workers get at least 4 (they read beside the forward pass)"
    )
    cpu_workers: int | None = Field(
        None,
        ge=0,
        le=1024,
        description="GPU machines: single-threaded CPU workers beside the GPU workers (polygonise, "
        "stitch, write); default: one per core the GPU workers' threads leave",
    )
    memory_limit: str | float = Field(
        "auto", description="per worker: auto, 0 (no limit), a size like 4GiB, or a fraction of RAM"
    )
    dashboard_address: str = Field("127.0.0.1:8787", description="host:port; loopback unless you open it")

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | float) -> str | float:
        if value == "auto" or value == 0:
            return value
        if isinstance(value, float | int):
            if not 0 < value <= 1:
                raise ValueError(f"a number is a fraction of RAM (0 to 1; 0: no limit), got {value}")
            limit = int(value * psutil.virtual_memory().total)
        else:
            try:
                limit = parse_bytes(value)
            except (ValueError, TypeError):
                raise ValueError(
                    f"expected auto, a size like 4GiB or a fraction of RAM, got {value!r}"
                ) from None
        if limit != 0 and limit < parse_bytes(MIN_WORKER_MEMORY):
            raise ValueError(
                f"{value!r} is {limit / 2**20:.0f} MiB; a worker needs at least {MIN_WORKER_MEMORY} "
                "(the model and a block's pixels; below that Dask pauses it for good)"
            )
        return value

    @field_validator("dashboard_address")
    @classmethod
    def _address(cls, value: str) -> str:
        match = _HOST_PORT.fullmatch(value)
        if match is None or int(match["port"]) > 65535:
            raise ValueError(f"expected host:port (e.g. 127.0.0.1:8787, or :0 for any port), got {value!r}")
        return value


MOVED_TO_INFERENCE = (
    ("", "compile_model"),
    ("", "tta"),
    ("", "precision"),
    ("", "resample"),
    ("tiling", "batch_size"),
    ("cluster", "device"),
)
"""(section, field) of the settings that moved to ``inference``: refused there, naming the new place."""

_HOST_PORT = re.compile(r"(?P<host>[A-Za-z0-9.-]*):(?P<port>[0-9]{1,5})")


def dashboard_problem(address: str) -> str | None:
    """Why a local cluster's dashboard cannot listen on ``address`` (a valid ``host:port``), or
    None. Checked when a local cluster starts, not with the workflow: a run on ``--scheduler``
    never binds it."""
    match = _HOST_PORT.fullmatch(address)
    if match and match["host"] and (problem := _unbindable(match["host"])):
        return f"cluster.dashboard_address: host {match['host']!r} {problem}"
    return None


def _unbindable(host: str) -> str | None:
    """Why the dashboard cannot listen on ``host``, or None (it names an address of this machine)."""
    try:
        with socket.socket() as probe:
            probe.bind((host, 0))
    except socket.gaierror:
        return "is no host name or address"
    except OSError as exc:
        return f"is not an address of this machine ({exc.strerror})"
    return None


DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]{1,2})?")
"""Device names a workflow and ``geoseg predict`` accept."""


class Workflow(_Strict):
    """A batch run: inputs → model → masks and vectors under ``output``."""

    inputs: str | list[str] = Field(
        description="STAC catalog/collection/item collection, or paths, folders (their GeoTIFFs) and globs"
    )
    model: Path
    output: Path
    asset_key: str | None = Field(None, description="STAC asset to segment (default: first GeoTIFF)")
    bands: BandList | None = Field(
        None,
        description="1-based bands to read (default: by the model's band colours, else all non-alpha)",
    )
    inference: InferenceConfig = InferenceConfig()
    tiling: TilingConfig = TilingConfig()
    outputs: OutputConfig = OutputConfig()
    cluster: ClusterConfig = ClusterConfig()
    base_dir: Path = Field(Path("."), exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _not_in_old_places(cls, raw: Any) -> Any:
        """Inference settings once lived at the top level, in ``tiling`` and in ``cluster``."""
        if isinstance(raw, dict):
            for section, name in MOVED_TO_INFERENCE:
                where = raw.get(section) if section else raw
                if isinstance(where, dict) and name in where:
                    old = f"{section}.{name}" if section else name
                    raise FieldProblem(old, f"moved: write it as inference.{name}")
        return raw

    @field_validator("output", mode="before")
    @classmethod
    def _named(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("is empty (name the folder the run writes to)")
        return value

    @field_validator("inputs")
    @classmethod
    def _not_empty(cls, value: str | list[str]) -> str | list[str]:
        if not value:
            raise ValueError("no inputs given")
        return value

    @model_validator(mode="after")
    def _output_is_a_folder(self) -> Workflow:
        output = self.resolve(self.output)
        if output.exists() and not output.is_dir():
            raise FieldProblem("output", f"{output} exists and is not a folder")
        return self

    def resolve(self, path: str | os.PathLike[str]) -> Path:
        """A path from the workflow, relative to the workflow file, with variables expanded."""
        return resolve_path(path, self.base_dir).resolve()

    def protected_files(self) -> list[Path]:
        """Input files named by the workflow itself (STAC files, scene paths): never overwritten."""
        entries = [self.inputs] if isinstance(self.inputs, str) else self.inputs
        return [self.resolve(entry) for entry in entries if not glob.has_magic(entry)]

    def fingerprint(self) -> str:
        """Hash of everything that changes the outputs: a rerun with the same one may skip scenes."""
        model = self.resolve(self.model)
        stamp = f"{model.stat().st_size}:{model.stat().st_mtime_ns}" if model.exists() else "missing"
        relevant = self.model_dump(
            mode="json",
            include={
                "bands": True,
                "inference": {"batch_size", "precision", "tta", "compile_model", "resample"},
                "tiling": True,
                "outputs": True,
            },
        )
        return hashlib.sha256(f"{relevant}|{model}|{stamp}".encode()).hexdigest()[:16]


def load_workflow(path: str | os.PathLike[str], **overrides: Any) -> Workflow:
    """Read and validate a workflow YAML; errors name the file and the field."""
    raw = read_mapping(path, "workflow file")
    return parse_workflow({**raw, **overrides}, base_dir=Path(path).resolve().parent, source=str(path))


def parse_workflow(raw: dict[str, Any], base_dir: Path, source: str = "workflow") -> Workflow:
    """Validate a workflow given as a mapping."""
    return validate(Workflow, {**raw, "base_dir": base_dir}, source)
