"""The pix2pix loop on real HOT/RAMP chips: finite losses, learning, repeatability, twins."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import rasterio
import torch
from rasterio.transform import from_origin
from safetensors.torch import load_file
from typer.testing import CliRunner

from geoseg.cli import app
from geoseg.errors import ConfigError, OutputError
from geoseg.model.checkpoint import load_generator
from geoseg.model.linear import LinearSegmenter
from geoseg.training.chips import ChipSampler
from geoseg.training.config import parse_config
from geoseg.training.loader import Batch, chip_batches
from geoseg.training.metrics import SegmentationMetrics
from geoseg.training.trainer import Trainer, check_model_sizes, planned_batches, prepare_data, train
from tests.conftest import eleven_bit_copy, reordered_copy


def _trainer_and_batches(config, steps=12):
    torch.set_num_threads(1)
    data = prepare_data(config)
    trainer = Trainer(config, 3, data.mean, data.std, torch.device("cpu"))
    sampler = ChipSampler(data.train_chips, np.random.default_rng(config.training.seed))
    return trainer, iter(chip_batches(data.reader, sampler.plan(4 * steps), 4))


def _supervised_loss(trainer, batch):
    image, target, valid = trainer._tensors(batch)
    trainer.generator.eval()
    with torch.no_grad():
        return trainer.supervised_loss(trainer.generator(image), target, valid).item()


def test_adversarial_steps_keep_losses_finite_and_lower_the_supervised_loss(tiny_config):
    trainer, batches = _trainer_and_batches(tiny_config)
    batch = next(batches)
    before = _supervised_loss(trainer, batch)
    losses = [trainer.train_step(batch) for _ in range(12)]
    after = _supervised_loss(trainer, batch)
    for step in losses:
        assert all(math.isfinite(v) for v in (step.supervised, step.adversarial_g, step.discriminator))
    assert all(step.discriminator > 0 for step in losses)
    assert after < before


def test_same_seed_gives_the_same_losses_on_cpu(tiny_config):
    runs = []
    for _ in range(2):
        trainer, batches = _trainer_and_batches(tiny_config, steps=3)
        runs.append([trainer.train_step(batch) for batch in batches])
    assert runs[0] == runs[1]


def test_supervised_twin_matches_the_adversarial_run_during_warm_up(tiny_config_factory, tmp_path):
    def run(weight):
        raw = tiny_config_factory(warmup_steps=3, adversarial_weight=weight)
        trainer, batches = _trainer_and_batches(parse_config(raw, tmp_path), steps=4)
        return [trainer.train_step(batch) for batch in batches]

    adversarial, supervised = run(0.5), run(0.0)
    assert [s.supervised for s in adversarial[:3]] == [s.supervised for s in supervised[:3]]
    assert adversarial[3].adversarial_g != 0 and supervised[3].adversarial_g == 0
    assert all(s.discriminator == 0 for s in supervised)


def test_an_output_that_cannot_be_written_is_refused_before_any_data_is_read(tiny_config_factory, tmp_path):
    raw = tiny_config_factory(out=str(tmp_path / ("m" * 300 + ".safetensors")))
    raw["data"]["train"] = [{"images": str(tmp_path / "nowhere" / "*.tif"), "masks": "{stem}.tif"}]
    with pytest.raises(OutputError, match=r"cannot be written \(File name too long\)"):
        train(parse_config(raw, tmp_path), device="cpu")


def test_a_diverged_run_keeps_the_previous_checkpoint_instead_of_writing_unusable_weights(
    tiny_config_factory, tmp_path
):
    previous = tmp_path / "keep.safetensors"
    previous.write_bytes(b"the checkpoint of an earlier, good run")
    raw = tiny_config_factory(out=previous, lr_g=1e30, adversarial_weight=0.0)
    with pytest.raises(
        ConfigError, match=r"training diverged by step \d: .* not finite; .*keep.safetensors not written"
    ):
        train(parse_config(raw, tmp_path), device="cpu")
    assert previous.read_bytes() == b"the checkpoint of an earlier, good run"


def test_a_critic_too_large_to_build_is_refused_before_it_is_allocated(tiny_config_factory, tmp_path):
    raw = tiny_config_factory()
    raw["discriminator"] = {
        "base_width": 1024,
        "n_layers": 5,
    }  # 2.2e9 parameters: 9 GB with Adam's moments x3
    with pytest.raises(ConfigError, match=r"discriminator: 2,\d{3},\d{3},\d{3} parameters, more than"):
        check_model_sizes(parse_config(raw, tmp_path), 3)
    check_model_sizes(parse_config(tiny_config_factory(), tmp_path), 3)


def test_batches_planned_in_chunks_are_the_batches_of_one_plan(tiny_config, monkeypatch):
    data = prepare_data(tiny_config)

    def draws(chunk_steps):
        monkeypatch.setattr("geoseg.training.trainer.PLAN_STEPS", chunk_steps)
        sampler = ChipSampler(data.train_chips, np.random.default_rng(7))
        return [b.image.numpy().tobytes() for b in planned_batches(data.reader, sampler, 5, 2, 0, False)]

    assert draws(2) == draws(5) and len(draws(2)) == 5


def test_train_saves_a_self_describing_checkpoint(tiny_config):
    result = train(tiny_config, device="cpu")
    model, metadata = load_generator(result.checkpoint)
    assert metadata.classes == ["background", "building"]
    assert metadata.band_colours == ["red", "green", "blue"]  # the chips' colour interpretation
    assert metadata.architecture.base_width == 8 and metadata.architecture.depth == 2
    assert metadata.total_stride == model.total_stride == 4
    assert len(metadata.normalization.mean) == 3 and all(s > 1 for s in metadata.normalization.std)
    assert metadata.training["config"]["training"]["adversarial_weight"] == 0.1
    assert metadata.training["discriminator"]["name"] == "NLayerDiscriminator"
    counts = metadata.provenance["counts"]
    assert counts["train_scenes"] == 8 and counts["val_scenes"] == 2
    assert len(metadata.provenance["train_labels"]) == 8
    assert [h["step"] for h in metadata.metrics["history"]] == [2, 4]
    assert set(metadata.metrics["validation"]) >= {"iou", "f1", "precision", "recall", "boundary_f1"}


def test_time_limit_stops_after_the_step_it_passed_then_validates_and_saves(tiny_config_factory, tmp_path):
    """The limit counts from the start (data preparation included), so 1 ms stops after step 1."""
    raw = tiny_config_factory(steps=4, time_limit_s=0.001, weights_dtype="float16")
    result = train(parse_config(raw, tmp_path), device="cpu")
    _, metadata = load_generator(result.checkpoint)
    assert result.steps == 1 and metadata.training["steps"] == 1
    assert metadata.training["stopped_by_time_limit"] is True
    assert metadata.training["config"]["training"]["steps"] == 4
    assert [h["step"] for h in metadata.metrics["history"]] == [1]
    assert metadata.metrics["validation"]["iou"] == metadata.metrics["history"][0]["iou"]
    assert {t.dtype for t in load_file(result.checkpoint).values() if t.is_floating_point()} == {
        torch.float16
    }


def test_checkpoint_records_the_training_domain_and_names_data_relative_to_the_data_root(tiny_config):
    """Training GSD range and raw band statistics (for ``geoseg.applicability``); no machine paths."""
    result = train(
        tiny_config.model_copy(update={"training": tiny_config.training.model_copy(update={"steps": 1})}),
        device="cpu",
    )
    _, metadata = load_generator(result.checkpoint)
    domain = metadata.domain
    assert domain is not None
    assert domain.gsd_min_m == pytest.approx(0.0744, rel=1e-2)  # zoom-21 Kampala chips only
    assert domain.gsd_max_m == pytest.approx(domain.gsd_min_m, rel=1e-3)
    assert domain.mean == pytest.approx(metadata.normalization.mean, rel=1e-6)
    assert domain.std == pytest.approx(metadata.normalization.std, rel=1e-6)
    assert all(0 <= lo < m < hi <= 255 for lo, m, hi in zip(domain.p1, domain.mean, domain.p99, strict=True))
    paths = [*metadata.provenance["train_scenes"], *metadata.provenance["val_labels"]]
    assert all(p.startswith("$GEOSEG_SAMPLE_DATA/labeled/hotosm-ramp/") for p in paths)
    stored = metadata.training["config"]["data"]["train"][0]
    assert stored["images"] == "$GEOSEG_SAMPLE_DATA/labeled/hotosm-ramp/chips/OAM-1238450-*.tif"


def test_zoom_out_stretches_the_recorded_gsd_range_to_the_coarsest_gsd_shown(tiny_config):
    one_step = tiny_config.training.model_copy(update={"steps": 1})
    zoomed = tiny_config.data.model_copy(update={"zoom_out": 0.5})
    result = train(tiny_config.model_copy(update={"training": one_step, "data": zoomed}), device="cpu")
    domain = load_generator(result.checkpoint)[1].domain
    assert domain is not None
    assert domain.gsd_max_m == pytest.approx(2 * domain.gsd_min_m, rel=1e-3)  # chips seen at up to 2x


def test_a_scene_whose_file_names_other_band_colours_than_the_others_is_refused(
    tiny_config_factory, sample_data, tmp_path
):
    """A BGR file among RGB ones would teach the model colours mixed up; an unnamed one is taken as it is."""
    chip = sample_data / "labeled/hotosm-ramp/chips/OAM-1238450-1046533-21.tif"
    mask = sample_data / "labeled/hotosm-ramp/binarymasks/OAM-1238450-1046533-21.mask.tif"
    raw = tiny_config_factory()
    for colours in (("gray", "undefined", "undefined"), ("blue", "green", "red")):
        folder = tmp_path / colours[0]
        folder.mkdir()
        reordered_copy(chip, folder / chip.name, (3, 2, 1), colours)
        raw["data"]["train"].append({"images": str(folder / "*.tif"), "masks": str(mask)})
        config = parse_config(raw, tmp_path)
        if colours[0] == "gray":
            assert prepare_data(config).band_colours == ["red", "green", "blue"]
    with pytest.raises(
        ConfigError, match=r"blue/OAM-1238450-1046533-21\.tif: bands read as blue, green, red, but"
    ):
        prepare_data(config)


def test_vector_labels_train_on_the_same_chips_as_their_masks(tiny_config_factory, sample_data, tmp_path):
    raw = tiny_config_factory()
    masks = parse_config(raw, tmp_path)
    ramp = sample_data / "labeled" / "hotosm-ramp"
    raw["data"]["train"][0] = {
        "images": raw["data"]["train"][0]["images"],
        "labels": str(ramp / "chips_labels.geojson"),
    }
    vectors = parse_config(raw, tmp_path)
    from_masks, from_vectors = prepare_data(masks), prepare_data(vectors)
    assert from_vectors.train_chips == from_masks.train_chips
    assert from_vectors.provenance["train_labels"] == [
        "$GEOSEG_SAMPLE_DATA/labeled/hotosm-ramp/chips_labels.geojson"
    ]


def test_multiclass_adversarial_step_conditions_the_critic_on_class_probabilities(tmp_path):
    raw = {
        "data": {"train": [{"images": "x/*.tif", "labels": "l.gpkg"}], "classes": ["bg", "field", "forest"]},
        "generator": {"base_width": 4, "depth": 2},
        "discriminator": {"base_width": 4, "n_layers": 2},
        "training": {"warmup_steps": 0},
    }
    config = parse_config(raw, tmp_path)
    trainer = Trainer(config, 4, [0.0] * 4, [1.0] * 4, torch.device("cpu"))
    assert trainer.discriminator is not None
    assert trainer.discriminator.model[0].in_channels == 4 + 3
    rng = np.random.default_rng(0)
    batch = Batch(
        torch.from_numpy(rng.normal(size=(2, 4, 32, 32)).astype(np.float32)),
        torch.from_numpy(rng.integers(0, 3, (2, 32, 32)).astype(np.uint8)),
        torch.ones((2, 32, 32), dtype=torch.bool),
    )
    losses = trainer.train_step(batch)
    assert all(
        math.isfinite(v) and v != 0 for v in (losses.supervised, losses.adversarial_g, losses.discriminator)
    )


def test_dataloader_training_is_repeatable_on_cpu_with_a_fixed_seed(tiny_config_factory, tmp_path):
    """Chips read (and colour-jittered) by 2 DataLoader worker processes: two runs give identical
    weights, and the same weights as reading in the training process (each chip is a pure function
    of its planned draw)."""

    def weights(workers, name):
        raw = tiny_config_factory(out=tmp_path / f"{name}.safetensors")
        raw["data"].update(loader_workers=workers, color_jitter=0.2)
        return load_file(str(train(parse_config(raw, tmp_path), device="cpu").checkpoint))

    first, again, in_process = weights(2, "first"), weights(2, "again"), weights(0, "in-process")
    assert first.keys() == again.keys() == in_process.keys()
    assert all(torch.equal(first[name], again[name]) for name in first)
    assert all(torch.equal(first[name], in_process[name]) for name in first)


def _write_tif(path, pixels):
    bands, height, width = pixels.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": bands, "dtype": pixels.dtype}
    transform = from_origin(500_000, 10_000, 0.5, 0.5)
    with rasterio.open(path, "w", crs="EPSG:32636", transform=transform, **profile) as dst:
        dst.write(pixels)


def _bright_is_class_1(folder, n_scenes, seed, size=64):
    """Scenes whose class-1 rectangles are bright in band 1; bands 2 and 3 are noise everywhere."""
    rng = np.random.default_rng(seed)
    (folder / "masks").mkdir(parents=True)
    for i in range(n_scenes):
        mask = np.zeros((size, size), dtype=np.uint8)
        for _ in range(3):
            row, col = rng.integers(0, size - 16, 2)
            mask[row : row + rng.integers(8, 16), col : col + rng.integers(8, 16)] = 1
        image = rng.integers(0, 256, (3, size, size)).astype(np.uint8)
        image[0] = np.where(mask == 1, rng.integers(150, 230, mask.shape), rng.integers(20, 90, mask.shape))
        _write_tif(folder / f"scene-{i}.tif", image)
        _write_tif(folder / "masks" / f"scene-{i}.mask.tif", mask[None])
    return folder


def _iou(predicted, truth):
    return np.logical_and(predicted, truth).sum() / np.logical_or(predicted, truth).sum()


def test_linear_generator_trains_adversarially_and_separates_bright_pixels(tmp_path):
    """``generator: {name: linear}`` trains on any chip size (stride 1) with the same critic as the
    U-Net, saves a linear checkpoint, and ``geoseg predict`` with it finds the bright class."""
    train_dir = _bright_is_class_1(tmp_path / "train", 4, seed=1)
    val_dir = _bright_is_class_1(tmp_path / "val", 2, seed=2)
    raw = {
        "data": {
            "train": [{"images": f"{train_dir}/*.tif", "masks": f"{train_dir}/masks/{{stem}}.mask.tif"}],
            "val": [{"images": f"{val_dir}/*.tif", "masks": f"{val_dir}/masks/{{stem}}.mask.tif"}],
            "chip_size_px": 36,
            "chip_stride_px": 28,
            "val_chip_size_px": 64,
        },
        "generator": {"name": "linear"},
        "discriminator": {"base_width": 8, "n_layers": 2},
        "training": {
            "steps": 30,
            "batch_size": 4,
            "lr_g": 0.05,
            "warmup_steps": 0,
            "adversarial_weight": 0.1,
            "eval_every_steps": 30,
            "num_threads": 1,
        },
        "out": str(tmp_path / "linear.safetensors"),
    }
    result = train(parse_config(raw, tmp_path), device="cpu")

    model, metadata = load_generator(result.checkpoint)
    assert isinstance(model, LinearSegmenter) and metadata.architecture.name == "linear"
    assert (metadata.total_stride, metadata.receptive_radius_px) == (1, 0)
    assert metadata.training["discriminator"]["name"] == "NLayerDiscriminator"
    assert result.history[-1]["loss_discriminator"] > 0

    out = tmp_path / "mask.tif"
    predicted = CliRunner().invoke(
        app,
        [
            "predict",
            str(val_dir / "scene-0.tif"),
            "--model",
            str(result.checkpoint),
            "--out",
            str(out),
            "--device",
            "cpu",
        ],
    )
    assert predicted.exit_code == 0, predicted.output
    with rasterio.open(out) as mask, rasterio.open(val_dir / "masks" / "scene-0.mask.tif") as truth:
        predicted_ids, truth_ids = mask.read(1), truth.read(1)
    iou = _iou(predicted_ids == 1, truth_ids == 1)
    assert iou > 0.9 and result.metrics.iou > 0.9  # 1.0 here; untrained 0.06
    assert _iou(np.ones_like(truth_ids), truth_ids == 1) < 0.2  # "everything is class 1": 0.08


def test_sixteen_bit_and_eight_bit_scenes_train_together_on_one_scale(
    tiny_config_factory, sample_data, tmp_path
):
    """11-bit copies of the chips are stretched per scene into the 8-bit range (the config's
    radiometry, recorded in the checkpoint), so both kinds feed the model the same kind of values."""
    raw = tiny_config_factory()
    eight_bit = raw["data"]["train"][0]
    copies = tmp_path / "11bit"
    copies.mkdir()
    for chip in sorted(Path(eight_bit["images"]).parent.glob(Path(eight_bit["images"]).name)):
        eleven_bit_copy(chip, copies / chip.name)
    raw["data"]["train"].append({"images": str(copies / "*.tif"), "masks": eight_bit["masks"]})
    raw["training"]["steps"] = 1
    config = parse_config(raw, tmp_path)
    data = prepare_data(config)
    scaled = [s for s in data.scenes if s.scene.scaling is not None]
    assert len(scaled) == 8 and {s.scene.dtype for s in scaled} == {"uint16"}
    chip = next(c for c in data.train_chips if data.scenes[c.scene_index].scene.scaling is not None)
    image = data.reader.read(chip).image
    assert image.dtype == np.float32 and image.min() >= 0 and image.max() <= 255
    assert all(0 < m < 255 for m in data.mean)  # not the 16-bit values: one scale for both kinds
    _, metadata = load_generator(train(config, device="cpu").checkpoint)
    assert metadata.radiometry == config.data.radiometry
    assert metadata.training["config"]["data"]["radiometry"]["percentiles"] == [0.5, 99.5]


def test_keep_best_saves_the_generator_of_the_best_validation(tiny_config_factory, tmp_path, monkeypatch):
    """The kept weights are exactly those of the same run stopped at the best validation (CPU, one
    seed); validation scores are scripted so that the best is neither the first nor the last."""
    scripted = [0.2, 0.6, 0.4, 0.5]

    def scores(self, data):
        iou = scripted[len(self.scored) % len(scripted)]
        self.scored.append(iou)
        return SegmentationMetrics(iou, iou, iou, iou, iou, 100)

    monkeypatch.setattr(Trainer, "scored", [], raising=False)
    monkeypatch.setattr(Trainer, "validate", scores)
    raw = tiny_config_factory(out=tmp_path / "best.safetensors", steps=4, eval_every_steps=1, keep_best=True)
    result = train(parse_config(raw, tmp_path), device="cpu")
    _, metadata = load_generator(result.checkpoint)
    assert metadata.training["kept_step"] == result.kept_step == 2 and metadata.training["steps"] == 4
    assert metadata.metrics["validation"]["iou"] == result.metrics.iou == 0.6
    assert [h["iou"] for h in metadata.metrics["history"]] == scripted
    Trainer.scored.clear()
    stopped = tiny_config_factory(out=tmp_path / "stopped.safetensors", steps=2, eval_every_steps=1)
    at_step_2 = train(parse_config(stopped, tmp_path), device="cpu")
    best, expected = load_file(str(result.checkpoint)), load_file(str(at_step_2.checkpoint))
    assert best.keys() == expected.keys()
    assert all(torch.equal(best[name], expected[name]) for name in best)
    Trainer.scored.clear()
    last = train(
        parse_config(tiny_config_factory(out=tmp_path / "last.safetensors", steps=4), tmp_path), device="cpu"
    )
    assert load_generator(last.checkpoint)[1].training["kept_step"] == 4, "without keep_best: the last step"


def test_ema_decay_validates_and_saves_the_moving_average_of_the_steps_weights(tiny_config_factory, tmp_path):
    """ema_decay d: the kept weights are w1, then d × kept + (1 − d) × w_t after each step t (batch-norm
    statistics too), while G itself trains exactly as without the average."""
    decay = 0.5
    config = parse_config(tiny_config_factory(ema_decay=decay), tmp_path)
    trainer, batches = _trainer_and_batches(config, steps=3)
    plain, plain_batches = _trainer_and_batches(parse_config(tiny_config_factory(), tmp_path), steps=3)
    expected: dict[str, torch.Tensor] = {}
    for batch, plain_batch in zip(batches, plain_batches, strict=True):
        assert trainer.train_step(batch) == plain.train_step(plain_batch)
        for name, value in trainer.generator.state_dict().items():
            if value.is_floating_point():
                expected[name] = (
                    value.clone() if name not in expected else decay * expected[name] + (1 - decay) * value
                )
    kept = trainer.kept.state_dict()
    assert kept.keys() == trainer.generator.state_dict().keys()
    for name, value in expected.items():
        assert torch.allclose(kept[name], value, atol=1e-6), name
    assert not torch.equal(kept["head.weight"], trainer.generator.state_dict()["head.weight"])


def test_ema_checkpoint_holds_the_averaged_generator(tiny_config_factory, tmp_path):
    raw = tiny_config_factory(out=tmp_path / "ema.safetensors", steps=3, eval_every_steps=3, ema_decay=0.9)
    result = train(parse_config(raw, tmp_path), device="cpu")
    _, metadata = load_generator(result.checkpoint)
    assert metadata.training["config"]["training"]["ema_decay"] == 0.9
    plain = train(
        parse_config(tiny_config_factory(out=tmp_path / "plain.safetensors", steps=3), tmp_path), device="cpu"
    )
    averaged, last = load_file(str(result.checkpoint)), load_file(str(plain.checkpoint))
    assert averaged.keys() == last.keys()
    assert not all(torch.equal(averaged[name], last[name]) for name in averaged)
