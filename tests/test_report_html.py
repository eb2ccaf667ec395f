"""The run's report page: every scene with its picture, numbers, warnings and relative links."""

import re
from html.parser import HTMLParser
from pathlib import Path

from geoseg.distributed.records import SceneRecord
from geoseg.report_html import format_area, render_report, write_report_html


class Page(HTMLParser):
    """The links, pictures and text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.hrefs: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []
        self.feed(html)

    def handle_starttag(self, tag, attrs):
        attributes = dict(attrs)
        if tag == "a":
            self.hrefs.append(attributes["href"])
        if tag == "img":
            self.images.append(attributes["src"])

    def handle_data(self, data):
        self.text.append(data)


def records(root: Path) -> list[SceneRecord]:
    ok = SceneRecord(
        id="kampala-1",
        input="/data/kampala-1.tif",
        status="ok",
        outputs={
            "mask": str(root / "masks/kampala-1.tif"),
            "vectors": [str(root / "vectors/kampala-1.gpkg"), "/elsewhere/kampala-1.geojson"],
            "quicklook": str(root / "quicklooks/kampala-1.png"),
        },
        polygons=1234,
        building_area_m2=56_789.4,
        warnings=["GSD 1 m is outside the model's 0.07–0.3 m range"],
    )
    failed = SceneRecord(
        id="<b>bad & broken</b>", input="/data/bad.tif", status="failed", error="bad.tif: no CRS"
    )
    return [ok, failed]


def test_every_scene_is_listed_with_its_status_numbers_warnings_and_error(tmp_path):
    page = Page(render_report(records(tmp_path), tmp_path, "geoseg run", [("model", "m")], {}))
    text = " ".join(page.text)
    for expected in ["kampala-1", "ok", "1 234", "56 789 m²", "outside the model", "failed", "no CRS"]:
        assert expected in text
    assert page.images == ["quicklooks/kampala-1.png"]


def test_links_are_relative_and_only_to_files_under_the_output_folder(tmp_path):
    files = {"run report": str(tmp_path / "run-report.json"), "elsewhere": "/tmp/other.gpkg", "none": None}
    page = Page(render_report(records(tmp_path), tmp_path, "geoseg run", [], files))
    assert page.hrefs == [
        "run-report.json",
        "quicklooks/kampala-1.png",
        "masks/kampala-1.tif",
        "vectors/kampala-1.gpkg",
        "quicklooks/kampala-1.png",
    ]


def test_names_from_the_data_are_escaped(tmp_path):
    html = render_report(records(tmp_path), tmp_path, "geoseg run", [], {})
    assert "<b>bad" not in html and "&lt;b&gt;bad &amp; broken&lt;/b&gt;" in html


def test_the_page_is_written_atomically_and_is_static(tmp_path):
    out = write_report_html(records(tmp_path), tmp_path / "report.html", "geoseg run", [], {})
    html = out.read_text()
    assert "<script" not in html and not re.search(r"(src|href)=\"(https?:)?//", html)
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_areas_read_in_square_metres_below_a_square_kilometre():
    assert format_area(None) == ""
    assert format_area(850.4) == "850 m²"
    assert format_area(124_500) == "124 500 m²"
    assert format_area(3_470_000) == "3.47 km²"
    assert format_area(12_470_000_000) == "12 470 km²"
