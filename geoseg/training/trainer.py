"""The training loop: the pix2pix algorithm with a supervised term (Isola et al. 2017).

Every step draws a batch, lets the generator G predict soft masks, then

1. updates the critic D on ``(image, real mask)`` vs ``(image, G's mask)`` (when adversarial),
2. updates G on ``supervised + adversarial_weight × adversarial`` (the adversarial term only
   after ``warmup_steps``; Hung et al. 2018 found ~0.01 the useful weight).

Real masks shown to D are smoothed and jittered so that D cannot win by spotting hard 0/1
masks (Luc et al. 2016). Batches are planned up front from the seed and read ahead by
``DataLoader`` workers (``geoseg.training.loader``): the same seed gives the same batches for
any number of workers and, on CPU, the same losses; a supervised-only run
(``adversarial_weight: 0``) with the same seed sees the same batches. On a GPU the steps run in
mixed precision (autocast + GradScaler) on pinned, asynchronously copied batches. With
``ema_decay`` the generator that is validated and saved is an exponential moving average of G's
weights (``torch.optim.swa_utils.AveragedModel``): training itself is unchanged.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import geoseg
from geoseg.atomic import check_writable
from geoseg.errors import CheckpointError, ConfigError
from geoseg.inference import Predictor, resolve_device
from geoseg.model.architecture import logit_channels
from geoseg.model.checkpoint import Generator, generator_for, save_checkpoint
from geoseg.model.discriminator import NLayerDiscriminator
from geoseg.model.metadata import MAX_PARAMETERS, Domain, ModelMetadata, read_metadata
from geoseg.safepaths import refuse_overwriting_inputs
from geoseg.training.chips import (
    Chip,
    ChipReader,
    ChipSampler,
    LabelledScene,
    band_colours,
    chip_windows,
    normalization_stats,
    open_datasets,
    split_by_block,
    split_by_scene,
)
from geoseg.training.config import TrainConfig
from geoseg.training.domain import pixel_sample, training_domain
from geoseg.training.evaluate import evaluate_chips
from geoseg.training.finetune import check_start, interpolated, starting_point, widened
from geoseg.training.loader import Batch, chip_batches
from geoseg.training.losses import GANLoss, SegmentationLoss, mask_channels, real_mask_channels
from geoseg.training.metrics import SegmentationMetrics
from geoseg.training.provenance import git_commit, git_dirty, portable_config, portable_path, read_pack

_NORMALIZATION_CHIPS = 512


@dataclass(frozen=True)
class StepLosses:
    """Losses of one step; the adversarial ones are 0 for a supervised-only step."""

    supervised: float
    adversarial_g: float = 0.0
    discriminator: float = 0.0


@dataclass
class TrainingData:
    """Opened scenes, the chip reader, training and validation chips, normalisation, domain."""

    scenes: list[LabelledScene]
    reader: ChipReader
    train_chips: list[Chip]
    val_chips: list[Chip]
    mean: list[float]
    std: list[float]
    domain: Domain
    provenance: dict[str, Any] = field(default_factory=dict)
    band_colours: list[str] | None = None
    """The colours the scenes' files name their bands (``chips.band_colours``)."""


@dataclass(frozen=True)
class TrainEvent:
    """A progress report: after every step (``metrics`` None) or after a validation."""

    step: int
    steps: int
    losses: StepLosses
    metrics: SegmentationMetrics | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a run produced."""

    checkpoint: Path
    metrics: SegmentationMetrics
    history: list[dict[str, Any]]
    seconds: float
    steps: int
    """Steps run (fewer than configured when the time limit stopped the run)."""
    kept_step: int
    """The step whose generator was saved: the last, or with ``keep_best`` the best validation's."""


def prepare_data(config: TrainConfig) -> TrainingData:
    """Open the datasets, cut and split chips, count positives, compute normalisation and domain."""
    data = config.data
    seed = config.training.seed
    stride = data.chip_stride_px or max(1, data.chip_size_px // 2)
    train_scenes = open_datasets(data.train, data.classes, data.radiometry)
    val_scenes = open_datasets(data.val, data.classes, data.radiometry) if data.val else []
    scenes = train_scenes + val_scenes
    colours = band_colours(scenes)
    n_train = len(train_scenes)

    def grid(indexes: list[int], size: int, step: int) -> list[Chip]:
        return [
            chip
            for i in indexes
            for chip in chip_windows(i, scenes[i].scene.width, scenes[i].scene.height, size, step)
        ]

    if val_scenes:
        train_chips = grid(list(range(n_train)), data.chip_size_px, stride)
        val_chips = grid(list(range(n_train, len(scenes))), data.val_chip_size_px, data.val_chip_size_px)
    elif data.split == "scene":
        train_idx, val_idx = split_by_scene(train_scenes, data.val_fraction, seed)
        train_chips = grid(train_idx, data.chip_size_px, stride)
        val_chips = grid(val_idx, data.val_chip_size_px, data.val_chip_size_px)
    else:
        train_chips, val_chips = split_by_block(
            train_scenes, data.block_size_px, data.chip_size_px, stride, data.val_fraction, seed
        )
    reader = ChipReader(scenes, cache_max_bytes=data.cache_max_mb * 2**20)
    train_chips = reader.with_positive_fraction(train_chips)
    rng = np.random.default_rng(seed)
    sample = [train_chips[int(i)] for i in rng.permutation(len(train_chips))[:_NORMALIZATION_CHIPS]]
    mean, std = normalization_stats(reader, sample)
    positives = sum(c.positive_fraction >= data.min_positive_fraction for c in train_chips)
    used = {c.scene_index for c in train_chips}
    val_used = {c.scene_index for c in val_chips}
    domain = training_domain(
        [scenes[i].scene for i in sorted(used)],
        pixel_sample(reader, sample),
        mean,
        std,
        zoom_out=config.data.zoom_out,
    )
    name, pack = read_pack(config.packed_from) if config.packed_from else (portable_path, None)
    provenance = {
        "train_scenes": [name(scenes[i].scene.path) for i in sorted(used)],
        "train_labels": sorted({name(scenes[i].label_path) for i in used}),
        "val_scenes": [name(scenes[i].scene.path) for i in sorted(val_used)],
        "val_labels": sorted({name(scenes[i].label_path) for i in val_used}),
        **({"pack": pack} if pack else {}),
        "counts": {
            "train_scenes": len(used),
            "val_scenes": len(val_used),
            "train_chips": len(train_chips),
            "train_positive_chips": positives,
            "val_chips": len(val_chips),
        },
        "git_commit": git_commit(),
        "git_dirty": git_dirty(),
        "geoseg_version": geoseg.__version__,
    }
    return TrainingData(scenes, reader, train_chips, val_chips, mean, std, domain, provenance, colours)


def _set_requires_grad(module: nn.Module, flag: bool) -> None:
    for parameter in module.parameters():
        parameter.requires_grad_(flag)


PLAN_STEPS = 2_000
"""Steps whose draws are planned at once: memory holds a chunk's draws, not a whole run's."""


def planned_batches(
    reader: ChipReader, sampler: ChipSampler, steps: int, batch_size: int, workers: int, pin_memory: bool
) -> Iterator[Batch]:
    """The run's batches, ``PLAN_STEPS`` at a time (the sampler draws in order, so the batches
    are those of one plan of every step)."""
    for first in range(0, steps, PLAN_STEPS):
        draws = sampler.plan(min(PLAN_STEPS, steps - first) * batch_size)
        yield from chip_batches(reader, draws, batch_size, workers=workers, pin_memory=pin_memory)


def check_model_sizes(config: TrainConfig, in_bands: int) -> None:
    """Refuse a generator or discriminator of more than ``MAX_PARAMETERS`` before allocating it
    (a mistyped width would ask for terabytes); the discriminator is counted on the meta device."""
    sizes = {"generator": config.generator.architecture(in_bands, len(config.data.classes)).parameters}
    if config.adversarial:
        with torch.device("meta"):
            critic = NLayerDiscriminator(
                in_bands + logit_channels(len(config.data.classes)),
                config.discriminator.base_width,
                config.discriminator.n_layers,
                config.discriminator.spectral_norm,
            )
        sizes["discriminator"] = sum(p.numel() for p in critic.parameters())
    for name, parameters in sizes.items():
        if parameters > MAX_PARAMETERS:
            raise ConfigError(
                f"{name}: {parameters:,} parameters, more than the {MAX_PARAMETERS:,} allowed "
                f"(a smaller {name}.base_width)"
            )


def _validated(trainer: Trainer, data: TrainingData, step: int, config: TrainConfig) -> SegmentationMetrics:
    """``trainer.validate``; a generator whose outputs are no longer finite ends the run."""
    try:
        return trainer.validate(data)
    except CheckpointError:  # the Predictor's refusal of non-finite outputs
        raise _diverged(step, config, "the generator's outputs are not finite") from None


def _diverged(step: int, config: TrainConfig, what: str) -> ConfigError:
    return ConfigError(
        f"training diverged by step {step}: {what}; {config.out} not written "
        "(lower training.lr_g or the loss weights)"
    )


class Trainer:
    """Holds G (U-Net or linear), D, their optimisers and losses; ``train_step`` is one pix2pix iteration."""

    def __init__(
        self,
        config: TrainConfig,
        in_bands: int,
        mean: list[float],
        std: list[float],
        device: torch.device,
        start: dict[str, torch.Tensor] | None = None,
    ) -> None:
        """``start``: the generator's starting weights (fine-tuning); else a seeded initialisation."""
        opt = config.training
        self.config = config
        self.device = device
        self.num_classes = len(config.data.classes)
        torch.manual_seed(opt.seed)
        self.generator: Generator = generator_for(
            config.generator.architecture(in_bands, self.num_classes)
        ).to(device)
        if start is not None:
            self.generator.load_state_dict(start)
        self.ema: AveragedModel | None = None
        if opt.ema_decay is not None:
            self.ema = AveragedModel(
                self.generator, multi_avg_fn=get_ema_multi_avg_fn(opt.ema_decay), use_buffers=True
            )
        self.discriminator: NLayerDiscriminator | None = None
        self.opt_d: torch.optim.Optimizer | None = None
        if config.adversarial:
            mask_ch = logit_channels(self.num_classes)
            self.discriminator = NLayerDiscriminator(
                in_bands + mask_ch,
                config.discriminator.base_width,
                config.discriminator.n_layers,
                config.discriminator.spectral_norm,
            ).to(device)
            self.opt_d = torch.optim.Adam(
                self.discriminator.parameters(), lr=opt.lr_d, betas=(opt.beta1, opt.beta2)
            )
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=opt.lr_g, betas=(opt.beta1, opt.beta2))
        self.supervised_loss = SegmentationLoss(self.num_classes, opt.dice_weight, opt.hard_pixel_share)
        self.gan_loss = GANLoss(opt.gan_mode)
        self.amp = opt.mixed_precision and device.type == "cuda"
        self.scaler_g = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.scaler_d = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.noise = torch.Generator(device=device).manual_seed(opt.seed + 1)
        self.mean = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.step = 0

    def _tensors(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        image = batch.image.to(self.device, non_blocking=True)
        image = (image - self.mean) / self.std
        target = batch.target.to(self.device, non_blocking=True)
        valid = batch.valid.to(self.device, non_blocking=True)
        return image, target, valid

    def _autocast(self) -> torch.autocast:
        return torch.autocast(self.device.type, dtype=torch.float16, enabled=self.amp)

    def discriminator_step(self, image: torch.Tensor, real: torch.Tensor, fake: torch.Tensor) -> float:
        """Update D to score (image, real mask) as real and (image, G's mask) as fake."""
        assert self.discriminator is not None and self.opt_d is not None
        _set_requires_grad(self.discriminator, True)
        self.opt_d.zero_grad(set_to_none=True)
        with self._autocast():
            loss_real = self.gan_loss(self.discriminator(image, real), True)
            loss_fake = self.gan_loss(self.discriminator(image, fake.detach()), False)
            loss = 0.5 * (loss_real + loss_fake)
        self.scaler_d.scale(loss).backward()
        self.scaler_d.step(self.opt_d)
        self.scaler_d.update()
        _set_requires_grad(self.discriminator, False)
        return float(loss.detach())

    def generator_step(
        self, image: torch.Tensor, logits: torch.Tensor, target: torch.Tensor, valid: torch.Tensor
    ) -> tuple[float, float]:
        """Update G on the supervised loss plus, after warm-up, the weighted adversarial loss."""
        weight = self.config.training.adversarial_weight
        adversarial_on = self.discriminator is not None and self.step >= self.config.training.warmup_steps
        self.opt_g.zero_grad(set_to_none=True)
        with self._autocast():
            supervised = self.supervised_loss(logits, target, valid)
            adversarial = torch.zeros((), device=self.device)
            if adversarial_on:
                assert self.discriminator is not None
                scores = self.discriminator(image, mask_channels(logits))
                adversarial = self.gan_loss(scores, True, for_discriminator=False)
            loss = supervised + weight * adversarial
        self.scaler_g.scale(loss).backward()
        self.scaler_g.step(self.opt_g)
        self.scaler_g.update()
        return float(supervised.detach()), float(adversarial.detach())

    def train_step(self, batch: Batch) -> StepLosses:
        """One iteration: G predicts, D is updated (if adversarial), then G is updated."""
        self.generator.train()
        image, target, valid = self._tensors(batch)
        with self._autocast():
            logits = self.generator(image)
        loss_d = 0.0
        if self.discriminator is not None:
            self.discriminator.train()
            opt = self.config.training
            real = real_mask_channels(
                target, self.num_classes, opt.label_smoothing, opt.label_noise_std, self.noise
            )
            loss_d = self.discriminator_step(image, real, mask_channels(logits))
        supervised, adversarial = self.generator_step(image, logits, target, valid)
        if self.ema is not None:
            self.ema.update_parameters(self.generator)
        self.step += 1
        return StepLosses(supervised, adversarial, loss_d)

    @property
    def kept(self) -> Generator:
        """The generator that is validated and saved: the moving average with ``ema_decay``, else G."""
        return cast(Generator, self.ema.module) if self.ema is not None else self.generator

    def metadata(self, metrics: dict[str, Any] | None = None, **extra: Any) -> ModelMetadata:
        """Checkpoint metadata of the kept generator."""
        return ModelMetadata.for_generator(
            self.kept,
            classes=list(self.config.data.classes),
            mean=self.mean.flatten().tolist(),
            std=self.std.flatten().tolist(),
            radiometry=self.config.data.radiometry,
            metrics=metrics or {},
            **extra,
        )

    def validate(self, data: TrainingData) -> SegmentationMetrics:
        """Metrics of the kept generator on the validation chips."""
        predictor = Predictor(self.kept.eval(), self.metadata(), self.device, self.config.training.batch_size)
        try:
            return evaluate_chips(
                predictor,
                data.reader,
                data.val_chips,
                self.config.training.boundary_tolerance_px,
                self.config.training.batch_size,
            )
        finally:
            self.kept.train()


@dataclass(frozen=True)
class _Kept:
    """The generator's weights (a CPU copy) at one validation, and that validation."""

    step: int
    metrics: SegmentationMetrics
    state: dict[str, torch.Tensor]

    @classmethod
    def of(cls, generator: nn.Module, step: int, metrics: SegmentationMetrics) -> _Kept:
        state = {name: value.detach().to("cpu", copy=True) for name, value in generator.state_dict().items()}
        return cls(step, metrics, state)


def train(
    config: TrainConfig,
    *,
    device: str = "auto",
    callback: Callable[[TrainEvent], None] | None = None,
    data: TrainingData | None = None,
) -> TrainResult:
    """Train per ``config``, validate every ``eval_every_steps``, save the checkpoint.

    With ``training.time_limit_s`` the run ends after the step during which the limit passed
    (counted from the start, data preparation included), validated and saved as after the last
    step; the checkpoint records the steps run. With ``training.keep_best`` the saved generator
    is the one of the validation with the highest IoU (``kept_step``; the metrics are its own).
    With ``init_from_share`` it is then blended with the starting weights and validated again.
    """
    opt = config.training
    if opt.num_threads:
        torch.set_num_threads(opt.num_threads)
    target = resolve_device(device)
    if target.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed chip shapes: pick the fastest kernels once
    started = time.perf_counter()
    check_writable(config.out)
    refuse_overwriting_inputs([config.out], [path for path in (config.init_from, config.packed_from) if path])
    if config.init_from:  # before the data is prepared: a wrong starting point costs no minutes
        check_start(config, read_metadata(config.init_from))
    data = data or prepare_data(config)
    read = [path for labelled in data.scenes for path in (labelled.scene.path, labelled.label_path)]
    refuse_overwriting_inputs([config.out], read)  # no checkpoint replaces a training file
    if not data.val_chips:
        raise ConfigError("no validation chips (add data.val or check split/val_fraction)")
    in_bands = len(data.scenes[0].scene.bands)
    start = starting_point(config, in_bands, data.band_colours) if config.init_from else None
    norm = start.metadata.normalization if start else data  # the starting weights expect theirs
    check_model_sizes(config, in_bands)
    trainer = Trainer(
        config, in_bands, norm.mean, norm.std, target, start.generator.state_dict() if start else None
    )
    sampler = ChipSampler(
        data.train_chips,
        np.random.default_rng(opt.seed),
        min_positive_fraction=config.data.min_positive_fraction,
        positive_share=config.data.positive_chip_share,
        color_jitter=config.data.color_jitter,
        band_jitter=config.data.band_jitter,
        zoom_out=config.data.zoom_out,
        entries=[data.scenes[chip.scene_index].entry for chip in data.train_chips],
        weighting=config.data.entry_weighting,
    )
    batches = planned_batches(
        data.reader, sampler, opt.steps, opt.batch_size, config.data.loader_workers, target.type == "cuda"
    )
    history: list[dict[str, Any]] = []
    window: list[StepLosses] = []
    metrics: SegmentationMetrics | None = None
    best: _Kept | None = None
    step = 0
    for step, batch in enumerate(batches, start=1):
        losses = trainer.train_step(batch)
        window.append(losses)
        metrics = None
        out_of_time = opt.time_limit_s is not None and time.perf_counter() - started >= opt.time_limit_s
        if step % opt.eval_every_steps == 0 or step == opt.steps or out_of_time:
            metrics = _validated(trainer, data, step, config)
            history.append(
                {
                    "step": step,
                    "seconds": round(time.perf_counter() - started, 1),
                    "loss_supervised": round(float(np.mean([w.supervised for w in window])), 5),
                    "loss_adversarial_g": round(float(np.mean([w.adversarial_g for w in window])), 5),
                    "loss_discriminator": round(float(np.mean([w.discriminator for w in window])), 5),
                    **metrics.as_dict(),
                }
            )
            window = []
            if opt.keep_best and (best is None or metrics.iou > best.metrics.iou):
                best = _Kept.of(trainer.kept, step, metrics)
        if callback is not None:
            callback(TrainEvent(step, opt.steps, losses, metrics))
        if out_of_time:
            break
    assert metrics is not None
    kept_step = step
    if best is not None:
        trainer.kept.load_state_dict(best.state)
        metrics, kept_step = best.metrics, best.step
    if start is not None and config.init_from_share:
        blend = interpolated(trainer.kept.state_dict(), start.generator.state_dict(), config.init_from_share)
        trainer.kept.load_state_dict(blend)
        metrics = _validated(trainer, data, step, config)
    seconds = time.perf_counter() - started
    training = {
        "config": portable_config(config),
        "steps": step,
        "stopped_by_time_limit": step < opt.steps,
        "kept_step": kept_step,
        "seconds": round(seconds, 1),
        "device": str(target),
        "torch_threads": torch.get_num_threads(),
        "discriminator": None
        if trainer.discriminator is None
        else {"name": "NLayerDiscriminator", **config.discriminator.model_dump()},
    }
    metadata = trainer.metadata(
        metrics={"validation": metrics.as_dict(), "history": history},
        training=training,
        provenance=data.provenance if start is None else {**data.provenance, "init_from": start.provenance},
        domain=data.domain if start is None else widened(start.metadata.domain, data.domain),
        band_colours=data.band_colours or (start.metadata.band_colours if start else None),
    )
    dtype = torch.float16 if opt.weights_dtype == "float16" else torch.float32
    if diverged := [name for name, t in trainer.kept.state_dict().items() if not torch.isfinite(t).all()]:
        raise _diverged(step, config, f"{diverged[0]} (and {len(diverged) - 1} more) not finite")
    path = save_checkpoint(os.fspath(config.out), trainer.kept.cpu(), metadata, dtype)
    return TrainResult(path, metrics, history, seconds, step, kept_step)
