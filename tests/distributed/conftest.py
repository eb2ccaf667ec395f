"""Fixtures for batch runs on real local clusters: a model, real scenes, workflow files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from geoseg.scenes import open_scene, read_window
from tests.conftest import make_checkpoint

GOOD_SCENES = [
    "edge/RGB.byte.tif",
    "labeled/quebec-aerial-tiles/image_1.tif",
    "labeled/spacenet-vegas-wv3/image-RGB.tif",
]


@pytest.fixture(scope="session")
def rgb_checkpoint(sample_data, tmp_path_factory) -> Path:
    scene = open_scene(sample_data / "edge/RGB.byte.tif")
    pixels, _ = read_window(scene, scene.window)
    return make_checkpoint(tmp_path_factory.mktemp("models") / "rgb.safetensors", pixels)


def write_workflow(folder: Path, inputs, model: Path, **extra) -> Path:
    """A workflow with small blocks (several tasks per scene) and a free dashboard port."""
    workflow = {
        "inputs": [str(i) for i in inputs] if isinstance(inputs, list) else str(inputs),
        "model": str(model),
        "output": str(folder / "out"),
        "tiling": {"tile_size_px": 128, "block_size_px": 256},
        "outputs": {"vector_formats": ["gpkg", "geojson"]},
        "cluster": {"n_workers": 2, "dashboard_address": "127.0.0.1:0"},
        **extra,
    }
    path = folder / "workflow.yaml"
    path.write_text(yaml.safe_dump(workflow))
    return path


def geoseg(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "geoseg", *args], capture_output=True, text=True, **kwargs)
