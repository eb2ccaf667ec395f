"""scripts/leave-one-city-out: each held-out city is validated on and never trained on; twins differ in one field."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from geoseg.training.config import load_config

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "leave-one-city-out"


def test_each_city_is_held_out_and_the_twins_differ_only_in_the_adversarial_weight(tmp_path):
    subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), "--seeds", "1", "--ema-decay", "0.995"], check=True
    )
    for city, tiles in (("nepal", "tiles/3/"), ("philippines", "tiles/4/")):
        adversarial = load_config(tmp_path / f"{city}-adversarial-s1.yaml")
        supervised = load_config(tmp_path / f"{city}-supervised-s1.yaml")
        assert not any(tiles in e.images for e in adversarial.data.train)
        assert [e.images.split("labeled/")[1] for e in adversarial.data.val] == [
            "hotosm-ramp/val-chips/*.tif",
            f"hotosm-ramp/{tiles}*.png",
        ]
        # Kampala, Zanzibar, the other city, Québec, Las Vegas, Atlanta
        assert len(adversarial.data.train) == 6
        assert adversarial.training.adversarial_weight > 0 and supervised.training.adversarial_weight == 0
        assert (adversarial.training.seed, adversarial.training.ema_decay) == (1, 0.995)
        assert Path(str(adversarial.init_from)).name == "buildings-unet-base.safetensors"
        twins = [
            yaml.safe_load((tmp_path / f"{city}-{v}-s1.yaml").read_text())
            for v in ("adversarial", "supervised")
        ]
        for raw in twins:
            del raw["out"], raw["training"]["adversarial_weight"]
        assert twins[0] == twins[1]


def test_chip_size_batch_size_colour_jitter_zoom_out_and_the_blend_are_set_as_asked(tmp_path):
    """Larger chips at the same pixels per step (256-px chips, batch 2), colour jitter, zoom-out and
    the blend with the starting weights (MODEL_CARD.md)."""
    args = ("--seeds", "0", "--variants", "supervised", "--chip-size", "256", "--batch-size", "2")
    jitter = (
        "--color-jitter",
        "0.4",
        "--band-jitter",
        "0.3",
        "--zoom-out",
        "0.5",
        "--init-from-share",
        "0.5",
    )
    subprocess.run([sys.executable, str(SCRIPT), str(tmp_path), *args, *jitter], check=True)
    config = load_config(tmp_path / "nepal-supervised-s0.yaml")
    assert (config.data.chip_size_px, config.training.batch_size) == (256, 2)
    assert (config.data.color_jitter, config.data.band_jitter, config.data.zoom_out) == (0.4, 0.3, 0.5)
    assert config.init_from_share == 0.5
