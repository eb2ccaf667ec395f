"""The training config: a versioned pydantic model loaded from YAML, errors naming the field.

Paths may use ``${GEOSEG_SAMPLE_DATA}`` (default: ``../shared/data`` beside the repository)
and other environment variables; relative paths are resolved against the config file's folder.
"""

from __future__ import annotations

import copy
import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator, model_validator

from geoseg.configfile import BandList, FieldProblem, read_mapping, resolve_path, validate
from geoseg.errors import ConfigError
from geoseg.model.architecture import Architecture, LinearArchitecture, Upsampling, architecture_name
from geoseg.model.metadata import Radiometry


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


EntryWeighting = Literal["chips", "sqrt", "equal"]


_MASK_FIELD = re.compile(r"(stem|name)(\[\d+\])?")
"""What a mask pattern may name: the scene file's name without its suffix, with it, or one character."""
_MASK_PATTERN_HELP = (
    "write {stem} (the scene's file name without its suffix), {name}, or one character: {stem[6]}"
)


class DatasetConfig(_Frozen):
    """Scenes (a glob) with either raster masks (a ``{stem}`` pattern) or vector labels."""

    images: str = Field(description="glob of GeoTIFF scenes")
    masks: str | None = Field(
        None, description="mask path per scene, '{stem}' is the scene file name without .tif"
    )
    labels: str | None = Field(None, description="vector labels (GeoJSON/GPKG/Shapefile, any CRS)")
    class_field: str | None = Field(
        None, description="attribute holding the class (name or id); None: every polygon is class 1"
    )
    bands: BandList | None = Field(None, description="1-based bands to read; None: all non-alpha")
    georeference: Literal["file", "xyz"] = Field(
        "file",
        description="'xyz': place each scene by the web-map tile address in its name "
        "('…-x-y-z' or 'z/x/y', EPSG:3857), for tiles without georeferencing",
    )
    mask_nodata_is_class: bool = Field(
        False,
        description="the masks' nodata tag is a class id, not 'no label' (the Québec tiles tag "
        "their background 0 as nodata): every mask pixel inside the scene counts",
    )

    @field_validator("masks")
    @classmethod
    def _mask_pattern(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            fields = [
                (name, spec, conversion) for _, name, spec, conversion in string.Formatter().parse(pattern)
            ]
        except ValueError as exc:
            raise ValueError(f"not a path pattern ({exc}): {_MASK_PATTERN_HELP}") from None
        for name, spec, conversion in fields:
            if name is not None and (not _MASK_FIELD.fullmatch(name) or spec or conversion):
                text = (
                    "{" + name + (f"!{conversion}" if conversion else "") + (f":{spec}" if spec else "") + "}"
                )
                raise ValueError(f"{text} is not a placeholder it knows: {_MASK_PATTERN_HELP}")
        return pattern

    @model_validator(mode="after")
    def _one_label_source(self) -> DatasetConfig:
        if (self.masks is None) == (self.labels is None):
            raise ValueError("give exactly one of 'masks' or 'labels'")
        return self


class DataConfig(_Frozen):
    """Where the chips come from and how they are cut and split."""

    train: list[DatasetConfig] = Field(min_length=1)
    val: list[DatasetConfig] = Field(
        default_factory=list, description="empty: split 'train' by 'split' and 'val_fraction'"
    )
    classes: list[str] = Field(
        default_factory=lambda: ["background", "building"], min_length=2, max_length=255
    )
    chip_size_px: int = Field(128, ge=16, le=2048, description="training chip side (multiple of the stride)")
    chip_stride_px: int | None = Field(None, ge=1, description="grid step; None: half a chip")
    val_chip_size_px: int = Field(256, ge=16, le=4096, description="validation window side")
    split: Literal["scene", "block"] = Field(
        "scene", description="when 'val' is empty: hold out whole scenes or spatial blocks"
    )
    val_fraction: float = Field(0.2, gt=0, lt=1)
    block_size_px: int = Field(512, ge=16, le=65536, description="spatial block side for split='block'")
    min_positive_fraction: float = Field(
        0.01, ge=0, le=1, description="a chip with at least this foreground share is 'positive'"
    )
    positive_chip_share: float = Field(
        0.75, ge=0, le=1, description="share of sampled chips drawn from positive chips"
    )
    color_jitter: float = Field(
        0.0,
        ge=0,
        le=0.5,
        description="photometric augmentation strength j: per chip, contrast and brightness "
        "gains in 1 ± j and per-band gains in 1 ± j/4 (0: off, the batches of earlier versions)",
    )
    band_jitter: float | None = Field(
        None,
        ge=0,
        le=0.5,
        description="per-band gain range b of the colour jitter: each band × U(1 ± b) per chip, "
        "a colour-balance shift (unset: color_jitter / 4)",
    )
    zoom_out: float = Field(
        0.0,
        ge=0,
        le=0.75,
        description="scale augmentation z: half the chips shrunk by a factor U(1 − z, 1) and padded "
        "with invalid pixels, as if imaged at up to 1/(1 − z) times the GSD, which stretches the "
        "checkpoint's recorded GSD range (0: off)",
    )
    entry_weighting: EntryWeighting = Field(
        "chips",
        description="how draws are shared among the 'train' entries (places): 'chips' in "
        "proportion to their chip counts (every chip alike, the batches of earlier versions), "
        "'sqrt' to the square roots of the counts, 'equal' alike",
    )
    cache_max_mb: int = Field(
        1024, ge=0, description="keep read chips in memory up to this size (per loader worker)"
    )
    radiometry: Radiometry = Field(
        default_factory=Radiometry,
        description="how scenes of other pixel types than 'kept_dtypes' are scaled (per scene, "
        "percentiles to target); recorded in the checkpoint, so predict scales the same way",
    )
    loader_workers: int = Field(
        0,
        ge=0,
        le=64,
        description="DataLoader processes reading and augmenting chips ahead of the step "
        "(0: the training process); the batches are the same for any number",
    )

    @field_validator("classes")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if repeated := sorted({c for c in value if value.count(c) > 1}):
            raise ValueError(f"class names must be distinct: {', '.join(repeated)} repeated")
        if any(not name.strip() or not name.isprintable() for name in value):
            raise ValueError("class names must be printable text, not empty")
        return value

    def entry_under(self, place: str) -> DatasetConfig:
        """The one ``val`` or ``train`` entry whose images pattern contains ``place`` (a path part)."""
        matches = [e for e in [*self.val, *self.train] if place in e.images]
        if len(matches) != 1:
            raise ConfigError(f"{place!r} matches {len(matches)} dataset entries, not one")
        return matches[0]


class UNetConfig(_Frozen):
    """The U-Net generator's size."""

    name: Literal["unet"] = "unet"
    base_width: int = Field(16, ge=1, le=1024)
    depth: int = Field(3, ge=1, le=6)
    upsample: Upsampling = Field(
        "bilinear",
        description="'bilinear': ×2 interpolation + 3×3 conv, no checkerboard; "
        "'transpose': 2×2 stride-2 transposed conv (models before 2026-11)",
    )

    @property
    def total_stride(self) -> int:
        """Chip sides must be multiples of this (2**depth)."""
        return 1 << self.depth

    def architecture(self, in_bands: int, num_classes: int) -> Architecture:
        """The checkpoint record of this U-Net (``geoseg.model.checkpoint.generator_for`` builds it)."""
        return Architecture(in_bands=in_bands, num_classes=num_classes, **self.model_dump())


class LinearConfig(_Frozen):
    """The per-pixel linear classifier: a spectral baseline (water, vegetation) with no size to set.

    It has stride 1, so any chip size fits. The adversarial term applies as for the U-Net (D
    judges image and mask, whichever G made them), but a per-pixel model cannot draw the shapes
    D judges, so ``adversarial_weight: 0`` (supervised only, no D) is the plain, faster baseline.
    """

    name: Literal["linear"] = "linear"

    @property
    def total_stride(self) -> int:
        """Any chip size works."""
        return 1

    def architecture(self, in_bands: int, num_classes: int) -> LinearArchitecture:
        """The checkpoint record of this classifier (``geoseg.model.checkpoint.generator_for`` builds it)."""
        return LinearArchitecture(in_bands=in_bands, num_classes=num_classes, **self.model_dump())


GeneratorConfig = Annotated[
    Annotated[UNetConfig, Tag("unet")] | Annotated[LinearConfig, Tag("linear")],
    Discriminator(
        architecture_name,
        custom_error_type="generator_name",
        custom_error_message="name must be 'unet' or 'linear'",
    ),
]
"""``generator.name`` picks the architecture; a U-Net when it is left out."""


class DiscriminatorConfig(_Frozen):
    """The conditional PatchGAN critic (pix2pix ``NLayerDiscriminator``)."""

    base_width: int = Field(32, ge=1, le=1024)
    n_layers: int = Field(3, ge=1, le=5)
    spectral_norm: bool = True


class OptimConfig(_Frozen):
    """Steps, losses and optimiser settings."""

    steps: int = Field(2000, ge=1, le=10**9)
    batch_size: int = Field(8, ge=1, le=4096)
    lr_g: float = Field(2e-4, gt=0)
    lr_d: float = Field(2e-4, gt=0, description="a larger lr_d gives two time-scale updates")
    beta1: float = Field(0.5, ge=0, lt=1)
    beta2: float = Field(0.999, ge=0, lt=1)
    dice_weight: float = Field(1.0, ge=0, description="supervised loss = BCE/CE + dice_weight × Dice")
    adversarial_weight: float = Field(0.01, ge=0, description="0 trains supervised-only (no D)")
    hard_pixel_share: float = Field(
        1.0,
        gt=0,
        le=1,
        description="the BCE/CE term averages this share of the batch's valid pixels with the "
        "highest loss (bootstrapped cross-entropy); 1: every pixel, the loss of earlier versions",
    )
    gan_mode: Literal["vanilla", "lsgan", "hinge"] = "hinge"
    warmup_steps: int = Field(500, ge=0, description="supervised-only steps before the GAN term")
    label_smoothing: float = Field(
        0.1, ge=0, lt=1, description="real masks shown to D are y(1-s) + s/K (Luc et al. 2016)"
    )
    label_noise_std: float = Field(0.05, ge=0, description="Gaussian noise on real masks for D")
    eval_every_steps: int = Field(250, ge=1)
    seed: int = Field(0, ge=0, lt=2**32)
    mixed_precision: bool = Field(True, description="autocast + GradScaler on CUDA only")
    boundary_tolerance_px: int = Field(2, ge=0)
    num_threads: int | None = Field(None, ge=1, le=1024, description="torch CPU threads; None: default")
    time_limit_s: float | None = Field(
        None,
        gt=0,
        description="stop after the step during which this many seconds (from the start, data "
        "preparation included) have passed, then validate and save; None: run every step",
    )
    weights_dtype: Literal["float32", "float16"] = Field(
        "float32", description="dtype of the saved generator's floating weights (float16: half the file)"
    )
    keep_best: bool = Field(
        False,
        description="save the generator as it was at the validation with the highest IoU, not "
        "after the last step (early stopping on the held-out places)",
    )
    ema_decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="validate and save an exponential moving average of the generator's weights "
        "(and batch-norm statistics), updated after every step with this decay (e.g. 0.995: "
        "about the last 200 steps); None: the weights of the last step",
    )


class TrainConfig(_Frozen):
    """A whole training run."""

    version: Literal[1] = 1
    data: DataConfig
    generator: GeneratorConfig = Field(default_factory=lambda: UNetConfig.model_validate({}))
    discriminator: DiscriminatorConfig = Field(default_factory=lambda: DiscriminatorConfig.model_validate({}))
    training: OptimConfig = Field(default_factory=lambda: OptimConfig.model_validate({}))
    out: str = Field("model.safetensors", description="checkpoint path")
    packed_from: str | None = Field(
        None,
        description="manifest (pack.json) of a training pack written by scripts/pack-trainset: "
        "provenance then names the original data the packed scenes were made from",
    )
    init_from: str | None = Field(
        None,
        description="fine-tune: start the generator from this checkpoint (its architecture, classes, "
        "radiometry and band colours must be this config's; its normalisation is kept)",
    )
    init_from_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of init_from's weights in the saved generator: (1 - s) x the fine-tuned "
        "weights + s x the starting ones, batch-norm statistics too (weight-space ensembling, "
        "WiSE-FT); 0: the fine-tuned weights",
    )

    @model_validator(mode="after")
    def _chips_fit_the_generator(self) -> TrainConfig:
        stride = self.generator.total_stride
        for name in ("chip_size_px", "val_chip_size_px", "block_size_px"):
            if getattr(self.data, name) % stride:
                raise FieldProblem(
                    f"data.{name}", f"must be a multiple of the generator's stride {stride} (2**depth)"
                )
        return self

    @model_validator(mode="after")
    def _a_share_needs_a_start(self) -> TrainConfig:
        if self.init_from_share and not self.init_from:
            raise FieldProblem("init_from_share", "needs init_from (the weights to share with)")
        return self

    @property
    def adversarial(self) -> bool:
        """Whether a discriminator is trained at all."""
        return self.training.adversarial_weight > 0


FILE_FIELDS = ("out", "packed_from", "init_from")
"""Top-level fields that name a file: relative to the config file, portable in a checkpoint."""


def _resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    data = raw.get("data")
    if isinstance(data, dict):
        for split in ("train", "val"):
            entries = data.get(split)
            if isinstance(entries, list):
                for entry in entries:
                    if isinstance(entry, dict):
                        for key in ("images", "masks", "labels"):
                            if isinstance(entry.get(key), str):
                                entry[key] = str(resolve_path(entry[key], base))
    for key in FILE_FIELDS:
        if isinstance(raw.get(key), str):
            raw[key] = str(resolve_path(raw[key], base))
    return raw


def parse_config(raw: Any, base: Path, source: str = "train config") -> TrainConfig:
    """Validate a mapping; the first problem becomes one ``ConfigError`` naming the field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    return validate(TrainConfig, _resolve_paths(raw, base), source)


def load_config(path: str | os.PathLike[str], **overrides: Any) -> TrainConfig:
    """Read a YAML training config; ``overrides`` replace ``training`` fields (e.g. steps)."""
    raw = read_mapping(path, "train config")
    if overrides:
        training = dict(raw.get("training") or {})
        training.update({k: v for k, v in overrides.items() if v is not None})
        raw["training"] = training
    return parse_config(raw, Path(path).resolve().parent, source=f"{path}: train config")
