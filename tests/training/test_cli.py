"""``geoseg train`` and ``geoseg evaluate`` end to end on a tiny real config."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import yaml
from typer.testing import CliRunner

from geoseg.cli import app
from geoseg.inference import Predictor


def test_train_then_predict_then_evaluate(sample_data, tiny_config_factory, tmp_path):
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(tiny_config_factory(tmp_path / "unused.safetensors")))
    out = tmp_path / "model.safetensors"
    result = CliRunner().invoke(
        app, ["train", str(config), "--out", str(out), "--steps", "2", "--device", "cpu"]
    )
    assert result.exit_code == 0, result.output
    assert "IoU" in result.output and str(out) in result.output
    assert "step 1/2: loss" in result.output  # no terminal here: plain progress lines

    predictor = Predictor.from_checkpoint(out, device="cpu")
    assert predictor.metadata.training["steps"] == 2
    ids, percent = predictor.predict(np.zeros((1, 3, 64, 64), dtype=np.uint8))
    assert ids.shape == percent.shape == (1, 64, 64)

    ramp = sample_data / "labeled" / "hotosm-ramp"
    result = CliRunner().invoke(
        app,
        [
            "evaluate",
            str(out),
            "--images",
            str(ramp / "val-chips" / "OAM-1238424-1046544-21.tif"),
            "--masks",
            str(ramp / "val-binarymasks" / "{stem}.mask.tif"),
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "boundary F1" in result.output and "1 scenes" in result.output


def test_a_config_mistake_is_one_line_naming_the_field(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(
        yaml.safe_dump(
            {"data": {"train": [{"images": "x/*.tif", "masks": "m"}]}, "training": {"batch_size": 0}}
        )
    )
    proc = subprocess.run(
        [sys.executable, "-c", "from geoseg.cli import main; main()", "train", str(config)],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0
    assert "train config: field 'training.batch_size'" in proc.stderr


def test_an_evaluate_mistake_names_the_option(tmp_path):
    def evaluate(*options: str) -> subprocess.CompletedProcess[str]:
        command = ["evaluate", "model.safetensors", "--images", "x/*.tif", *options]
        return subprocess.run(
            [sys.executable, "-c", "from geoseg.cli import main; main()", *command],
            capture_output=True,
            text=True,
            cwd=tmp_path,
        )

    pattern = evaluate("--masks", "m/{stem:>99}.tif")
    assert pattern.returncode == 2
    assert pattern.stderr.startswith("geoseg: error: evaluate: --masks: {stem:>99} is not a placeholder")
    neither = evaluate()
    assert neither.returncode == 2 and "give exactly one of 'masks' or 'labels'" in neither.stderr


def test_train_never_writes_its_checkpoint_over_its_own_config(tiny_config_factory, tmp_path):
    config = tmp_path / "tiny.yaml"
    text = yaml.safe_dump(tiny_config_factory(config))  # out: the config itself
    config.write_text(text)
    for extra in ([], ["--out", str(config)]):
        result = subprocess.run(
            [sys.executable, "-m", "geoseg", "train", str(config), *extra, "--device", "cpu"],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2 and "tiny.yaml" in result.stderr and "input" in result.stderr
        assert config.read_text() == text
