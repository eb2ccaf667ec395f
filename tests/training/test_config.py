"""Training configs: YAML in, validated model out; every error names its field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from geoseg.errors import ConfigError
from geoseg.training.config import LinearConfig, UNetConfig, load_config, parse_config

MINIMAL = {"data": {"train": [{"images": "chips/*.tif", "masks": "masks/{stem}.tif"}]}}


def test_defaults_follow_the_literature(tmp_path):
    config = parse_config(MINIMAL, tmp_path)
    assert config.training.adversarial_weight == 0.01
    assert (config.training.lr_g, config.training.beta1) == (2e-4, 0.5)
    assert config.training.gan_mode == "hinge" and config.discriminator.spectral_norm
    assert config.training.warmup_steps > 0


def test_relative_paths_resolve_against_the_config_folder(tmp_path):
    config = parse_config(MINIMAL, tmp_path)
    assert config.data.train[0].images == str(tmp_path / "chips" / "*.tif")


def test_a_place_names_the_one_dataset_entry_under_it(tmp_path):
    raw = {
        "data": {
            "train": [
                {"images": "city-a/*.tif", "masks": "m/{stem}.tif"},
                {"images": "city-b/*.tif", "masks": "m/{stem}.tif"},
            ],
            "val": [{"images": "city-c/*.tif", "masks": "m/{stem}.tif"}],
        }
    }
    data = parse_config(raw, tmp_path).data
    assert data.entry_under("city-b/") == data.train[1] and data.entry_under("city-c/") == data.val[0]
    for place, found in (("city-", 3), ("city-d/", 0)):
        with pytest.raises(ConfigError, match=f"matches {found} dataset entries, not one"):
            data.entry_under(place)


@pytest.mark.parametrize("spelling", ["${GEOSEG_SAMPLE_DATA}", "$GEOSEG_SAMPLE_DATA"])
def test_sample_data_variable_is_expanded(tmp_path, monkeypatch, spelling):
    monkeypatch.setenv("GEOSEG_SAMPLE_DATA", "/data/here")
    raw = {"data": {"train": [{"images": f"{spelling}/chips/*.tif", "labels": "l.geojson"}]}}
    assert parse_config(raw, tmp_path).data.train[0].images == "/data/here/chips/*.tif"


def test_sample_data_variable_has_a_default(tmp_path, monkeypatch):
    monkeypatch.delenv("GEOSEG_SAMPLE_DATA", raising=False)
    raw = {"data": {"train": [{"images": "${GEOSEG_SAMPLE_DATA}/x.tif", "labels": "l.gpkg"}]}}
    assert parse_config(raw, tmp_path).data.train[0].images.endswith("shared/data/x.tif")


def test_error_names_the_nested_field(tmp_path):
    raw = {**MINIMAL, "training": {"steps": 0}}
    with pytest.raises(ConfigError, match=r"train config: field 'training\.steps'"):
        parse_config(raw, tmp_path)


@pytest.mark.parametrize("field", ["dice_weight", "time_limit_s", "lr_g"])
@pytest.mark.parametrize("value", [float("inf"), float("nan")])
def test_a_number_that_is_not_finite_is_refused_naming_the_field(tmp_path, field, value):
    raw = {**MINIMAL, "training": {field: value}}
    with pytest.raises(ConfigError, match=rf"field 'training\.{field}'"):
        parse_config(raw, tmp_path)


@pytest.mark.parametrize(
    ("pattern", "problem"),
    [
        ("masks/{stem:>99999999999}.tif", "{stem:>99999999999} is not a placeholder it knows"),
        ("masks/{stem.__class__}.tif", "{stem.__class__} is not a placeholder it knows"),
        ("masks/{0}.tif", "{0} is not a placeholder it knows"),
        ("masks/{stem", "not a path pattern"),
    ],
)
def test_a_mask_pattern_names_only_the_scene(tmp_path, pattern, problem):
    raw = {"data": {"train": [{"images": "chips/*.tif", "masks": pattern}]}}
    with pytest.raises(ConfigError, match=r"field 'data\.train\.0\.masks'") as caught:
        parse_config(raw, tmp_path)
    assert problem in str(caught.value)
    entry = {"images": "chips/*.tif", "masks": "masks/{{x}}{name}-{stem}-{stem[6]}.tif"}
    assert parse_config({"data": {"train": [entry]}}, tmp_path)


@pytest.mark.parametrize("bands", [[0, 1, 2], []])
def test_dataset_bands_are_one_based_and_not_empty(tmp_path, bands):
    raw = {"data": {"train": [{**MINIMAL["data"]["train"][0], "bands": bands}]}}
    with pytest.raises(ConfigError, match=r"field 'data\.train\.0\.bands"):
        parse_config(raw, tmp_path)


def test_class_names_must_be_distinct_before_training_starts(tmp_path):
    raw = {"data": {**MINIMAL["data"], "classes": ["background", "building", "building"]}}
    with pytest.raises(ConfigError, match=r"field 'data\.classes'.*distinct: building repeated"):
        parse_config(raw, tmp_path)


def test_unknown_field_is_named(tmp_path):
    raw = {**MINIMAL, "training": {"adversarial_wieght": 0.1}}
    with pytest.raises(ConfigError, match=r"training\.adversarial_wieght"):
        parse_config(raw, tmp_path)


def test_a_dataset_needs_exactly_one_label_source(tmp_path):
    raw = {"data": {"train": [{"images": "a/*.tif", "masks": "m/{stem}.tif", "labels": "b.gpkg"}]}}
    with pytest.raises(ConfigError, match=r"data\.train\.0.*exactly one of 'masks' or 'labels'"):
        parse_config(raw, tmp_path)


def test_gan_mode_is_one_of_three(tmp_path):
    with pytest.raises(ConfigError, match=r"training\.gan_mode"):
        parse_config({**MINIMAL, "training": {"gan_mode": "wgan"}}, tmp_path)


def test_yaml_file_with_overrides(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({**MINIMAL, "training": {"steps": 100}}))
    assert load_config(path, steps=7).training.steps == 7
    assert load_config(path).training.steps == 100


def test_missing_and_broken_files_are_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_shipped_workflows_are_valid_twins():
    workflows = Path(__file__).resolve().parents[2] / "workflows"
    adversarial = load_config(workflows / "train-buildings.yaml")
    supervised = load_config(workflows / "train-buildings-supervised.yaml")
    assert adversarial.adversarial and not supervised.adversarial
    assert adversarial.training.seed == supervised.training.seed
    assert adversarial.training.steps == supervised.training.steps
    assert adversarial.data == supervised.data


def test_the_shipped_models_config_and_its_twin_fine_tune_the_base_model_on_the_same_data():
    workflows = Path(__file__).resolve().parents[2] / "workflows"
    adversarial = load_config(workflows / "train-buildings-places.yaml")
    supervised = load_config(workflows / "train-buildings-places-supervised.yaml")
    assert adversarial.adversarial and not supervised.adversarial
    assert adversarial.data == supervised.data and adversarial.training.seed == supervised.training.seed
    assert adversarial.init_from == supervised.init_from
    assert Path(str(adversarial.init_from)).name == "buildings-unet-base.safetensors"
    assert adversarial.init_from_share == supervised.init_from_share == 0.5
    assert Path(adversarial.out).name == "buildings-unet.safetensors"


def test_gpu_config_adds_training_places_holds_out_the_same_ones_and_saves_float16():
    workflows = Path(__file__).resolve().parents[2] / "workflows"
    cpu = load_config(workflows / "train-buildings.yaml")
    gpu = load_config(workflows / "train-buildings-gpu.yaml")
    assert gpu.data.val == cpu.data.val and gpu.data.train[:2] == cpu.data.train
    assert len(gpu.data.train) > len(cpu.data.train)
    held_out = {Path(e.images).parent for e in gpu.data.val}
    assert not held_out & {Path(e.images).parent for e in gpu.data.train}
    assert cpu.data.loader_workers == 0 and gpu.data.loader_workers > 0
    assert gpu.training.mixed_precision and gpu.training.batch_size > cpu.training.batch_size
    assert gpu.generator.upsample == "bilinear" and gpu.training.weights_dtype == "float16"


def test_chip_sizes_must_fit_the_generator_stride(tmp_path):
    raw = {**MINIMAL, "generator": {"depth": 3}}
    raw["data"] = {**MINIMAL["data"], "chip_size_px": 100}
    with pytest.raises(
        ConfigError, match=r"field 'data\.chip_size_px': must be a multiple of the generator's stride 8"
    ):
        parse_config(raw, tmp_path)


def test_generator_name_picks_the_architecture_and_defaults_to_the_unet(tmp_path):
    assert parse_config(MINIMAL, tmp_path).generator == UNetConfig()
    assert parse_config({**MINIMAL, "generator": {"name": "linear"}}, tmp_path).generator == LinearConfig()


def test_the_linear_generator_fits_any_chip_size(tmp_path):
    raw = {**MINIMAL, "generator": {"name": "linear"}}
    raw["data"] = {**MINIMAL["data"], "chip_size_px": 99, "val_chip_size_px": 101, "block_size_px": 103}
    assert parse_config(raw, tmp_path).generator.total_stride == 1


@pytest.mark.parametrize("field", ["base_width", "depth", "upsample"])
def test_unet_fields_are_refused_for_the_linear_generator(tmp_path, field):
    raw = {**MINIMAL, "generator": {"name": "linear", field: 16}}
    with pytest.raises(ConfigError, match=rf"field 'generator\.{field}': unknown field$"):
        parse_config(raw, tmp_path)


def test_unknown_generator_name_is_refused(tmp_path):
    raw = {**MINIMAL, "generator": {"name": "transformer"}}
    with pytest.raises(ConfigError, match=r"field 'generator': name must be 'unet' or 'linear'$"):
        parse_config(raw, tmp_path)


def test_a_unet_field_error_names_the_field_as_written(tmp_path):
    with pytest.raises(ConfigError, match=r"field 'generator\.depth': Input should be less than"):
        parse_config({**MINIMAL, "generator": {"depth": 7}}, tmp_path)


@pytest.mark.parametrize(
    ("section", "values", "field"),
    [
        ("data", {"loader_workers": 10**6}, "data.loader_workers"),  # forked until memory ran out
        ("data", {"chip_size_px": 2**40}, "data.chip_size_px"),
        ("data", {"val_chip_size_px": 8192}, "data.val_chip_size_px"),  # 15.8 GB for one window
        ("data", {"classes": ["", "building"]}, "data.classes"),  # crashed after training
        ("data", {"classes": ["background", "bui\x1b[31mlding"]}, "data.classes"),
        ("data", {"classes": [f"c{i}" for i in range(300)]}, "data.classes"),
        ("generator", {"base_width": 4096}, "generator.base_width"),
        ("discriminator", {"base_width": 10**6}, "discriminator.base_width"),
        ("training", {"seed": -1}, "training.seed"),
        ("training", {"seed": 2**100}, "training.seed"),
        ("training", {"num_threads": 10**6}, "training.num_threads"),
        ("training", {"steps": 10**18}, "training.steps"),
        ("training", {"batch_size": 10**9}, "training.batch_size"),
    ],
)
def test_values_that_would_exhaust_the_machine_or_crash_later_are_refused_naming_the_field(
    tmp_path, section, values, field
):
    raw = {**MINIMAL, section: {**MINIMAL.get(section, {}), **values}}
    with pytest.raises(ConfigError, match=rf"field '{field}'"):
        parse_config(raw, tmp_path)
