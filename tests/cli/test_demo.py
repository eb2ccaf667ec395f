"""The README's main job: ``geoseg demo`` over the bundled catalog (real data) or synthetic scenes.

The bundled run is made once per module; its outputs are checked as a user would look at them:
the table on stdout, a quick-look per scene, and ``report.html`` opened in a real browser.
"""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote

import pytest
import rasterio
from PIL import Image

from geoseg.quicklook import MAX_PX
from geoseg.vectorize import read_features
from tests.conftest import SHIPPED_MODEL
from tests.test_report_html import Page

CHROMIUM = "/usr/bin/chromium"


def run_demo(cwd, *extra):
    """``geoseg demo --out demo`` run from ``cwd``: a relative output folder, as users type it."""
    command = [sys.executable, "-m", "geoseg", "demo", "--out", "demo", *extra]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd)


@pytest.fixture(scope="module")
def demo(sample_data, tmp_path_factory):
    """The bundled demo, run once: (its output folder, the finished process)."""
    cwd = tmp_path_factory.mktemp("demo")
    result = run_demo(cwd)
    assert result.returncode == 0, result.stderr
    return cwd / "demo", result


@pytest.fixture(scope="module")
def report(demo):
    return json.loads((demo[0] / "run-report.json").read_text())


def test_demo_writes_masks_vectors_report_and_says_which_data_it_used(demo, report):
    _, result = demo
    assert "real sample data" in result.stderr.splitlines()[0]
    assert report["summary"]["failed"] == 0 and report["summary"]["ok"] == 10
    assert report["model"] == str(SHIPPED_MODEL)
    for scene in report["scenes"]:
        with rasterio.open(scene["outputs"]["mask"]) as mask:
            assert mask.count == 2 and mask.crs is not None
        assert len(read_features(scene["outputs"]["vectors"][0])) == scene["polygons"]


def test_demo_shows_in_domain_scenes_and_flags_the_out_of_domain_ones(report):
    warned = [scene["id"] for scene in report["scenes"] if scene["warnings"]]
    assert warned == ["23429155_15", "RGB.byte"]
    assert all(scene["polygons"] > 0 for scene in report["scenes"])


def test_the_summary_table_is_on_stdout_with_building_count_and_area(demo, report):
    _, result = demo
    header = next(line for line in result.stdout.splitlines() if "scene" in line and "status" in line)
    for column in ("buildings", "building area", "scene area", "warnings"):
        assert column in header
    landsat = next(line for line in result.stdout.splitlines() if "RGB.byte" in line)
    assert landsat.count("km²") == 2  # building area, scene area
    totals = next(line for line in result.stdout.splitlines() if "buildings covering" in line)
    assert "in scenes with warnings" in totals  # the out-of-domain share is not passed off as buildings
    assert "report.html" in result.stdout
    assert "building area" not in result.stderr and "Dask dashboard" in result.stderr  # progress, logs


def test_every_scene_has_a_quicklook_png_that_decodes_and_is_small(report):
    for scene in report["scenes"]:
        with Image.open(scene["outputs"]["quicklook"]) as png:
            png.load()
            assert png.format == "PNG" and max(png.size) <= MAX_PX


def test_results_catalog_items_carry_their_quicklook_as_thumbnail(demo, report):
    for scene in report["scenes"]:
        item_path = demo[0] / "catalog" / scene["id"] / f"{scene['id']}.json"
        asset = json.loads(item_path.read_text())["assets"]["quicklook"]
        assert {"thumbnail", "overview"} <= set(asset["roles"]) and asset["type"] == "image/png"
        assert (item_path.parent / asset["href"]).resolve() == Path(scene["outputs"]["quicklook"])


def test_run_report_says_what_each_worker_did(report):
    workers = report["workers"].values()
    assert len(workers) == 2
    for worker in workers:
        assert worker["address"].startswith("tcp://") and worker["device"] == "cpu"
        assert worker["threads"] == 1
    # per scene: open + mask + vectors + finish; per block: predict + polygonise
    assert sum(w["tasks"] for w in workers) == 4 * len(report["scenes"]) + 2 * report["blocks"]
    assert sum(w["seconds"] for w in workers) > 0


def test_report_html_lists_every_scene_and_every_link_is_a_file_of_the_run(demo, report):
    output = demo[0]
    html = (output / "report.html").read_text()
    page = Page(html)
    for scene in report["scenes"]:
        assert f'id="{scene["id"]}"' in html
    assert len(page.images) == len(report["scenes"])
    for href in page.hrefs:
        target = (output / unquote(href)).resolve()
        assert target.is_relative_to(output.resolve()) and target.is_file(), href


def test_report_html_pictures_all_load_in_a_headless_browser(demo, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no {CHROMIUM} (.ci/run installs Debian's chromium; apt-get install chromium)")
    output = demo[0]
    check = output / "report-check.html"  # beside the report, so its relative links resolve
    probe = (
        '<script>addEventListener("load", () => { const p = Array.from(document.images);'
        " document.body.dataset.pictures = p.length;"
        " document.body.dataset.loaded = p.filter(i => i.complete && i.naturalWidth > 0).length; });"
        "</script></body>"
    )
    check.write_text((output / "report.html").read_text().replace("</body>", probe))
    dom = browse(tmp_path, "--dump-dom", check.as_uri())
    check.unlink()
    body = re.search(r'<body data-pictures="(\d+)" data-loaded="(\d+)"', dom)
    assert body, dom[-2000:]
    assert body.group(1) == body.group(2) != "0"
    screenshot = tmp_path / "report.png"
    browse(
        tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2000", (output / "report.html").as_uri()
    )
    with Image.open(screenshot) as png:
        assert png.size == (1280, 2000)
    print(f"screenshot of report.html: {screenshot}")


def browse(tmp_path: Path, *args: str) -> str:
    """Headless Chromium, offline and with a throw-away profile; returns its stdout."""
    profile = tmp_path / "chromium-profile"
    command = [
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
        *args,
    ]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_demo_without_sample_data_uses_synthetic_scenes_and_says_so(tmp_path):
    result = run_demo(tmp_path, "--synthetic")
    assert result.returncode == 0, result.stderr
    assert "synthetic demo scenes" in result.stderr.splitlines()[0]
    report = json.loads((tmp_path / "demo" / "run-report.json").read_text())
    assert report["summary"]["failed"] == 0 and report["summary"]["ok"] == 3
    assert all(Path(scene["outputs"]["quicklook"]).is_file() for scene in report["scenes"])
