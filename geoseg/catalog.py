"""Catalogs: which scenes a run reads (STAC or paths), and STAC catalogs geoseg writes.

Inputs are a STAC catalog, collection, item collection or item (local JSON; asset hrefs are
resolved against the file that holds them, as the STAC spec says), or a list of paths and
globs. pystac does the href resolution and catalog layout, which are easy to get subtly wrong.
"""

from __future__ import annotations

import glob
import json
import os
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.request import urlopen

import pystac
import rasterio
from pystac.layout import CustomLayoutStrategy
from pystac.stac_io import DefaultStacIO
from rasterio.warp import transform_bounds

from geoseg.atomic import atomic_output
from geoseg.errors import ConfigError, SceneError
from geoseg.safepaths import (
    NOT_A_REGULAR_FILE,
    check_replaceable,
    glob_files,
    inside,
    is_dataset_name,
    is_special_file,
    refuse_overwriting_inputs,
    safe_name,
)
from geoseg.sampledata import expand_variables
from geoseg.scenes import check_on_the_earth, scene_id

_TIFF_TYPES = ("image/tiff", "image/geotiff", "image/tiff; application=geotiff")


@dataclass(frozen=True)
class SceneInput:
    """One scene to process: its id (names the outputs) and where its pixels are."""

    id: str
    href: str
    error: str | None = None
    """Set when the input itself is unusable (e.g. a STAC item without the asset)."""


def load_inputs(
    inputs: str | Sequence[str],
    *,
    asset_key: str | None = None,
    base_dir: Path = Path("."),
    output: Path | None = None,
) -> list[SceneInput]:
    """Scenes named by a STAC file or by paths, folders (their GeoTIFFs) and globs (relative to
    ``base_dir``).

    Scenes named by path are identified as ``unique_ids`` does (the file stem, led by folder names
    where stems repeat: ``a/image.tif`` and ``b/image.tif`` are ``a-image`` and ``b-image``).
    Files a glob or a folder finds under ``output`` (the run's output folder) are not inputs: a
    run whose output lies under its inputs does not segment its own masks when run again.
    """
    entries = [inputs] if isinstance(inputs, str) else list(inputs)
    scenes: list[SceneInput] = []
    named: dict[Path, Path] = {}  # resolved → as named (a file named twice is one scene)
    excluded = output.resolve() if output is not None else None
    for entry in map(expand_variables, entries):
        if is_dataset_name(entry):  # a URL, /vsi… path or driver prefix: GDAL's, as given
            scenes.append(SceneInput(scene_id(Path(entry.replace('"', "")).name.replace(":", "-")), entry))
            continue
        path = Path(entry) if Path(entry).is_absolute() else base_dir / entry
        if path.suffix.lower() == ".json":
            scenes += _stac_inputs(path, asset_key)
        elif (folder := path.is_dir()) or glob.has_magic(str(path)):
            matches = _geotiffs_under(path) if folder else list(map(Path, glob_files(str(path))))
            if not matches:
                raise ConfigError(
                    f"inputs: {entry!r} " + ("holds no GeoTIFF" if folder else "matches no file")
                )
            for match in matches:
                resolved = match.resolve()
                if excluded is None or not resolved.is_relative_to(excluded):
                    named.setdefault(resolved, match)
        else:
            named.setdefault(path.resolve(), path)
    ids = unique_ids(list(named.values()))
    scenes += [SceneInput(i, str(f)) for f, i in zip(named, ids, strict=True)]
    _check_unique_ids(scenes)
    return scenes


def _geotiffs_under(folder: Path) -> list[Path]:
    """Every ``*.tif``/``*.tiff`` under ``folder``, sorted: what a folder names as scenes."""
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in (".tif", ".tiff"))


def _stac_inputs(path: Path, asset_key: str | None) -> list[SceneInput]:
    """The scenes of a STAC file; any problem is one ``ConfigError`` naming the file."""
    try:
        if is_special_file(path):
            raise ConfigError(f"inputs: {path} is {NOT_A_REGULAR_FILE}")
        document = json.loads(path.read_text())
        if not isinstance(document, dict):
            raise ConfigError(f"inputs: {path} is not a STAC object (a JSON {_json_kind(document)})")
        if document.get("type") == "FeatureCollection":
            if not isinstance(features := document.get("features"), list):
                raise ConfigError(f"inputs: {path} is a FeatureCollection whose 'features' is not a list")
            return [_feature_input(feature, number, asset_key) for number, feature in enumerate(features, 1)]
        stac = pystac.read_file(str(path), stac_io=_BoundedStacIO())
        if isinstance(stac, pystac.Item):
            return [_item_input(stac, asset_key)]
        if isinstance(stac, pystac.Catalog):  # collections are catalogs too
            return _catalog_inputs(stac, path, asset_key)
        raise ConfigError(f"inputs: {path} is a STAC {type(stac).__name__}, not a catalog of items")
    except FileNotFoundError as exc:
        raise ConfigError(f"inputs: STAC file {exc.filename or path} not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"inputs: {path} cannot be read ({exc})") from None
    except RecursionError:
        raise ConfigError(f"inputs: {path} is nested too deeply to be a STAC file") from None
    except _STAC_PROBLEMS as exc:
        raise ConfigError(f"inputs: {path} is not a readable STAC file ({_reason(exc)})") from None


_STAC_PROBLEMS = (ValueError, pystac.STACError, pystac.STACTypeError, KeyError, TypeError, AttributeError)
"""What pystac raises for a document that is not the STAC it claims to be."""


_JSON_KINDS = {type(None): "null", bool: "boolean", int: "number", float: "number", str: "string"}


def _json_kind(value: object) -> str:
    return _JSON_KINDS.get(type(value), "array" if isinstance(value, list) else type(value).__name__)


def _reason(exc: Exception) -> str:
    return f"missing field {exc}" if isinstance(exc, KeyError) else str(exc).splitlines()[0]


def _feature_input(feature: object, number: int, asset_key: str | None) -> SceneInput:
    """The scene of a FeatureCollection's ``number``th feature; a malformed one fails alone."""
    if not isinstance(feature, dict):
        return SceneInput(
            f"feature-{number}", "", f"STAC item is a JSON {_json_kind(feature)}, not an object"
        )
    try:
        return _item_input(pystac.Item.from_dict(feature), asset_key)
    except _STAC_PROBLEMS as exc:
        given = feature.get("id")
        scene_id = given if isinstance(given, str) and given.strip() else f"feature-{number}"
        return SceneInput(scene_id, "", f"not a readable STAC item ({_reason(exc)})")


def _catalog_inputs(catalog: pystac.Catalog, path: Path, asset_key: str | None) -> list[SceneInput]:
    """The scenes of every item under ``catalog``, following child links once each (link cycles
    are refused); an item that cannot be read or parsed fails alone."""
    scenes: list[SceneInput] = []
    seen: set[str] = set()
    stack = [catalog]
    while stack:
        node = stack.pop()
        href = node.get_self_href() or str(id(node))
        if href in seen:
            raise ConfigError(f"inputs: {path}: STAC links form a cycle through {href}")
        seen.add(href)
        for link in node.get_links(pystac.RelType.ITEM):
            try:
                link.resolve_stac_object(root=node.get_root())
                if not isinstance(link.target, pystac.Item):
                    raise TypeError(f"links to a {type(link.target).__name__} as an item")
                scenes.append(_item_input(link.target, asset_key))
            except (*_STAC_PROBLEMS, OSError, UnicodeDecodeError) as exc:
                scene_id = Path(link.href).stem or f"item-{len(scenes) + 1}"
                scenes.append(
                    SceneInput(scene_id, "", f"STAC item {link.href} cannot be read ({_reason(exc)})")
                )
        stack += reversed(list(node.get_children()))
    return scenes


def _item_input(item: pystac.Item, asset_key: str | None) -> SceneInput:
    if not isinstance(item.id, str) or not item.id.strip():
        raise ValueError(f"its id {item.id!r} cannot name outputs")
    if asset_key is not None:
        asset = item.assets.get(asset_key)
        if asset is None:
            return SceneInput(item.id, "", f"STAC item has no asset {asset_key!r} (asset_key)")
    else:
        candidates = [a for a in item.assets.values() if _is_geotiff(a)]
        if not candidates:
            return SceneInput(item.id, "", "STAC item has no GeoTIFF asset (set asset_key)")
        asset = next((a for a in candidates if "data" in (a.roles or [])), candidates[0])
    if not asset.href.strip():
        return SceneInput(item.id, "", "STAC asset has an empty href")
    return SceneInput(item.id, _local_href(asset.get_absolute_href() or asset.href))


def _href(path: Path) -> str:
    """A local file's absolute href: a URI, so "#", "?", "%" and spaces are escaped (pystac cut
    ``a#b.tif`` to ``a``); ``_local_href`` reads it back."""
    return urllib.parse.quote(str(path.resolve()))


def _local_href(href: str) -> str:
    """A local href with its percent-escapes decoded (``a%23b.tif`` is the file ``a#b.tif``),
    unless the file is named as written (catalogs that do not escape their hrefs)."""
    if is_dataset_name(href) or os.path.lexists(href):
        return href
    decoded = urllib.parse.unquote(href)
    return decoded if os.path.lexists(decoded) else href


def _is_geotiff(asset: pystac.Asset) -> bool:
    media = (asset.media_type or "").lower()
    return media.startswith(_TIFF_TYPES) or asset.href.lower().endswith((".tif", ".tiff"))


def _check_unique_ids(scenes: list[SceneInput]) -> None:
    seen: dict[str, str] = {}
    for scene in scenes:
        if scene.id in seen:
            raise ConfigError(
                f"inputs: two scenes have the id {scene.id!r} ({seen[scene.id]} and {scene.href}); "
                "outputs are named by id, so ids must be unique"
            )
        seen[scene.id] = scene.href


def build_catalog(
    paths: Sequence[str | os.PathLike[str]], out: str | os.PathLike[str], title: str = "geoseg scenes"
) -> tuple[Path, list[str]]:
    """Write a STAC catalog with one item per readable GeoTIFF; return it and the skipped files.

    A folder in ``paths`` contributes every ``*.tif``/``*.tiff`` under it. Asset hrefs are
    written relative to the catalog, so the catalog can move with its data.
    """
    files: list[Path] = []
    for entry in map(Path, paths):
        files += _geotiffs_under(entry) if entry.is_dir() else [entry]
    files = list({f.resolve(): f for f in files}.values())  # a file named twice is one scene
    check_replaceable(out)
    refuse_overwriting_inputs([out], files)
    catalog = pystac.Catalog(id=Path(out).parent.name or "scenes", description=title, title=title)
    skipped: list[str] = []
    for file, item_id in zip(files, unique_ids(files), strict=True):
        try:
            item = scene_item(file)
        except SceneError as exc:
            skipped.append(str(exc))
            continue
        item.id = item_id
        catalog.add_item(item)
    _save(catalog, Path(out))
    return Path(out), skipped


def unique_ids(files: Sequence[Path]) -> list[str]:
    """Scene ids for ``files``: the file stem; where stems repeat, with the file's extension if
    that is unique, else led by parent folder names.

    ``x.tif`` and ``x.jp2`` become ``x-tif`` and ``x-jp2``; ``a/x.tif`` and ``b/x.tif`` become
    ``a-x`` and ``b-x``, so no scene is lost to another's id.
    """
    stems = [scene_id(f) for f in files]
    names = [f.name for f in files]
    bases = [
        f"{stem}-{name.rsplit('.', 1)[-1]}" if stems.count(stem) > 1 and names.count(name) == 1 else stem
        for stem, name in zip(stems, names, strict=True)
    ]
    parents = [f.resolve().parent.parts[1:] for f in files]
    ids = bases
    depth = 0
    while len(set(ids)) < len(ids) and depth < max(map(len, parents), default=0):
        depth += 1
        repeated = {i for i in ids if ids.count(i) > 1}
        ids = [
            "-".join([*folders[-depth:], base]) if current in repeated else current
            for folders, base, current in zip(parents, bases, ids, strict=True)
        ]
    if len(set(ids)) < len(ids):
        raise ConfigError(f"scene ids are not unique even with their folders: {sorted(ids)}")
    return ids


def scene_item(path: Path, properties: dict[str, Any] | None = None) -> pystac.Item:
    """A STAC item for a GeoTIFF: footprint in lon/lat, projection info, an ``image`` asset."""
    if is_special_file(path):
        raise SceneError(path, f"is {NOT_A_REGULAR_FILE}")
    try:
        with rasterio.open(path) as ds:
            if ds.crs is None:
                raise SceneError(path, "has no CRS")
            check_on_the_earth(str(path), ds.crs, ds.transform, ds.width, ds.height)
            bbox = list(transform_bounds(ds.crs, "EPSG:4326", *ds.bounds, densify_pts=21))
            proj = {
                "proj:code": f"EPSG:{ds.crs.to_epsg()}" if ds.crs.to_epsg() else None,
                "proj:wkt2": None if ds.crs.to_epsg() else ds.crs.to_wkt(),
                "proj:shape": [ds.height, ds.width],
                "proj:transform": list(ds.transform)[:6],
            }
    except rasterio.errors.RasterioError as exc:
        raise SceneError(path, f"not a readable raster ({exc})") from None
    west, south, east, north = bbox
    item = pystac.Item(
        id=scene_id(path),
        geometry={
            "type": "Polygon",
            "coordinates": [[[west, south], [east, south], [east, north], [west, north], [west, south]]],
        },
        bbox=bbox,
        datetime=datetime.fromtimestamp(path.stat().st_mtime, tz=UTC),
        properties={**{k: v for k, v in proj.items() if v is not None}, **(properties or {})},
        stac_extensions=["https://stac-extensions.github.io/projection/v2.0.0/schema.json"],
    )
    item.add_asset(
        "image",
        pystac.Asset(_href(path), media_type=pystac.MediaType.GEOTIFF, roles=["data"]),
    )
    return item


_VECTOR_MEDIA = {
    ".geojson": pystac.MediaType.GEOJSON,
    ".gpkg": pystac.MediaType.GEOPACKAGE,
    ".parquet": pystac.MediaType.PARQUET,
    ".shp": "application/vnd.shp",
    ".fgb": pystac.MediaType.FLATGEOBUF,
}


def write_results_catalog(
    records: Sequence[Any], out: Path, model: str, parameters: dict[str, Any], metadata: Any
) -> tuple[Path, dict[str, str]]:
    """A STAC catalog of a run's results: per scene, its mask COG, vector files and quick-look.

    Returns it with, per scene id, why its mask could not be read (the scene is left out).
    """
    catalog = pystac.Catalog(id="geoseg-results", description=f"Segmentation results of {Path(model).name}")
    unreadable: dict[str, str] = {}
    for record in records:
        mask = Path(record.outputs["mask"])
        properties = {
            "geoseg:model": Path(model).name,
            "geoseg:classes": metadata.classes,
            "geoseg:parameters": parameters,
            "geoseg:input": record.input,
            "geoseg:polygons": record.polygons,
        }
        try:
            item = scene_item(mask, properties)
        except SceneError as exc:  # changed since its run, yet as large
            unreadable[record.id] = str(exc)
            continue
        item.id = record.id
        item.assets.pop("image")
        item.add_asset("mask", pystac.Asset(_href(mask), media_type=pystac.MediaType.COG, roles=["data"]))
        for vector in map(Path, record.outputs.get("vectors", [])):
            item.add_asset(
                f"vectors-{vector.suffix[1:]}",
                pystac.Asset(_href(vector), media_type=_VECTOR_MEDIA.get(vector.suffix), roles=["data"]),
            )
        if quicklook := record.outputs.get("quicklook"):
            item.add_asset(
                "quicklook",
                pystac.Asset(
                    _href(Path(quicklook)),
                    title="Quick-look: the scene with its predicted classes",
                    media_type=pystac.MediaType.PNG,
                    roles=["thumbnail", "overview"],
                ),
            )
        catalog.add_item(item)
    _save(catalog, out)
    return out, unreadable


def _save(catalog: pystac.Catalog, out: Path) -> None:
    """Save with items in ``<name>/<name>.json`` beside ``out`` and relative hrefs throughout.

    Item folders are named by ``safe_name`` of the item id (ids come from untrusted input),
    and every file is written atomically and only inside ``out``'s folder.
    """
    out = out.resolve()
    root = out.parent
    layout = CustomLayoutStrategy(
        item_func=lambda item, _: str(inside(root, safe_name(item.id), f"{safe_name(item.id)}.json"))
    )
    catalog.normalize_hrefs(str(root), strategy=layout)
    catalog.set_self_href(str(out))
    catalog.make_all_asset_hrefs_relative()
    catalog.save(catalog_type=pystac.CatalogType.SELF_CONTAINED, stac_io=_AtomicStacIO(root))


STAC_HTTP_TIMEOUT_S = 60.0
"""Seconds a linked STAC file's server may take to connect or answer."""


class _BoundedStacIO(DefaultStacIO):
    """pystac's reads of linked STAC files, none of which can wait forever.

    Links come from untrusted catalogs: pystac's own HTTP reads have no timeout (a silent
    server stalled a run for good), and opening a named pipe waits for a writer.
    """

    def read_text_from_href(self, href: str) -> str:
        """The UTF-8 text at ``href``: a URL read with a timeout, or a regular local file."""
        if "://" in href:
            if not href.lower().startswith(("http://", "https://")):
                raise OSError(f"{href}: only http(s) links are followed")
            with urlopen(href, timeout=STAC_HTTP_TIMEOUT_S) as response:
                text: str = response.read().decode("utf-8")
                return text
        if is_special_file(href):
            raise OSError(f"{href} is not a regular file")
        return super().read_text_from_href(href)


class _AtomicStacIO(DefaultStacIO):
    """pystac's file I/O, writing each JSON file atomically and only under ``root``."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root

    def write_text_to_href(self, href: str, txt: str) -> None:
        """Write ``txt`` to the local file ``href`` (temporary name, then rename)."""
        with atomic_output(inside(self.root, href)) as tmp:
            tmp.write_text(txt)
