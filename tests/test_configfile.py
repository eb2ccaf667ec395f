"""The one config loader: YAML in, a validated model out, every problem one line naming the field."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import BaseModel, ConfigDict, model_validator

from geoseg.configfile import FieldProblem, read_mapping, resolve_path, validate
from geoseg.errors import ConfigError


class Tiling(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tile_px: int = 512
    halo_px: int = 64

    @model_validator(mode="after")
    def _halo_smaller_than_tile(self) -> Tiling:
        if self.halo_px >= self.tile_px:
            raise FieldProblem("halo_px", "must be smaller than tile_px")
        return self


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    tiling: Tiling = Tiling()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("name: [unclosed", "not valid YAML"),
        ("- a list\n- of names", "a job is a mapping of fields"),
        ("", "a job is a mapping of fields"),
        ("name: " + "[" * 100_000 + "]" * 100_000, "nested too deeply to be a job"),
    ],
)
def test_a_file_that_is_not_a_yaml_mapping_is_one_line_naming_the_file(tmp_path, text, problem):
    path = tmp_path / "job.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=problem) as caught:
        read_mapping(path, "job")
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_a_missing_file_says_what_was_not_found(tmp_path):
    with pytest.raises(ConfigError, match=r"job\.yaml: job not found"):
        read_mapping(tmp_path / "job.yaml", "job")


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"name": "a", "tilling": {}}, "tilling", "unknown field"),
        ({"name": "a", "tiling": {"tile_px": "big"}}, "tiling.tile_px", "valid integer"),
        ({"tiling": {}}, "name", "Field required"),
        (
            {"name": "a", "tiling": {"tile_px": 64, "halo_px": 64}},
            "tiling.halo_px",
            "must be smaller than tile_px",
        ),
        ({"name": "a\0b", "tiling": {}}, "name", "contains a NUL character"),
        ({"name": "a", "paths": ["ok", "x\0y"]}, "paths.1", "contains a NUL character"),
    ],
)
def test_the_first_problem_names_the_nested_field(raw, field, message):
    with pytest.raises(ConfigError) as caught:
        validate(Job, raw, "job.yaml")
    line = str(caught.value)
    assert line.startswith(f"job.yaml: field '{field}': ") and message in line
    assert "Value error" not in line and "\n" not in line


def test_relative_paths_are_anchored_at_the_config_and_variables_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("GEOSEG_SAMPLE_DATA", "/data/samples")
    assert resolve_path("scenes/a.tif", tmp_path) == tmp_path / "scenes" / "a.tif"
    assert resolve_path("${GEOSEG_SAMPLE_DATA}/a.tif", tmp_path) == Path("/data/samples/a.tif")
    assert resolve_path("/abs/a.tif", tmp_path) == Path("/abs/a.tif")


def test_a_relative_sample_data_variable_is_taken_from_the_current_folder_not_the_configs(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEOSEG_SAMPLE_DATA", "samples")
    monkeypatch.setenv("GEOSEG_SAMPLE_DATA_OLD", "/old")
    config_folder = tmp_path / "configs"
    assert resolve_path("$GEOSEG_SAMPLE_DATA/a.tif", config_folder) == tmp_path / "samples" / "a.tif"
    assert resolve_path("$GEOSEG_SAMPLE_DATA_OLD/a.tif", config_folder) == Path("/old/a.tif")
