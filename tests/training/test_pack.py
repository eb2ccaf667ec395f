"""scripts/pack-trainset: the scenes of a config packed so that training from the pack sees the same data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import rasterio
import yaml

from geoseg.training.config import load_config, parse_config
from geoseg.training.trainer import prepare_data
from tests.training.conftest import tiny_config_dict

PACK_TRAINSET = Path(__file__).resolve().parents[2] / "scripts" / "pack-trainset"


@pytest.fixture
def packed(sample_data, tmp_path):
    """The tiny config with one vector-labelled web-map tile set more, and its pack."""
    raw = tiny_config_dict(sample_data, tmp_path / "m.safetensors")
    tiles = sample_data / "labeled" / "hotosm-ramp" / "tiles" / "3"
    raw["data"]["train"].append(
        {
            "images": str(tiles / "OAM-38669[78]-*-19.png"),
            "labels": str(tiles / "labels.geojson"),
            "georeference": "xyz",
        }
    )
    raw["init_from"] = str(tmp_path / "start.safetensors")  # a fine-tuning run's starting checkpoint
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump(raw))
    out = tmp_path / "pack"
    subprocess.run([sys.executable, str(PACK_TRAINSET), str(config), "--out", str(out)], check=True)
    return parse_config(raw, tmp_path), out


def test_pack_gives_the_same_chips_labels_and_provenance(packed):
    original, out = packed
    from_pack = load_config(out / "train.yaml")
    assert len(from_pack.data.train) == len(original.data.train) and from_pack.packed_from
    assert Path(str(from_pack.init_from)).resolve() == Path(str(original.init_from)).resolve()
    assert yaml.safe_load((out / "train.yaml").read_text())["init_from"] == "../start.safetensors"
    a, b = prepare_data(original), prepare_data(from_pack)
    assert a.provenance["counts"] == b.provenance["counts"]
    assert [c.positive_fraction for c in a.train_chips] == [c.positive_fraction for c in b.train_chips]
    for key in ("train_scenes", "train_labels", "val_scenes", "val_labels"):
        assert b.provenance[key] == a.provenance[key]
    assert b.provenance["pack"]["jpeg_quality"] == 85
    assert b.mean == pytest.approx(a.mean, abs=1.0) and b.std == pytest.approx(a.std, abs=1.0)
    assert (b.domain.gsd_min_m, b.domain.gsd_max_m) == pytest.approx((a.domain.gsd_min_m, a.domain.gsd_max_m))


def test_packed_scenes_are_jpeg_geotiffs_on_the_original_grid_with_uint8_masks(packed):
    _, out = packed
    manifest = json.loads((out / "pack.json").read_text())
    tile = next(p for p in sorted(out.glob("train-1-*/images/*.tif")))
    with rasterio.open(tile) as image, rasterio.open(str(tile).replace("/images/", "/masks/")) as mask:
        assert image.compression.name == "jpeg" and image.photometric.name == "ycbcr"
        assert image.crs.to_epsg() == 3857 and mask.transform == image.transform
        assert mask.dtypes[0] == "uint8" and mask.nodata == 255 and set(mask.read(1).ravel()) <= {0, 1}
    assert manifest["files"][tile.relative_to(out).as_posix()].endswith(f"tiles/3/{tile.stem}.png")
