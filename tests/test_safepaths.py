"""Safe names and output paths: whatever a catalog calls a scene, geoseg writes only inside its output."""

from __future__ import annotations

import glob
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from geoseg.errors import OutputError
from geoseg.safepaths import (
    MAX_NAME_CHARS,
    check_output_folder,
    check_replaceable,
    glob_files,
    inside,
    is_dataset_name,
    local_file,
    name_clashes,
    refuse_overwriting_inputs,
    safe_name,
)

ids = st.text(min_size=0, max_size=300)
hostile_ids = st.one_of(
    ids,
    st.sampled_from(
        ["", ".", "..", "../..", "/", "/etc", "C:\\Windows", "CON", "nul.txt", "a/../../b", "\x00"]
    ),
    st.lists(st.sampled_from(["..", "/", "\\", ".", "a", "~", ":", "\n"]), max_size=12).map("".join),
)


@given(hostile_ids)
@settings(max_examples=500, deadline=None)
def test_a_safe_name_is_one_harmless_file_name_on_every_platform(scene_id):
    name = safe_name(scene_id)
    assert name and len(name) <= MAX_NAME_CHARS
    assert not name.startswith((".", "-"))
    assert ".." not in name
    assert not set(name) & set('/\\:*?"<>|\x00\n\r\t')
    assert all(ch.isascii() and ch.isprintable() for ch in name)


@given(hostile_ids, st.sampled_from(["masks", "vectors", "scenes", ".parts"]))
@settings(max_examples=300, deadline=None)
def test_every_path_built_from_an_id_stays_inside_the_output(tmp_path_factory, scene_id, folder):
    root = tmp_path_factory.getbasetemp() / "out"
    path = inside(root, folder, f"{safe_name(scene_id)}.tif")
    assert path.resolve().is_relative_to(root.resolve())
    assert path.parent.name == folder


@given(hostile_ids, hostile_ids)
@settings(max_examples=500, deadline=None)
def test_distinct_ids_never_share_a_file(first, second):
    if first != second:
        assert safe_name(first) != safe_name(second)


def test_plain_ids_keep_their_names():
    assert safe_name("OAM-1238424-1046544-21") == "OAM-1238424-1046544-21"
    assert safe_name("image_1of2") == "image_1of2"
    assert safe_name("RGB.byte") == "RGB.byte"


@pytest.mark.parametrize("scene_id", ["../../victim", "/abs/dir", "..", ".hidden", "CON", "a b", "x" * 500])
def test_unsafe_ids_are_cleaned_and_marked_with_a_hash(scene_id):
    name = safe_name(scene_id)
    assert name != scene_id and "~" in name


def test_ids_that_differ_only_in_case_clash_with_the_first_of_them():
    assert name_clashes(["Scene", "other", "scene", "SCENE"]) == {"scene": "Scene", "SCENE": "Scene"}
    assert name_clashes(["scene", "other", "scene"]) == {}  # one id twice is one scene


def test_a_link_inside_the_output_that_points_outside_is_refused(tmp_path):
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "masks").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OutputError, match="outside the output folder"):
        inside(tmp_path / "out", "masks", "a.tif")


def test_an_existing_folder_or_special_file_is_never_replaced(tmp_path):
    (tmp_path / "folder.tif").mkdir()
    os.mkfifo(tmp_path / "pipe.tif")
    with pytest.raises(OutputError, match="is a folder"):
        check_replaceable(tmp_path / "folder.tif")
    with pytest.raises(OutputError, match="not a regular file"):
        check_replaceable(tmp_path / "pipe.tif")
    check_replaceable(tmp_path / "new.tif")


def test_an_output_that_is_an_input_through_a_hard_link_is_refused(tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_bytes(b"pixels")
    os.link(scene, tmp_path / "mask.tif")
    with pytest.raises(OutputError, match="never overwrites an input"):
        refuse_overwriting_inputs([tmp_path / "mask.tif"], [scene])
    refuse_overwriting_inputs([tmp_path / "other.tif"], [scene])


@pytest.mark.parametrize("folder", ["/", "~", "~/"])
def test_a_filesystem_root_or_the_home_folder_is_no_output_folder(folder):
    with pytest.raises(OutputError, match="output: a filesystem root or the home folder"):
        check_output_folder(folder)


def test_a_folder_of_its_own_is_an_output_folder(tmp_path):
    check_output_folder(tmp_path / "out")
    check_output_folder(tmp_path)


def test_globs_find_what_glob_finds_but_never_loop_through_linked_folders(tmp_path):
    for name in ("a.tif", "sub/b.tif", "sub/deeper/c.tif", ".hidden/d.tif", "sub/.e.tif"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    pattern = f"{tmp_path}/**/*.tif"
    assert glob_files(pattern) == sorted(glob.glob(pattern, recursive=True))
    assert glob_files(f"{tmp_path}/sub/*.tif") == [f"{tmp_path}/sub/b.tif"]
    assert glob_files(f"{tmp_path}/sub/.*.tif") == sorted(glob.glob(f"{tmp_path}/sub/.*.tif"))
    assert glob_files(f"{tmp_path}/a.tif") == [f"{tmp_path}/a.tif"]
    assert set(glob_files(f"{tmp_path}/sub/**")) == set(glob.glob(f"{tmp_path}/sub/**/*", recursive=True))
    assert glob_files(f"{tmp_path}/none.tif") == []
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)  # glob.glob: every file again at every depth
    (tmp_path / "again").symlink_to(tmp_path)
    assert glob_files(pattern) == sorted(
        f"{tmp_path}/{name}" for name in ("a.tif", "sub/b.tif", "sub/deeper/c.tif")
    )


@pytest.mark.parametrize(
    ("name", "dataset", "file"),
    [
        ("scenes/a.tif", False, "scenes/a.tif"),
        ("C:/scenes/a.tif", False, "C:/scenes/a.tif"),
        ("odd:name.tif", False, "odd:name.tif"),
        ("/vsizip//data/z.zip/a.tif", True, None),
        ("https://example.com/a.tif", True, None),
        ('NETCDF:"/data/x.nc":red', True, "/data/x.nc"),
        ('HDF5:"/vsis3/bucket/x.h5"://red', True, None),
    ],
)
def test_gdal_dataset_names_are_told_from_paths_with_the_file_they_read(name, dataset, file):
    assert is_dataset_name(name) is dataset
    assert local_file(name) == file


def test_an_output_may_not_replace_the_file_inside_a_dataset_name(tmp_path):
    (tmp_path / "x.nc").write_bytes(b"")
    (tmp_path / "a.tif").write_bytes(b"")
    for name in (f'NETCDF:"{tmp_path / "x.nc"}":red', f"GTIFF_DIR:1:{tmp_path / 'a.tif'}"):
        with pytest.raises(OutputError, match="geoseg never overwrites an input"):
            refuse_overwriting_inputs([local_file(name)], [name])
