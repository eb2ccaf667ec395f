"""The shipped building model: small, self-describing, and better than trivial, also in a city it never saw."""

from __future__ import annotations

import pytest
import rasterio

from geoseg.inference import Predictor
from geoseg.model.metadata import read_metadata
from geoseg.training.config import DatasetConfig
from geoseg.training.evaluate import evaluate_checkpoint
from tests.conftest import SHIPPED_MODEL


def test_shipped_model_is_small_and_describes_itself():
    assert SHIPPED_MODEL.stat().st_size < 5 * 2**20
    metadata = read_metadata(SHIPPED_MODEL)
    assert metadata.classes == ["background", "building"]
    assert metadata.architecture.base_width == 16 and metadata.architecture.depth == 3
    counts = metadata.provenance["counts"]
    assert counts["train_scenes"] == 118 + 966  # Kampala chips + Zanzibar web-map tiles
    assert counts["val_scenes"] == 29 + 168 + 84  # Kampala held-out chips + Nepal + Philippines tiles
    val_labels = "\n".join(metadata.provenance["val_labels"])
    assert "tiles/3/labels.geojson" in val_labels and "tiles/4/labels.geojson" in val_labels
    assert not any("tiles/3/" in p or "tiles/4/" in p for p in metadata.provenance["train_labels"])
    assert metadata.training["steps"] == metadata.training["config"]["training"]["steps"]
    assert metadata.training["config"]["training"]["adversarial_weight"] > 0
    assert metadata.metrics["validation"]["iou"] > 0.4  # "everything is a building" scores 0.23 there


def test_shipped_model_records_its_training_domain_and_portable_provenance():
    """Zoom 19–21 web-map imagery of Kampala and Zanzibar: 0.074–0.30 m; uint8 RGB."""
    metadata = read_metadata(SHIPPED_MODEL)
    domain = metadata.domain
    assert domain is not None
    assert domain.gsd_min_m == pytest.approx(0.0742, rel=1e-2)  # zoom 21 at Zanzibar, 6° S
    assert domain.gsd_max_m == pytest.approx(0.2976, rel=1e-2)  # zoom 19 at Kampala, 0.3° N
    assert domain.mean == pytest.approx(metadata.normalization.mean, rel=1e-6)
    assert all(
        0 <= lo < mean < hi <= 255 for lo, mean, hi in zip(domain.p1, domain.mean, domain.p99, strict=True)
    )
    provenance = metadata.provenance
    paths = [
        *provenance["train_scenes"],
        *provenance["train_labels"],
        *provenance["val_scenes"],
        *provenance["val_labels"],
    ]
    assert len(paths) == 118 + 966 + 281 + 118 + 1 + 29 + 2
    assert all(p.startswith("$GEOSEG_SAMPLE_DATA/labeled/hotosm-ramp/") for p in paths)
    datasets = metadata.training["config"]["data"]["train"] + metadata.training["config"]["data"]["val"]
    assert all(d["images"].startswith("$GEOSEG_SAMPLE_DATA/") for d in datasets)


def test_shipped_model_beats_calling_everything_a_building_on_held_out_kampala_chips(sample_data):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    val = DatasetConfig.model_validate(
        {
            "images": str(ramp / "val-chips" / "OAM-1238424-104654*-21.tif"),
            "masks": str(ramp / "val-binarymasks" / "{stem}.mask.tif"),
        }
    )
    metrics, scenes = evaluate_checkpoint(SHIPPED_MODEL, [val], device="cpu")
    assert scenes == 4
    assert metrics.iou > 0.6 and metrics.precision > 0.7  # trivial: IoU = precision = 0.56


def test_shipped_model_beats_calling_everything_a_building_in_an_unseen_city(sample_data):
    """The Philippines tiles (web-map tiles placed by name) were never trained on."""
    area = sample_data / "labeled" / "hotosm-ramp" / "tiles" / "4"
    val = DatasetConfig(images=str(area / "*.png"), labels=str(area / "labels.geojson"), georeference="xyz")
    metrics, scenes = evaluate_checkpoint(SHIPPED_MODEL, [val], device="cpu")
    assert scenes == 84
    assert metrics.iou > 0.4 and metrics.precision > 0.5  # trivial: IoU = precision = 0.21


def test_the_gpu_trained_model_is_small_self_describing_and_held_out_nepal_and_the_philippines():
    """The opt-in GPU checkpoint: all building-labelled uint8 RGB sets, float16 weights."""
    path = SHIPPED_MODEL.parent / "buildings-unet-gpu.safetensors"
    assert path.stat().st_size < 20 * 2**20
    metadata = read_metadata(path)
    assert metadata.architecture.upsample == "bilinear" and metadata.architecture.base_width == 24
    assert metadata.training["device"] == "cuda" and metadata.training["stopped_by_time_limit"]
    provenance = metadata.provenance
    sources = {p.split("/")[2] for p in provenance["train_scenes"]}
    assert sources == {"hotosm-ramp", "quebec-aerial-tiles", "spacenet-vegas-wv3", "spacenet-atlanta-sn4"}
    trained = "\n".join(provenance["train_scenes"] + provenance["train_labels"])
    assert "tiles/3/" not in trained and "tiles/4/" not in trained  # Nepal and the Philippines held out
    paths = [*provenance["train_scenes"], *provenance["train_labels"], *provenance["val_scenes"]]
    assert all(p.startswith("$GEOSEG_SAMPLE_DATA/labeled/") for p in paths)
    assert metadata.domain is not None and metadata.domain.gsd_max_m == pytest.approx(0.50, rel=1e-2)


@pytest.mark.parametrize("tta", ["none", "flips"])
def test_evaluate_scores_the_classes_predict_makes_with_the_same_tta(sample_data, tta):
    """A 256-px chip is one 256-px window: its IoU is that of ``Predictor(tta=…)``'s classes."""
    ramp = sample_data / "labeled" / "hotosm-ramp"
    chip, mask = ramp / "val-chips" / "OAM-1238424-1046544-21.tif", ramp / "val-binarymasks"
    val = DatasetConfig(images=str(chip), masks=str(mask / "{stem}.mask.tif"))
    metrics, _ = evaluate_checkpoint(SHIPPED_MODEL, [val], device="cpu", tta=tta)
    with rasterio.open(chip) as src, rasterio.open(mask / f"{chip.stem}.mask.tif") as truth:
        pixels, buildings = src.read(), truth.read(1) > 0
    predicted = Predictor.from_checkpoint(SHIPPED_MODEL, device="cpu", tta=tta).classify(pixels[None])[0] == 1
    assert metrics.iou == pytest.approx((predicted & buildings).sum() / (predicted | buildings).sum())
