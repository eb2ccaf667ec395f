"""The pix2pix loop on real HOT/RAMP chips: finite losses, learning, repeatability, twins."""

from __future__ import annotations

import math

import numpy as np
import torch

from geoseg.model.checkpoint import load_generator
from geoseg.training.chips import Batch, ChipSampler
from geoseg.training.config import parse_config
from geoseg.training.trainer import Trainer, prepare_data, train


def _trainer_and_sampler(config):
    torch.set_num_threads(1)
    data = prepare_data(config)
    trainer = Trainer(config, 3, data.mean, data.std, torch.device("cpu"))
    sampler = ChipSampler(data.reader, data.train_chips, np.random.default_rng(config.training.seed))
    return trainer, sampler


def _supervised_loss(trainer, batch):
    image, target, valid = trainer._tensors(batch)
    trainer.generator.eval()
    with torch.no_grad():
        return trainer.supervised_loss(trainer.generator(image), target, valid).item()


def test_adversarial_steps_keep_losses_finite_and_lower_the_supervised_loss(tiny_config):
    trainer, sampler = _trainer_and_sampler(tiny_config)
    batch = sampler.batch(4)
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
        trainer, sampler = _trainer_and_sampler(tiny_config)
        runs.append([trainer.train_step(sampler.batch(4)) for _ in range(3)])
    assert runs[0] == runs[1]


def test_supervised_twin_matches_the_adversarial_run_during_warm_up(tiny_config_factory, tmp_path):
    def run(weight):
        raw = tiny_config_factory(warmup_steps=3, adversarial_weight=weight)
        trainer, sampler = _trainer_and_sampler(parse_config(raw, tmp_path))
        return [trainer.train_step(sampler.batch(4)) for _ in range(4)]

    adversarial, supervised = run(0.5), run(0.0)
    assert [s.supervised for s in adversarial[:3]] == [s.supervised for s in supervised[:3]]
    assert adversarial[3].adversarial_g != 0 and supervised[3].adversarial_g == 0
    assert all(s.discriminator == 0 for s in supervised)


def test_train_saves_a_self_describing_checkpoint(tiny_config):
    result = train(tiny_config, device="cpu")
    model, metadata = load_generator(result.checkpoint)
    assert metadata.classes == ["background", "building"]
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
    assert from_vectors.provenance["train_labels"] == [str(ramp / "chips_labels.geojson")]


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
        rng.normal(size=(2, 4, 32, 32)).astype(np.float32),
        rng.integers(0, 3, (2, 32, 32)).astype(np.uint8),
        np.ones((2, 32, 32), dtype=bool),
    )
    losses = trainer.train_step(batch)
    assert all(
        math.isfinite(v) and v != 0 for v in (losses.supervised, losses.adversarial_g, losses.discriminator)
    )
