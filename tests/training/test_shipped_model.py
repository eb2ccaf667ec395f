"""The shipped building model: small, self-describing, and better than trivial on held-out chips."""

from __future__ import annotations

from geoseg.model.checkpoint import read_metadata
from geoseg.training.config import DatasetConfig
from geoseg.training.evaluate import evaluate_checkpoint
from tests.conftest import SHIPPED_MODEL


def test_shipped_model_is_small_and_describes_itself():
    assert SHIPPED_MODEL.stat().st_size < 5 * 2**20
    metadata = read_metadata(SHIPPED_MODEL)
    assert metadata.classes == ["background", "building"]
    assert metadata.architecture.base_width == 16 and metadata.architecture.depth == 3
    assert metadata.provenance["counts"]["train_scenes"] == 118
    assert metadata.provenance["counts"]["val_scenes"] == 29
    assert metadata.training["steps"] == metadata.training["config"]["training"]["steps"]
    assert metadata.metrics["validation"]["iou"] > 0.6


def test_shipped_model_beats_calling_everything_a_building(sample_data):
    ramp = sample_data / "labeled" / "hotosm-ramp"
    val = DatasetConfig.model_validate(
        {
            "images": str(ramp / "val-chips" / "OAM-1238424-104654*-21.tif"),
            "masks": str(ramp / "val-binarymasks" / "{stem}.mask.tif"),
        }
    )
    metrics, scenes = evaluate_checkpoint(SHIPPED_MODEL, [val], device="cpu")
    assert scenes >= 2
    assert metrics.iou > 0.6 and metrics.precision > 0.7
