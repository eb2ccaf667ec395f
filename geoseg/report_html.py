"""The run's report page: ``report.html``, every scene with its picture, numbers and files.

One static HTML file at the root of the run's output folder: no script, no server, nothing
fetched from the network, and every link relative, so the folder can be moved, zipped or
served as it is. Per scene: its quick-look, status, error, warnings, building count and area,
and links to its mask, vector files and picture.
"""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from geoseg.atomic import atomic_output


class SceneResult(Protocol):
    """What the page shows of a scene (``SceneRecord`` has these fields)."""

    id: str
    input: str
    status: str
    error: str | None
    outputs: dict[str, str | list[str]]
    polygons: int | None
    building_area_m2: float | None
    warnings: list[str]


def format_area(m2: float | None) -> str:
    """``850 m²``, ``124 500 m²``, ``3.47 km²``, ``12 470 km²``: m² below a square kilometre."""
    if m2 is None:
        return ""
    if m2 < 1e6:
        return f"{format_count(round(m2))} m²"
    km2 = m2 / 1e6
    return f"{km2:.3g} km²" if km2 < 100 else f"{format_count(round(km2))} km²"


def format_count(count: int) -> str:
    """``12 345``: thousands separated by a space."""
    return f"{count:,}".replace(",", " ")


def write_report_html(
    scenes: Sequence[SceneResult],
    out: Path,
    title: str,
    facts: Sequence[tuple[str, str]],
    files: Mapping[str, str | None],
) -> Path:
    """Write the page to ``out`` (atomically); ``files`` are run-level files to link to."""
    page = render_report(scenes, out.parent, title, facts, files)
    with atomic_output(out) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return out


def render_report(
    scenes: Sequence[SceneResult],
    root: Path,
    title: str,
    facts: Sequence[tuple[str, str]],
    files: Mapping[str, str | None],
) -> str:
    """The page's HTML; links are relative to ``root`` and only to files under it."""
    run_links = " · ".join(
        _link(root, path, label) for label, path in files.items() if path and _under(root, path)
    )
    fact_items = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(v)}</dd></div>" for k, v in facts)
    cards = "\n".join(_card(root, scene) for scene in scenes)
    return _PAGE.format(
        title=_e(title), facts=fact_items, run_links=run_links, count=len(scenes), cards=cards
    )


def _card(root: Path, scene: SceneResult) -> str:
    outputs = scene.outputs or {}
    quicklook = outputs.get("quicklook")
    if isinstance(quicklook, str) and _under(root, quicklook):
        href = _href(root, quicklook)
        picture = f'<a href="{href}"><img src="{href}" alt="quick-look of {_e(scene.id)}"></a>'
    else:
        picture = '<div class="nopicture">no picture</div>'
    numbers = ""
    if scene.polygons is not None:
        numbers = (
            f"<dl><div><dt>buildings</dt><dd>{format_count(scene.polygons)}</dd></div>"
            f"<div><dt>building area</dt><dd>{_e(format_area(scene.building_area_m2))}</dd></div></dl>"
        )
    warnings = "".join(f"<li>{_e(w)}</li>" for w in scene.warnings)
    warning_list = f'<ul class="warnings">{warnings}</ul>' if warnings else ""
    error = f'<p class="error">{_e(scene.error)}</p>' if scene.error else ""
    paths = [outputs.get("mask"), *_as_list(outputs.get("vectors")), quicklook]
    links = " ".join(
        _link(root, p, Path(p).suffix.lstrip(".")) for p in paths if isinstance(p, str) and _under(root, p)
    )
    return (
        f'<article class="{_e(scene.status)}{" warned" if scene.warnings else ""}" id="{_e(scene.id)}">'
        f"{picture}"
        f'<h2>{_e(scene.id)} <span class="status">{_e(scene.status)}</span></h2>'
        f'{numbers}{warning_list}{error}<p class="files">{links}</p>'
        f'<p class="input" title="input">{_e(scene.input)}</p></article>'
    )


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _under(root: Path, path: str) -> bool:
    return Path(path).resolve().is_relative_to(root.resolve())


def _href(root: Path, path: str) -> str:
    return quote(Path(os.path.relpath(Path(path).resolve(), root.resolve())).as_posix())


def _link(root: Path, path: str, label: str) -> str:
    return f'<a href="{_href(root, path)}">{_e(label)}</a>'


def _e(text: str) -> str:
    return html.escape(text, quote=True)


_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 0 auto; padding: 1em 2em; max-width: 1600px;
  color: #1d1d1f; background: #f4f4f5; }}
h1 {{ font-size: 1.5em; margin: 0.2em 0; }}
dl {{ display: flex; flex-wrap: wrap; gap: 0.3em 1.5em; margin: 0.4em 0; }}
dl div {{ display: flex; gap: 0.4em; }} dt {{ color: #666; }} dd {{ margin: 0; font-weight: 600; }}
main {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(340px, 1fr)); gap: 1em; }}
article {{ background: white; border-radius: 6px; padding: 0.6em; border-top: 4px solid #888;
  box-shadow: 0 1px 3px rgba(0,0,0,.15); overflow-wrap: anywhere; }}
article.ok {{ border-top-color: #2e7d32; }} article.failed {{ border-top-color: #c62828; }}
article.warned {{ border-top-color: #e0a000; }}
article img {{ display: block; width: 100%; height: auto; }}
.nopicture {{ padding: 2em; text-align: center; background: #eee; color: #666; }}
h2 {{ font-size: 1.05em; margin: 0.5em 0 0.2em; }}
.status {{ font-size: 0.8em; padding: 0.1em 0.5em; border-radius: 1em; background: #888; color: white; }}
.ok .status {{ background: #2e7d32; }} .failed .status {{ background: #c62828; }}
.error {{ color: #c62828; }}
.warnings {{ color: #8a5a00; background: #fff4d6; padding: 0.3em 0.5em 0.3em 1.6em; margin: 0.4em 0; }}
.files a {{ margin-right: 0.6em; }} .input {{ color: #666; font-size: 0.85em; margin: 0; }}
</style>
</head>
<body>
<header>
<h1>{title}</h1>
<dl>{facts}</dl>
<p>{run_links}</p>
</header>
<main aria-label="{count} scenes">
{cards}
</main>
</body>
</html>
"""
