"""The shipped building model: small, self-describing, and better than trivial, also in a place it never saw."""

from __future__ import annotations

import hashlib

import geopandas as gpd
import pytest
import rasterio

from geoseg.inference import Predictor
from geoseg.model.metadata import read_metadata
from geoseg.training.config import DatasetConfig
from geoseg.training.evaluate import evaluate_checkpoint
from tests.conftest import BASE_MODEL, SHIPPED_MODEL

UNSEEN_PLACES = ("spacenet-atlanta", "new-brunswick", "massachusetts")


def test_shipped_model_is_small_and_describes_itself():
    assert SHIPPED_MODEL.stat().st_size < 5 * 2**20
    metadata = read_metadata(SHIPPED_MODEL)
    assert metadata.classes == ["background", "building"]
    assert metadata.architecture.base_width == 16 and metadata.architecture.depth == 3
    counts = metadata.provenance["counts"]
    # Kampala chips, Zanzibar, Nepal and Philippines tiles, 2 Québec tiles, Las Vegas
    assert counts["train_scenes"] == 118 + 966 + 168 + 84 + 2 + 1
    assert counts["val_scenes"] == 29  # Kampala held-out chips
    config = metadata.training["config"]
    assert metadata.training["steps"] == config["training"]["steps"]
    assert config["training"]["adversarial_weight"] > 0
    assert metadata.metrics["validation"]["iou"] > 0.6  # "everything is a building" scores 0.53 there


def test_shipped_model_is_the_base_model_fine_tuned_on_every_place_and_blended_with_it():
    metadata = read_metadata(SHIPPED_MODEL)
    start = metadata.provenance["init_from"]
    assert start == {
        "checkpoint": "geoseg/models/buildings-unet-base.safetensors",
        "sha256": hashlib.sha256(BASE_MODEL.read_bytes()).hexdigest(),
    }
    assert metadata.training["config"]["init_from_share"] == 0.5
    assert metadata.normalization == read_metadata(BASE_MODEL).normalization
    trained = "\n".join(metadata.provenance["train_scenes"])
    assert "tiles/3/" in trained and "tiles/4/" in trained  # Nepal and the Philippines
    assert not any(place in trained for place in UNSEEN_PLACES)


def test_the_base_model_held_out_nepal_and_the_philippines():
    """The two-city model the shipped one was fine-tuned from (MODEL_CARD.md: "Results")."""
    metadata = read_metadata(BASE_MODEL)
    counts = metadata.provenance["counts"]
    assert counts["train_scenes"] == 118 + 966  # Kampala chips + Zanzibar web-map tiles
    assert counts["val_scenes"] == 29 + 168 + 84  # Kampala held-out chips + Nepal + Philippines tiles
    val_labels = "\n".join(metadata.provenance["val_labels"])
    assert "tiles/3/labels.geojson" in val_labels and "tiles/4/labels.geojson" in val_labels
    assert not any("tiles/3/" in p or "tiles/4/" in p for p in metadata.provenance["train_labels"])
    assert metadata.training["config"]["training"]["adversarial_weight"] > 0
    assert metadata.metrics["validation"]["iou"] > 0.4  # "everything is a building" scores 0.23 there


def test_shipped_model_records_its_training_domain_and_portable_provenance():
    """Zoom 19–21 web-map imagery (0.066 m in Nepal) to the 0.3 m Québec tile; uint8 RGB."""
    metadata = read_metadata(SHIPPED_MODEL)
    domain = metadata.domain
    assert domain is not None
    assert domain.gsd_min_m == pytest.approx(0.0661, rel=1e-2)  # zoom 21 in Nepal, 28° N
    assert domain.gsd_max_m == pytest.approx(0.30, rel=1e-2)  # Québec image_1
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
    assert len(paths) == 1339 + 124 + 29 + 29
    assert all(p.startswith("$GEOSEG_SAMPLE_DATA/labeled/") for p in paths)
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


def test_shipped_model_beats_calling_everything_a_building_in_a_place_it_never_saw(sample_data, tmp_path):
    """The New Brunswick clips (0.5 m aerial; the land cover's 28 buildings) were never trained on."""
    folder = sample_data / "labeled" / "new-brunswick-landcover"
    cover = gpd.read_file(folder / "landcover.gpkg")
    cover[cover["Niveau_2"] == "Building"][["geometry"]].to_file(tmp_path / "buildings.gpkg")
    val = DatasetConfig(images=str(folder / "image_*.tif"), labels=str(tmp_path / "buildings.gpkg"))
    metrics, scenes = evaluate_checkpoint(SHIPPED_MODEL, [val], device="cpu")
    assert scenes == 2
    assert metrics.iou > 0.3 and metrics.precision > 0.5  # trivial: IoU = precision = 0.02


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
