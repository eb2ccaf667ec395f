"""Workflow files: validated before any work, errors name the field, paths resolve."""

import re

import pytest

from geoseg.errors import ConfigError
from geoseg.workflow import dashboard_problem, load_workflow


def write(tmp_path, text):
    path = tmp_path / "wf.yaml"
    path.write_text(text)
    return path


def test_minimal_workflow_gets_defaults_and_resolves_paths_against_its_folder(tmp_path):
    wf = load_workflow(write(tmp_path, "inputs: scenes/*.tif\nmodel: m.safetensors\noutput: out\n"))
    assert wf.tiling.tile_size_px == 512 and wf.tiling.halo_px is None
    assert wf.outputs.vector_formats == ("gpkg", "geojson")
    assert wf.cluster.dashboard_address.startswith("127.0.0.1")
    assert wf.resolve(wf.output) == tmp_path / "out"


@pytest.mark.parametrize(
    "text,field",
    [
        ("inputs: a.tif\nmodel: m\noutput: o\ntileing: {}\n", "tileing"),
        ("inputs: a.tif\nmodel: m\noutput: o\ntiling: {tile_size_px: -5}\n", "tiling.tile_size_px"),
        (
            "inputs: a.tif\nmodel: m\noutput: o\noutputs: {vector_formats: [kml]}\n",
            "outputs.vector_formats.0",
        ),
        ("inputs: a.tif\nmodel: m\n", "output"),
        ("inputs: []\nmodel: m\noutput: o\n", "inputs"),
    ],
)
def test_bad_field_fails_naming_it(tmp_path, text, field):
    with pytest.raises(ConfigError, match=f"field '{field}'"):
        load_workflow(write(tmp_path, text))


def test_not_yaml_and_missing_file_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_workflow(write(tmp_path, "inputs: [unclosed\n"))
    with pytest.raises(ConfigError, match="workflow file not found"):
        load_workflow(tmp_path / "nope.yaml")


def test_fingerprint_changes_with_what_changes_outputs(tmp_path):
    (tmp_path / "m").write_bytes(b"x")
    base = load_workflow(write(tmp_path, "inputs: a.tif\nmodel: m\noutput: o\n"))
    other_tiles = load_workflow(
        write(tmp_path, "inputs: a.tif\nmodel: m\noutput: o\ntiling: {tile_size_px: 256}\n")
    )
    other_cluster = load_workflow(
        write(tmp_path, "inputs: a.tif\nmodel: m\noutput: o\ncluster: {n_workers: 4}\n")
    )
    resampled = load_workflow(
        write(tmp_path, "inputs: a.tif\nmodel: m\noutput: o\ninference: {resample: model}\n")
    )
    assert base.fingerprint() != other_tiles.fingerprint()
    assert base.fingerprint() != resampled.fingerprint()
    assert base.fingerprint() == other_cluster.fingerprint()


@pytest.mark.parametrize(
    ("text", "old", "new"),
    [
        ("tiling: {batch_size: 32}", "tiling.batch_size", "inference.batch_size"),
        ("cluster: {device: cpu}", "cluster.device", "inference.device"),
        ("tta: flips", "tta", "inference.tta"),
        ("precision: bf16", "precision", "inference.precision"),
        ("compile_model: true", "compile_model", "inference.compile_model"),
        ("resample: model", "resample", "inference.resample"),
    ],
)
def test_an_inference_setting_in_its_old_place_is_refused_naming_the_new_one(tmp_path, text, old, new):
    with pytest.raises(ConfigError, match=re.escape(f"field '{old}': moved: write it as {new}") + "$"):
        load_workflow(write(tmp_path, f"inputs: a.tif\nmodel: m\noutput: o\n{text}\n"))


def test_inference_settings_live_in_one_section(tmp_path):
    text = "inference: {device: cpu, batch_size: 32, precision: bf16, tta: flips, resample: model}\n"
    wf = load_workflow(write(tmp_path, f"inputs: a.tif\nmodel: m\noutput: o\n{text}"))
    assert (wf.inference.device, wf.inference.batch_size, wf.inference.precision) == ("cpu", 32, "bf16")
    assert (wf.inference.tta, wf.inference.resample, wf.inference.compile_model) == ("flips", "model", False)


def test_a_dashboard_host_of_another_machine_is_only_refused_where_a_local_cluster_would_bind_it(tmp_path):
    text = "inputs: a.tif\nmodel: m\noutput: o\ncluster: {dashboard_address: '8.8.8.8:8787'}\n"
    wf = load_workflow(write(tmp_path, text))  # a run on --scheduler never binds it
    assert "host '8.8.8.8' is not an address of this machine" in dashboard_problem(
        wf.cluster.dashboard_address
    )
    assert dashboard_problem("127.0.0.1:0") is None and dashboard_problem(":8787") is None
