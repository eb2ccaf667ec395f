"""A tiny real training config on a few HOT/RAMP chips (fast on 2 CPU cores)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from geoseg.training.config import TrainConfig, parse_config


def tiny_config_dict(sample_data: Path, out: Path, **training: Any) -> dict[str, Any]:
    """A few steps of a small generator on 8 train and 2 validation chips."""
    ramp = sample_data / "labeled" / "hotosm-ramp"
    return {
        "data": {
            "train": [
                {
                    "images": str(ramp / "chips" / "OAM-1238450-*.tif"),
                    "masks": str(ramp / "binarymasks" / "{stem}.mask.tif"),
                }
            ],
            "val": [
                {
                    "images": str(ramp / "val-chips" / "OAM-1238424-104654[45]-21.tif"),
                    "masks": str(ramp / "val-binarymasks" / "{stem}.mask.tif"),
                }
            ],
            "chip_size_px": 64,
            "chip_stride_px": 64,
            "val_chip_size_px": 128,
        },
        "generator": {"base_width": 8, "depth": 2},
        "discriminator": {"base_width": 8, "n_layers": 2},
        "training": {
            "steps": 4,
            "batch_size": 4,
            "warmup_steps": 0,
            "adversarial_weight": 0.1,
            "eval_every_steps": 2,
            "num_threads": 1,
            **training,
        },
        "out": str(out),
    }


@pytest.fixture
def tiny_config_factory(sample_data: Path, tmp_path: Path) -> Callable[..., dict[str, Any]]:
    """Build tiny config mappings with other ``training`` settings."""

    def build(out: Path | None = None, **training: Any) -> dict[str, Any]:
        return tiny_config_dict(sample_data, out or tmp_path / "tiny.safetensors", **training)

    return build


@pytest.fixture
def tiny_config(sample_data: Path, tmp_path: Path) -> TrainConfig:
    """The tiny adversarial config, writing its checkpoint under tmp_path."""
    return parse_config(tiny_config_dict(sample_data, tmp_path / "tiny.safetensors"), tmp_path)
