"""Training chips: which windows to read, how to split them, how to sample and augment them.

A ``LabelledScene`` pairs a scene with its labels. Candidate chips are windows on a regular grid
(``chip_windows``); ``split_by_scene`` holds out whole scenes and ``split_by_block`` holds out
spatial blocks whose chips never cross a block edge, so no training pixel is ever in a
validation chip. ``ChipSampler`` plans draws from a numpy ``Generator`` (the same seed gives
the same plan), favouring chips with enough foreground, each with a random dihedral view (flips
and 90° rotations; optionally colours and a coarser scale) that ``augmented`` applies when the
chip is read (``geoseg.training.loader``).
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rasterio.windows import Window

from geoseg.errors import ConfigError, GeosegWarning, LabelError, SceneError
from geoseg.model.metadata import Radiometry, names_its_bands
from geoseg.model_input import scaled_scene
from geoseg.safepaths import glob_files
from geoseg.scenes import Scene, open_pixels, open_scene, read_window
from geoseg.training.config import DatasetConfig, EntryWeighting
from geoseg.training.labels import (
    LabelSource,
    VectorLabelFile,
    VectorLabels,
    open_mask_labels,
    read_vector_labels,
    vector_labels_for,
)
from geoseg.xyz import open_xyz_tile

ZOOMED_SHARE = 0.5
"""The share of draws ``zoom_out`` shrinks."""


@dataclass(frozen=True)
class LabelledScene:
    """A scene and the source of its labels."""

    scene: Scene
    labels: LabelSource
    label_path: str
    entry: int = 0
    """The index of the dataset entry (the place) it comes from."""


@dataclass(frozen=True)
class Chip:
    """One square window of one labelled scene; ``positive_fraction`` is its foreground share."""

    scene_index: int
    col_off_px: int
    row_off_px: int
    size_px: int
    positive_fraction: float = 0.0

    @property
    def window(self) -> Window:
        """The chip as a rasterio window of its scene."""
        return Window(self.col_off_px, self.row_off_px, self.size_px, self.size_px)


def open_datasets(
    datasets: Sequence[DatasetConfig], classes: list[str], radiometry: Radiometry | None
) -> list[LabelledScene]:
    """Open every scene of every dataset entry with its mask or vector labels, each scaled as
    ``radiometry`` says (``geoseg.model_input.scaled_scene``: pixels of other types than the
    kept ones are stretched per scene, so 8- and 16-bit sources train together).

    A scene that cannot be used (unreadable, no CRS, its mask missing or off its grid) is skipped
    with a one-line warning naming it, as a batch run goes on past a bad scene; an entry none of
    whose scenes can be used, and a vector label file that cannot be read, stop the run.
    """
    scenes: list[LabelledScene] = []
    vector_files: dict[tuple[str, str | None], VectorLabelFile] = {}
    for index, entry in enumerate(datasets):
        paths = glob_files(entry.images)
        if not paths:
            raise ConfigError(f"no scenes match images {entry.images!r}")
        if entry.labels is not None and (key := (entry.labels, entry.class_field)) not in vector_files:
            vector_files[key] = read_vector_labels(entry.labels, classes, entry.class_field)
        opened = []
        for path in paths:
            try:
                opened.append(_labelled_scene(path, entry, index, classes, radiometry, vector_files))
            except (SceneError, LabelError) as exc:
                warnings.warn(GeosegWarning(f"skipped {exc}"), stacklevel=2)
        if not opened:
            raise ConfigError(f"images {entry.images!r}: none of its {len(paths)} scenes can be used")
        if entry.labels is not None and not any(_has_foreground(s.labels) for s in opened):
            warnings.warn(
                GeosegWarning(
                    f"{entry.labels}: no label polygon of a class other than {classes[0]!r} falls on "
                    f"any of the {len(opened)} scenes of {entry.images!r} (labels of another place, "
                    "coordinates in another CRS, or a class field that names no class?)"
                ),
                stacklevel=2,
            )
        scenes += opened
    bands = {len(s.scene.bands) for s in scenes}
    if len(bands) > 1:
        raise ConfigError(f"scenes have different band counts {sorted(bands)}; choose 'bands'")
    return scenes


def _has_foreground(labels: LabelSource) -> bool:
    return isinstance(labels, VectorLabels) and bool((labels.frame["class_id"] > 0).any())


def _labelled_scene(
    path: str,
    entry: DatasetConfig,
    index: int,
    classes: list[str],
    radiometry: Radiometry | None,
    vector_files: dict[tuple[str, str | None], VectorLabelFile],
) -> LabelledScene:
    opener = open_xyz_tile if entry.georeference == "xyz" else open_scene
    scene = scaled_scene(opener(path, bands=entry.bands), radiometry)
    if entry.masks is not None:
        try:
            mask_path = entry.masks.format(stem=scene.id, name=Path(path).name)
        except IndexError:
            raise LabelError(
                f"{path}: the mask pattern {entry.masks!r} names a character its name lacks"
            ) from None
        if not Path(mask_path).exists():
            raise LabelError(f"{mask_path}: mask of {path} not found")
        labels: LabelSource = open_mask_labels(scene, mask_path, len(classes), entry.mask_nodata_is_class)
        return LabelledScene(scene, labels, mask_path, index)
    assert entry.labels is not None
    labels = vector_labels_for(scene, vector_files[(entry.labels, entry.class_field)])
    return LabelledScene(scene, labels, entry.labels, index)


def band_colours(scenes: Sequence[LabelledScene]) -> list[str] | None:
    """The colours the scenes' files name the bands they are read as (``Scene.colours``), which
    every scene that names them agrees on (``agreed_colours``)."""
    return agreed_colours([(s.scene.path, s.scene.colours) for s in scenes])


def agreed_colours(named: Sequence[tuple[str, tuple[str, ...]]]) -> list[str] | None:
    """The colours of (scene, band colours) pairs that every scene naming its bands agrees on;
    None where none names them (``gray``, ``undefined``).

    Raises ``ConfigError`` when two scenes name different colours (a BGR file among RGB ones):
    the model would learn from their bands mixed up.
    """
    tagged = [(scene, colours) for scene, colours in named if names_its_bands(colours)]
    for scene, colours in tagged[1:]:
        if colours != tagged[0][1]:
            raise ConfigError(
                f"{scene}: bands read as {', '.join(colours)}, but those of {tagged[0][0]} "
                f"as {', '.join(tagged[0][1])} (choose 'bands' so that they agree)"
            )
    return list(tagged[0][1]) if tagged else None


def grid_offsets(length_px: int, size_px: int, stride_px: int) -> list[int]:
    """Window origins covering ``length_px``; the last one is flush with the end (≥ 1 window)."""
    if length_px <= size_px:
        return [0]
    offsets = list(range(0, length_px - size_px + 1, stride_px))
    if offsets[-1] != length_px - size_px:
        offsets.append(length_px - size_px)
    return offsets


def chip_windows(scene_index: int, width_px: int, height_px: int, size_px: int, stride_px: int) -> list[Chip]:
    """Chips on a regular grid over a width × height area (chips larger than it reach outside)."""
    return [
        Chip(scene_index, col, row, size_px)
        for row in grid_offsets(height_px, size_px, stride_px)
        for col in grid_offsets(width_px, size_px, stride_px)
    ]


def split_by_scene(
    scenes: Sequence[LabelledScene], val_fraction: float, seed: int
) -> tuple[list[int], list[int]]:
    """Indexes of training and validation scenes: whole scenes are held out (≥ 1 each)."""
    if len(scenes) < 2:
        raise ConfigError("split 'scene' needs at least two scenes (use split: block)")
    order = np.random.default_rng(seed).permutation(len(scenes))
    n_val = min(len(scenes) - 1, max(1, round(val_fraction * len(scenes))))
    return sorted(int(i) for i in order[n_val:]), sorted(int(i) for i in order[:n_val])


def _block_is_val(scene_id: str, block_row: int, block_col: int, val_fraction: float, seed: int) -> bool:
    digest = hashlib.sha256(f"{seed}/{scene_id}/{block_row}/{block_col}".encode()).digest()
    return int.from_bytes(digest[:8], "little") / 2**64 < val_fraction


def split_by_block(
    scenes: Sequence[LabelledScene],
    block_size_px: int,
    chip_size_px: int,
    stride_px: int,
    val_fraction: float,
    seed: int,
) -> tuple[list[Chip], list[Chip]]:
    """Training and validation chips from spatial blocks; no chip crosses a block edge."""
    if block_size_px < chip_size_px:
        raise ConfigError(f"block_size_px {block_size_px} is smaller than chip_size_px {chip_size_px}")
    train: list[Chip] = []
    val: list[Chip] = []
    for index, item in enumerate(scenes):
        scene = item.scene
        for block_row, row0 in enumerate(range(0, scene.height, block_size_px)):
            for block_col, col0 in enumerate(range(0, scene.width, block_size_px)):
                width = min(block_size_px, scene.width - col0)
                height = min(block_size_px, scene.height - row0)
                if min(width, height) < chip_size_px // 2:
                    continue
                chips = [
                    Chip(index, col0 + c.col_off_px, row0 + c.row_off_px, chip_size_px)
                    for c in chip_windows(index, width, height, chip_size_px, stride_px)
                ]
                if _block_is_val(scene.id, block_row, block_col, val_fraction, seed):
                    val.extend(chips)
                else:
                    train.extend(chips)
    return train, val


@dataclass(frozen=True)
class ChipPixels:
    """A chip's pixels (bands, h, w) in the scene's dtype (float32 when the scene is scaled),
    class ids (h, w) uint8, validity."""

    image: np.ndarray
    target: np.ndarray
    valid: np.ndarray


class ChipReader:
    """Reads chips by window (image with ``read_window``, labels from their source), cached."""

    def __init__(self, scenes: Sequence[LabelledScene], cache_max_bytes: int = 0) -> None:
        self.scenes = list(scenes)
        self._cache: dict[Chip, ChipPixels] = {}
        self._cache_bytes = 0
        self._cache_max_bytes = cache_max_bytes

    def read(self, chip: Chip) -> ChipPixels:
        """The chip's pixels, labels and validity (image validity and label validity combined)."""
        key = Chip(chip.scene_index, chip.col_off_px, chip.row_off_px, chip.size_px)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        item = self.scenes[chip.scene_index]
        with open_pixels(item.scene.path) as dataset:
            pixels, image_valid = read_window(item.scene, chip.window, dataset)
        target, label_valid = item.labels.read(chip.window)
        result = ChipPixels(pixels, target, image_valid & label_valid)
        size = result.image.nbytes + result.target.nbytes + result.valid.nbytes
        if self._cache_bytes + size <= self._cache_max_bytes:
            self._cache[key] = result
            self._cache_bytes += size
        return result

    def with_positive_fraction(self, chips: Sequence[Chip]) -> list[Chip]:
        """The chips with their foreground share filled in (reads each chip's labels once)."""
        out = []
        for chip in chips:
            pixels = self.read(chip)
            fg = (pixels.target > 0) & pixels.valid
            share = float(fg.sum()) / max(1, int(pixels.valid.sum()))
            out.append(Chip(chip.scene_index, chip.col_off_px, chip.row_off_px, chip.size_px, share))
        return out


def dihedral(image: np.ndarray, *labels: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Apply one of the 8 flips/rotations (k in 0..7) to an image (C, H, W) and its (H, W) labels."""

    def transform(array: np.ndarray) -> np.ndarray:
        out = np.rot90(array, k % 4, axes=(-2, -1))
        return np.flip(out, axis=-1) if k >= 4 else out

    return tuple(np.ascontiguousarray(transform(a)) for a in (image, *labels))


def normalization_stats(reader: ChipReader, chips: Sequence[Chip]) -> tuple[list[float], list[float]]:
    """Per-band mean and std of the valid pixels of ``chips`` (as read: raw units, or scaled ones
    for scaled scenes; stored in checkpoints)."""
    total: np.ndarray | None = None
    total_sq: np.ndarray | None = None
    count = 0
    for chip in chips:
        pixels = reader.read(chip)
        values = pixels.image[:, pixels.valid].astype(np.float64)
        total = values.sum(axis=1) if total is None else total + values.sum(axis=1)
        total_sq = (values**2).sum(axis=1) if total_sq is None else total_sq + (values**2).sum(axis=1)
        count += values.shape[1]
    if total is None or total_sq is None or count == 0:
        raise LabelError("no valid training pixels to compute normalisation statistics from")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean**2, 0.0))
    return [float(m) for m in mean], [float(max(s, 1e-6)) for s in std]


def augmented(pixels: ChipPixels, draw: Draw) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chip as ``draw`` shows it: float32 pixels (its view, scale and colours), class ids, validity."""
    image, target, valid = dihedral(pixels.image, pixels.target, pixels.valid, k=draw.k)
    values = image.astype(np.float32)
    if draw.zoom < 1:
        values, target, valid = zoomed_out(
            values, target, valid, draw.zoom, np.random.default_rng(draw.zoom_seed)
        )
    if draw.jitter > 0 or draw.band_jitter:
        rng = np.random.default_rng(draw.jitter_seed)
        values = color_jittered(values, valid, draw.jitter, rng, band_strength=draw.band_jitter)
        if np.issubdtype(pixels.image.dtype, np.integer):
            limits = np.iinfo(pixels.image.dtype)
            np.clip(values, limits.min, limits.max, out=values)
    return values, target, valid


def zoomed_out(
    image: np.ndarray, target: np.ndarray, valid: np.ndarray, factor: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A float (C, H, W) chip as a coarser sensor would see it: ``factor`` (< 1) times as many
    pixels per side (anti-aliased bilinear; labels and validity nearest), placed at a random
    offset of a chip of the same size whose other pixels are invalid and hold the band means."""
    height, width = target.shape
    size = (max(1, round(height * factor)), max(1, round(width * factor)))
    shrunk = _resized(image, size, mode="bilinear", antialias=True, align_corners=False)
    small_target, small_valid = _resized(
        np.stack([target, valid]).astype(np.float32), size, mode="nearest-exact"
    )
    means = _band_means(image, valid)
    out_image = np.broadcast_to(means[:, None, None], image.shape).astype(np.float32)
    out_target, out_valid = np.zeros_like(target), np.zeros_like(valid)
    row, col = int(rng.integers(height - size[0] + 1)), int(rng.integers(width - size[1] + 1))
    inside = np.s_[row : row + size[0], col : col + size[1]]
    out_image[(slice(None), *inside)] = shrunk
    out_target[inside] = small_target.astype(target.dtype)
    out_valid[inside] = small_valid > 0.5
    return out_image, out_target, out_valid


def _band_means(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each band's mean over a (C, H, W) chip's valid pixels (over all of them when none is valid)."""
    means: np.ndarray = (
        image[:, valid].mean(axis=1) if valid.any() else image.reshape(image.shape[0], -1).mean(axis=1)
    )
    return means


def _resized(array: np.ndarray, size: tuple[int, int], **interpolation: Any) -> np.ndarray:
    """A float32 (C, H, W) array resampled to (C, *size) by ``torch.nn.functional.interpolate``."""
    resized: np.ndarray = F.interpolate(torch.from_numpy(array)[None], size=size, **interpolation)[0].numpy()
    return resized


def color_jittered(
    image: np.ndarray,
    valid: np.ndarray,
    strength: float,
    rng: np.random.Generator,
    *,
    band_strength: float | None = None,
) -> np.ndarray:
    """Photometric augmentation of a float (C, H, W) chip, as if taken by another sensor or light.

    Contrast ``c`` about each band's mean over valid pixels, then a brightness gain ``g`` for all
    bands and a gain ``h_b`` per band (colour balance): ``(m_b + c (x - m_b)) g h_b``, with ``c``
    and ``g`` uniform in ``1 ± strength`` and ``h_b`` in ``1 ± band_strength`` (default
    ``strength / 4``).
    """
    band_strength = strength / 4 if band_strength is None else band_strength
    contrast, gain = rng.uniform(1 - strength, 1 + strength, size=2)
    band_gains = rng.uniform(1 - band_strength, 1 + band_strength, size=image.shape[0])
    means = _band_means(image, valid)
    centre = means[:, None, None].astype(np.float32)
    scale = (gain * band_gains)[:, None, None].astype(np.float32)
    jittered: np.ndarray = ((centre + np.float32(contrast) * (image - centre)) * scale).astype(np.float32)
    return jittered


@dataclass(frozen=True)
class Draw:
    """One sampled chip, the dihedral view (0..7) to show of it, its colour jitter (0: none;
    ``band_jitter`` None: a quarter of ``jitter``, as ``color_jittered``) and its scale."""

    chip: Chip
    k: int
    jitter: float = 0.0
    jitter_seed: int = 0
    band_jitter: float | None = None
    zoom: float = 1.0
    """Below 1: the chip shrunk by this factor (``zoomed_out``), placed by ``zoom_seed``."""
    zoom_seed: int = 0


class ChipSampler:
    """Plans draws; ``positive_share`` of the chips come from positive chips.

    With ``entries`` (each chip's dataset entry, a place) and a ``weighting`` other than
    ``chips``, a draw first picks an entry (``entry_shares``), then a chip of it as above, so a
    place with few chips is not drowned by one with many.
    """

    def __init__(
        self,
        chips: Sequence[Chip],
        rng: np.random.Generator,
        *,
        min_positive_fraction: float = 0.01,
        positive_share: float = 0.75,
        augment: bool = True,
        color_jitter: float = 0.0,
        band_jitter: float | None = None,
        zoom_out: float = 0.0,
        entries: Sequence[int] | None = None,
        weighting: EntryWeighting = "chips",
    ) -> None:
        if not chips:
            raise ConfigError("no training chips (check the images, chip_size_px and split)")
        self.rng = rng
        self.augment = augment
        self.color_jitter = color_jitter if augment else 0.0
        self.band_jitter = band_jitter if augment else None
        self.zoom_out = zoom_out if augment else 0.0
        groups = [list(chips)]
        if entries is not None and weighting != "chips":
            by_entry: dict[int, list[Chip]] = {}
            for chip, entry in zip(chips, entries, strict=True):
                by_entry.setdefault(entry, []).append(chip)
            groups = [by_entry[entry] for entry in sorted(by_entry)]
        self.shares = entry_shares([len(group) for group in groups], weighting)
        self.pools = [_Pool(group, min_positive_fraction, positive_share) for group in groups]

    def draw(self) -> Chip:
        """One chip: of an entry drawn by its share (when there are several), then positive with
        probability ``positive_share``, otherwise any chip of it."""
        pool = (
            self.pools[0]
            if len(self.pools) == 1
            else self.pools[self.rng.choice(len(self.pools), p=self.shares)]
        )
        chips = pool.positive if self.rng.random() < pool.positive_share else pool.chips
        return chips[int(self.rng.integers(len(chips)))]

    def plan(self, n: int) -> list[Draw]:
        """The next ``n`` draws, each with a random view (colours, scale) when augmenting; no pixels are read.

        Without colour jitter and zoom-out the generator's stream is that of earlier versions: same
        seed, same batches. With ``zoom_out`` z, half the draws are shrunk by a factor U(1 − z, 1).
        """
        draws = []
        for _ in range(n):
            chip = self.draw()
            k = int(self.rng.integers(8)) if self.augment else 0
            draw = Draw(chip, k)
            if self.color_jitter > 0 or self.band_jitter:
                seed = int(self.rng.integers(2**31))
                draw = replace(draw, jitter=self.color_jitter, jitter_seed=seed, band_jitter=self.band_jitter)
            if self.zoom_out > 0 and self.rng.random() < ZOOMED_SHARE:
                zoom = float(self.rng.uniform(1 - self.zoom_out, 1))
                draw = replace(draw, zoom=zoom, zoom_seed=int(self.rng.integers(2**31)))
            draws.append(draw)
        return draws


class _Pool:
    """The chips a draw picks from, and which of them are positive."""

    def __init__(self, chips: list[Chip], min_positive_fraction: float, positive_share: float) -> None:
        self.chips = chips
        self.positive = [c for c in chips if c.positive_fraction >= min_positive_fraction]
        self.positive_share = positive_share if self.positive else 0.0


def entry_shares(counts: Sequence[int], weighting: EntryWeighting) -> list[float]:
    """The share of draws of each dataset entry with ``counts`` chips: in proportion to the counts
    (``chips``), to their square roots (``sqrt``: small places gain, without a few chips being
    drawn as often as a city's), or alike (``equal``)."""
    power = {"chips": 1.0, "sqrt": 0.5, "equal": 0.0}[weighting]
    weights = [count**power if count else 0.0 for count in counts]
    return [weight / sum(weights) for weight in weights]
