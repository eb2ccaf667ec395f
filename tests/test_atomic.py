"""Atomic outputs: a final name holds a complete file or nothing, never half of one."""

from __future__ import annotations

import os

import pytest

from geoseg.atomic import TMP_MARK, atomic_output, make_folder, remove_stale_temporaries
from geoseg.errors import OutputError


def test_a_successful_write_lands_under_the_final_name_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out" / "mask.tif"
    with atomic_output(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".") and TMP_MARK in tmp.name
        tmp.write_bytes(b"complete")
    assert target.read_bytes() == b"complete"
    assert os.listdir(target.parent) == ["mask.tif"]


def test_a_failed_write_keeps_the_previous_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "vectors.geojson"
    target.write_text("previous run")
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half of a fil")
        raise RuntimeError("killed mid-write")
    assert target.read_text() == "previous run"
    assert os.listdir(tmp_path) == ["vectors.geojson"]


def test_sidecars_written_beside_the_temporary_are_renamed_with_it(tmp_path):
    target = tmp_path / "buildings.shp"
    with atomic_output(target) as tmp:
        for suffix in (".shp", ".shx", ".dbf", ".prj"):
            tmp.with_suffix(suffix).write_text(suffix)
    assert sorted(os.listdir(tmp_path)) == [
        "buildings.dbf",
        "buildings.prj",
        "buildings.shp",
        "buildings.shx",
    ]
    assert (tmp_path / "buildings.prj").read_text() == ".prj"


def test_a_folder_under_the_target_name_is_refused_and_left_alone(tmp_path):
    (tmp_path / "mask.tif").mkdir()
    (tmp_path / "mask.tif" / "keep.txt").write_text("user data")
    with pytest.raises(OutputError, match="is a folder"), atomic_output(tmp_path / "mask.tif"):
        pass
    assert (tmp_path / "mask.tif" / "keep.txt").read_text() == "user data"


def test_make_folder_names_the_folder_it_cannot_create(tmp_path):
    (tmp_path / "a-file").write_text("")
    with pytest.raises(OutputError, match="a-file"):
        make_folder(tmp_path / "a-file" / "masks")


def test_only_geoseg_temporaries_of_the_runs_own_folders_are_swept_and_links_are_not_followed(tmp_path):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    for folder in (run / "masks" / "deep", run / "nested-run" / "masks", elsewhere):
        folder.mkdir(parents=True)
    stale = [
        run / "masks" / "deep" / f".a.tif.0123abcd{TMP_MARK}.tif",
        run / f".l.gpkg.0123abcd{TMP_MARK}.gpkg",
    ]
    kept = [
        elsewhere / f".b.tif.0123abcd{TMP_MARK}.tif",
        run / "nested-run" / "masks" / f".c.tif.0123abcd{TMP_MARK}.tif",  # a live run's, maybe
        run / "masks" / "a.tif",
        run / f"visible{TMP_MARK}.tif",
    ]
    for path in stale + kept:
        path.write_text("")
    (run / "masks" / "link").symlink_to(elsewhere, target_is_directory=True)
    (run / "vectors").symlink_to(elsewhere, target_is_directory=True)

    assert remove_stale_temporaries(run, ["masks", "vectors", "quicklooks"]) == 2
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)
