"""Atomic outputs: a final name holds a complete file or nothing, never half of one."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pyogrio.errors
import pytest

from geoseg.atomic import (
    NAME_MAX_BYTES,
    TMP_MARK,
    atomic_output,
    make_folder,
    remove_dead_temporaries,
    remove_stale_temporaries,
    temporary_sibling,
)
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


SHAPEFILE = (".shp", ".shx", ".dbf", ".prj")


def _write_shapefile(target, text):
    with atomic_output(target) as tmp:
        for suffix in SHAPEFILE:
            tmp.with_suffix(suffix).write_text(text)


def _contents(folder):
    return {p.name: p.read_text() for p in sorted(folder.iterdir()) if p.is_file()}


def test_a_sidecar_target_that_is_a_folder_leaves_the_old_shapefile_whole(tmp_path):
    target = tmp_path / "v.shp"
    _write_shapefile(target, "old")
    (tmp_path / "v.prj").unlink()
    (tmp_path / "v.prj").mkdir()
    with pytest.raises(OutputError, match=r"v.prj: is a folder"):
        _write_shapefile(target, "new")
    assert _contents(tmp_path) == {"v.dbf": "old", "v.shp": "old", "v.shx": "old"}


def test_a_rename_that_fails_half_way_puts_every_old_file_back(tmp_path, monkeypatch):
    """The old files keep their names throughout (backups are hard links), so a reader never
    misses one, and a failed rename puts the old contents back."""
    target = tmp_path / "v.shp"
    _write_shapefile(target, "old")
    real_replace, calls = os.replace, []

    def replace(source, destination):
        calls.append(destination)
        if len(calls) == 2:  # one new file renamed in, the second fails
            raise OSError(5, "Input/output error")
        real_replace(source, destination)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OutputError, match=r"v.shp: cannot be written \(Input/output error\)"):
        _write_shapefile(target, "new")
    monkeypatch.undo()
    assert _contents(tmp_path) == dict.fromkeys(["v.dbf", "v.prj", "v.shp", "v.shx"], "old")


def test_a_new_shapefile_removes_the_old_ones_spatial_index(tmp_path):
    _write_shapefile(tmp_path / "v.shp", "old")
    (tmp_path / "v.qix").write_text("index of the old polygons")
    (tmp_path / "v.tif").write_text("a mask named like it")
    _write_shapefile(tmp_path / "v.shp", "new")
    assert _contents(tmp_path) == {
        **dict.fromkeys(["v.dbf", "v.prj", "v.shp", "v.shx"], "new"),
        "v.tif": "a mask named like it",
    }


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


@pytest.mark.parametrize("name", ["m" * 246 + ".tif", "é" * 123 + ".tif"])  # 250 and 250 bytes
def test_an_output_name_near_the_limit_gets_a_temporary_name_within_it(tmp_path, name):
    assert len(os.fsencode(temporary_sibling(tmp_path / name).name)) <= NAME_MAX_BYTES
    with atomic_output(tmp_path / name) as tmp:
        tmp.write_text("complete")
    assert os.listdir(tmp_path) == [name]


@pytest.mark.parametrize(
    ("error", "said"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), "no space left on the device"),
        (OSError(errno.EROFS, "Read-only file system"), "Read-only file system"),
        (
            pyogrio.errors.DataSourceError("sqlite3_exec(CREATE TABLE) failed"),
            "sqlite3_exec(CREATE TABLE) failed",
        ),
    ],
)
def test_an_error_raised_while_writing_names_the_output_not_its_temporary(tmp_path, error, said):
    with pytest.raises(OutputError) as raised, atomic_output(tmp_path / "v.gpkg"):
        raise error
    assert str(raised.value) == f"{tmp_path / 'v.gpkg'}: cannot be written ({said})"
    assert os.listdir(tmp_path) == []


def test_other_errors_raised_while_writing_pass_through_unchanged(tmp_path):
    with pytest.raises(ValueError, match="a bug"), atomic_output(tmp_path / "v.gpkg"):
        raise ValueError("a bug")


def test_only_temporaries_of_writers_gone_from_this_host_are_removed(tmp_path):
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    mine = temporary_sibling(tmp_path / "mask.tif")
    dead = Path(str(mine).replace(f"-{os.getpid()}-", f"-{int(gone.stdout)}-"))
    elsewhere = tmp_path / f".mask.tif.abcdef-{int(gone.stdout)}-0123abcd{TMP_MARK}.tif"  # another host
    huge = Path(str(mine).replace(f"-{os.getpid()}-", f"-{2**70}-"))  # a name no writer had: left
    for path in (mine, dead, elsewhere, huge, tmp_path / "mask.tif"):
        path.write_text("")
    assert remove_dead_temporaries(tmp_path) == 1
    assert not dead.exists() and mine.exists() and elsewhere.exists() and (tmp_path / "mask.tif").exists()
    assert huge.exists()
