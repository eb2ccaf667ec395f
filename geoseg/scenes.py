"""Scenes: open and validate a GeoTIFF, then read windows of it.

A ``Scene`` is a small immutable description (path, size, CRS, transform, bands, nodata) that
can travel to Dask workers; pixels are only ever read by window with ``read_window``, the one
window-reading function of the package. Validation happens up front and every failure is a
``SceneError`` naming the file and the reason.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from xml.etree import ElementTree

import numpy as np
import pyproj
import rasterio
from affine import Affine
from rasterio.crs import CRS
from rasterio.enums import ColorInterp, Interleaving, MaskFlags
from rasterio.errors import NodataShadowWarning, NotGeoreferencedWarning, RasterioError, RasterioIOError
from rasterio.transform import from_bounds
from rasterio.windows import Window

from geoseg.errors import SceneError
from geoseg.maskformat import CLASSES_TAG
from geoseg.model.metadata import NAMELESS_COLOURS
from geoseg.safepaths import NOT_A_REGULAR_FILE, is_special_file, local_file
from geoseg.units import footprint_area_m2, wgs84_transformer

if TYPE_CHECKING:
    from geoseg.radiometry import BandScaling

MAX_PIXELS_VARIABLE = "GEOSEG_MAX_SCENE_PIXELS"
DEFAULT_MAX_PIXELS = 16 * 2**30
"""Largest scene accepted (16 Gpx, e.g. 131 072²); ``$GEOSEG_MAX_SCENE_PIXELS`` changes it."""
_SCAN_PIXELS = 4 * 2**20
"""Pixels per window when validation scans a scene: memory stays bounded for any scene shape."""


@dataclass(frozen=True)
class Scene:
    """A validated raster scene (no pixels)."""

    path: str
    id: str
    width: int
    height: int
    crs: CRS
    transform: Affine
    dtype: str
    bands: tuple[int, ...]
    """1-based band indexes that are read (alpha bands excluded by default)."""
    nodata: float | None
    block_shape: tuple[int, int]
    colours: tuple[str, ...] = ()
    """GDAL's colour interpretation of each band read (``red``, ``nir``, ``gray``, ``undefined`` …)."""
    band_choice: str | None = None
    """How the bands were chosen by their colours, when not all the file's bands in its order."""
    scaling: BandScaling | None = None
    """How its raw pixels are scaled as they are read, for a model (``geoseg.radiometry``)."""
    alpha_band: int | None = None
    """A band the file calls alpha that GDAL's masks of ``bands`` ignore (a nodata value shadows
    it, or it is not the last of 2 or 4 bands): pixels where it is 0 are invalid too."""
    nodata_per_band: bool = False
    """Whether ``bands`` have different nodata values (validity then comes from GDAL's masks)."""
    one_strip: bool = False
    """Whether the file is one compressed strip, which GDAL serves as rows decoded from the top:
    every block read decodes all rows above it (``ONE_STRIP_NOTE``)."""

    @property
    def window(self) -> Window:
        """The whole scene as a window."""
        return Window(0, 0, self.width, self.height)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top) in the scene's CRS."""
        left, bottom, right, top = rasterio.windows.bounds(self.window, self.transform)
        return float(left), float(bottom), float(right), float(top)

    @property
    def area_m2(self) -> float:
        """Ground area of the scene's footprint in square metres."""
        return footprint_area_m2(self.crs, self.transform, self.width, self.height)


ONE_STRIP_NOTE = (
    "stored as one compressed strip: each block is decoded from the top of the image, so reading "
    "slows with its height; gdal_translate -co TILED=YES makes it fast"
)


def scene_id(path: str | os.PathLike[str]) -> str:
    """The id outputs are named after: the file name without its extension."""
    name = Path(str(path)).name
    for suffix in (".tif", ".tiff", ".TIF", ".TIFF", ".vrt", ".jp2", ".png", ".jpg", ".jpeg"):
        name = name.removesuffix(suffix)
    return name


def open_pixels(path: str) -> rasterio.DatasetReader:
    """Open a raster for reading pixels; a scene placed by ``georeference`` may lack its own."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        return rasterio.open(path)


def open_scene(
    path: str | os.PathLike[str],
    *,
    bands: Sequence[int] | None = None,
    expected_bands: int | None = None,
    colours: Sequence[str] | None = None,
    require_valid_pixels: bool = True,
    georeference: tuple[CRS, tuple[float, float, float, float]] | None = None,
) -> Scene:
    """Open ``path`` and check it can be segmented; raise ``SceneError`` naming the problem.

    Without ``bands``, the bands whose colour interpretations are the model's ``colours`` are read
    in that order, when the file names each of them once (``bands_by_colour``: a BGR file, red,
    green and blue of an RGB + near-infrared one); otherwise all non-alpha bands.
    ``expected_bands`` is the model's band count (given, the file is a model input: a mask
    geoseg wrote is refused as one).
    ``georeference`` (CRS, bounds) places a file whose position is known from elsewhere (an XYZ
    tile name: ``geoseg.xyz``); the file's own georeferencing, if any, is then ignored.
    """
    path = str(path)
    if "\0" in path:
        raise SceneError(path.replace("\0", "\\0"), "path contains a NUL character")
    if _is_standard_input(path):
        raise SceneError(path, "is standard input, not a scene file (a read would wait for a terminal)")
    if (file := local_file(path)) is not None:
        if not Path(file).exists():
            raise SceneError(path, "file not found")
        if is_special_file(file):
            raise SceneError(path, f"is {NOT_A_REGULAR_FILE}")
    try:
        with open_pixels(path) as ds:
            _check_sources(ds, path)
            scene = _describe(ds, path, bands, expected_bands, colours, georeference)
            _check_readable(ds, scene)
            if require_valid_pixels and not _has_valid_pixels(ds, scene):
                raise SceneError(path, "every pixel is nodata (nothing to segment)")
    except SceneError:
        raise
    except RasterioIOError as exc:
        raise SceneError(path, f"not a readable raster ({_first_line(exc)})") from None
    except RasterioError as exc:
        raise SceneError(path, f"cannot read ({_first_line(exc)})") from None
    return scene


def _describe(
    ds: rasterio.DatasetReader,
    path: str,
    bands: Sequence[int] | None,
    expected_bands: int | None,
    colours: Sequence[str] | None,
    georeference: tuple[CRS, tuple[float, float, float, float]] | None,
) -> Scene:
    crs, transform = ds.crs, ds.transform
    if georeference is not None:
        crs, transform = georeference[0], from_bounds(*georeference[1], ds.width, ds.height)
    elif ds.crs is None and (ds.gcps[0] or ds.rpcs):
        raise SceneError(
            path, "is placed by ground control points or RPCs only (warp it onto a grid first: gdalwarp)"
        )
    elif ds.crs is None and ds.subdatasets:
        names = ", ".join(ds.subdatasets[:3]) + (", …" if len(ds.subdatasets) > 3 else "")
        raise SceneError(path, f"holds {len(ds.subdatasets)} subdatasets ({names}): name one as the scene")
    elif ds.crs is None:
        raise SceneError(
            path,
            "has no CRS (georeference it first: web-map tiles named by their x-y-z address with "
            "`geoseg tiles mosaic` or `geoseg tiles georeference`, other images e.g. gdal_edit.py -a_srs)",
        )
    elif ds.transform == Affine.identity() and not ds.gcps[0]:
        raise SceneError(path, "has no geotransform (pixel coordinates are not georeferenced)")
    if not np.isfinite(transform[:6]).all() or transform.a == 0 or transform.e == 0:
        raise SceneError(path, f"has a degenerate geotransform (pixel size {transform.a} × {transform.e})")
    if transform.b != 0 or transform.d != 0:
        raise SceneError(path, "has a rotated geotransform (warp it to a north-up grid first)")
    check_on_the_earth(path, crs, transform, ds.width, ds.height)
    file_colours = [ci.name for ci in ds.colorinterp]
    band_choice, chosen_by_hand = None, bands
    if bands is None:
        listed = listed_bands(file_colours)
        chosen = bands_by_colour(file_colours, colours) if colours else None
        if chosen is not None and chosen != listed:
            band_choice = (
                f"read bands {', '.join(map(str, chosen))} of {ds.count} as {', '.join(colours or ())}, "
                "by the file's colour interpretation"
            )
        bands = chosen or listed
    bad = [b for b in bands if not 1 <= b <= ds.count]
    if bad:
        raise SceneError(path, f"bands {bad} do not exist (the file has {ds.count} bands)")
    if expected_bands is not None and CLASSES_TAG in ds.tags():
        raise SceneError(path, "is a geoseg mask (an earlier run's output), not a scene")
    if expected_bands is not None and "palette" in (file_colours[b - 1] for b in bands):
        raise SceneError(
            path, "is a palette (colour-table) image: expand it to RGB first (gdal_translate -expand rgb)"
        )
    if expected_bands is not None and len(bands) != expected_bands:
        how = "choose bands explicitly" if chosen_by_hand is None else f"choose {expected_bands}"
        raise SceneError(
            path, f"has {len(bands)} usable bands but the model expects {expected_bands} ({how})"
        )
    dtypes = {ds.dtypes[b - 1] for b in bands}
    if len(dtypes) > 1:
        raise SceneError(path, f"bands have mixed dtypes {sorted(dtypes)}")
    if np.dtype(next(iter(dtypes))).kind == "c":
        raise SceneError(path, f"has complex pixels ({dtypes.pop()}); convert to real bands first")
    if ds.width * ds.height > (limit := max_scene_pixels()):
        raise SceneError(
            path,
            f"is {ds.width}×{ds.height} px, more than the limit of {limit / 1e9:.3g} Gpx "
            f"(split it, or raise ${MAX_PIXELS_VARIABLE})",
        )
    block_h, block_w = ds.block_shapes[bands[0] - 1]
    if problem := _huge_blocks(ds, bands[0]):
        raise SceneError(path, f"has {problem}")
    alphas = [i + 1 for i, colour in enumerate(ds.colorinterp) if colour == ColorInterp.alpha]
    alpha_ignored = alphas and MaskFlags.alpha not in ds.mask_flag_enums[bands[0] - 1]
    nodatas = {"nan" if v is not None and math.isnan(v) else v for v in (ds.nodatavals[b - 1] for b in bands)}
    return Scene(
        path=path,
        id=scene_id(path),
        width=ds.width,
        height=ds.height,
        crs=crs,
        transform=transform,
        dtype=dtypes.pop(),
        bands=tuple(bands),
        nodata=ds.nodata,
        block_shape=(block_h, block_w),
        colours=tuple(file_colours[b - 1] for b in bands),
        band_choice=band_choice,
        alpha_band=alphas[0] if alpha_ignored else None,
        nodata_per_band=len(nodatas) > 1,
        one_strip=_is_one_compressed_strip(ds, bands[0]),
    )


def _is_one_compressed_strip(ds: rasterio.DatasetReader, band: int) -> bool:
    """A compressed GeoTIFF of one strip, which GDAL presents as one-row blocks, taller than
    two blocks of a run (below that, decoding from the top costs little)."""
    return (
        ds.driver == "GTiff"
        and ds.height > 4096
        and ds.block_shapes[band - 1][0] == 1
        and ds.tags(ns="IMAGE_STRUCTURE").get("COMPRESSION") not in (None, "NONE")
        and ds.get_tag_item("BLOCK_OFFSET_0_1", "TIFF", bidx=band) is None
    )


def _check_sources(ds: rasterio.DatasetReader, path: str, depth: int = 0) -> None:
    """Refuse a scene that reads a pipe, socket or device, e.g. a VRT whose source is a FIFO (its
    first read would wait forever), or a VRT raw band, which reads any file (a key, a password
    file) as pixels; also through nested VRTs. Opening a VRT reads no source."""
    if ds.driver != "VRT":
        return
    if _has_raw_band(ds):
        raise SceneError(path, f"reads a VRT raw band in {ds.name} (any file as pixels; not allowed)")
    for source in ds.files[1:]:
        if _is_standard_input(source):
            raise SceneError(path, f"reads {source}, which is standard input")
        file = local_file(source)
        if file is not None and is_special_file(file):
            raise SceneError(path, f"reads {source}, which is {NOT_A_REGULAR_FILE}")
        if not (_is_vrt_file(file) if file is not None else source.lower().endswith(".vrt")):
            if file is not None and (problem := _source_problem(source)):
                raise SceneError(path, f"reads {source}, which has {problem}")
            continue
        if depth == _MAX_VRT_NESTING:
            raise SceneError(path, f"nests VRTs more than {_MAX_VRT_NESTING} deep")
        with open_pixels(source) as inner:
            _check_sources(inner, path, depth + 1)


_MAX_VRT_NESTING = 8

MAX_BLOCK_BYTES = 256 * 2**20
"""The largest internal block accepted, decoded: a small file of one huge compressed tile would
otherwise make every window read decode gigabytes (a decompression bomb)."""


def _huge_blocks(ds: rasterio.DatasetReader, band: int) -> str | None:
    """What is wrong with the internal blocks of ``band``, when one decodes to more than
    ``MAX_BLOCK_BYTES``; else None."""
    block_h, block_w = ds.block_shapes[band - 1]
    decoded = block_h * block_w * np.dtype(ds.dtypes[band - 1]).itemsize
    if ds.interleaving == Interleaving.pixel:
        decoded *= ds.count  # a pixel-interleaved block holds every band
    if decoded <= MAX_BLOCK_BYTES:
        return None
    return (
        f"internal blocks of {block_w}×{block_h} px ({decoded / 2**20:.0f} MiB decoded each; every "
        "read decodes whole blocks): rewrite it in smaller tiles (gdal_translate -co TILED=YES)"
    )


def _source_problem(source: str) -> str | None:
    """Why a VRT's local source cannot be read safely (huge blocks), or None. Only its header is
    read; a source that does not open is left to the read, which names it."""
    try:
        with open_pixels(source) as ds:
            return next(filter(None, (_huge_blocks(ds, band) for band in ds.indexes)), None)
    except RasterioError:
        return None


def _is_vrt_file(path: str) -> bool:
    """Whether a local file is VRT XML, whatever its name (GDAL opens it by content; a remote
    source is taken for a VRT by its name only, which saves a request per source)."""
    try:
        with open(path, "rb") as file:
            return file.read(64).lstrip().startswith(b"<VRTDataset")
    except OSError:
        return False


def _has_raw_band(ds: rasterio.DatasetReader) -> bool:
    """Whether a VRT has a raw band (GDAL 3.10 has no setting that turns them off at run time)."""
    root = ElementTree.fromstring(ds.tags(ns="xml:VRT").get("xml:VRT", "<VRTDataset/>"))
    return any(band.get("subClass") == "VRTRawRasterBand" for band in root.iter("VRTRasterBand"))


def _is_standard_input(path: str) -> bool:
    return path.lower().startswith("/vsistdin")


_POLE_LATITUDE = 90 + 1e-6
"""Latitudes beyond this are off the Earth (the margin: global grids whose edges round past ±90°)."""


def check_on_the_earth(path: str, crs: CRS, transform: Affine, width: int, height: int) -> None:
    """Refuse a scene that cannot be placed on the Earth: a CRS that PROJ cannot relate to WGS 84
    (a local engineering grid), or corners that are no longitude and latitude there."""
    if (to_wgs84 := wgs84_transformer(crs)) is None:
        name = pyproj.CRS.from_user_input(crs).name
        raise SceneError(
            path,
            f"has a CRS that cannot be placed on the Earth ({name!r}; assign a geographic or projected one)",
        )
    corners = [transform @ corner for corner in [(0, 0), (width, 0), (0, height), (width, height)]]
    _, lats = to_wgs84.transform([x for x, _ in corners], [y for _, y in corners])
    if not all(math.isfinite(lat) and abs(lat) <= _POLE_LATITUDE for lat in lats):
        said = ", ".join("off the projection" if not math.isfinite(lat) else f"{lat:.6g}" for lat in lats)
        raise SceneError(
            path, f"has corners off the Earth (latitudes {said}; check its geotransform and CRS)"
        )


def listed_bands(file_colours: Sequence[str]) -> list[int]:
    """1-based indexes of the bands a scene is read as by default: all but alpha bands."""
    return [i for i, colour in enumerate(file_colours, start=1) if colour != ColorInterp.alpha.name]


def bands_by_colour(file_colours: Sequence[str], wanted: Sequence[str]) -> list[int] | None:
    """1-based indexes of the bands whose colour interpretation is each of ``wanted``, in its
    order; None unless each wanted colour names exactly one band (``gray`` or ``undefined`` name none)."""
    found = []
    for colour in wanted:
        matches = [i for i, c in enumerate(file_colours, start=1) if c == colour]
        if colour in NAMELESS_COLOURS or len(matches) != 1:
            return None
        found.append(matches[0])
    return found


def max_scene_pixels() -> int:
    """The largest scene accepted, in pixels (``$GEOSEG_MAX_SCENE_PIXELS`` or 16 Gpx)."""
    value = os.environ.get(MAX_PIXELS_VARIABLE, str(DEFAULT_MAX_PIXELS))
    try:
        pixels = float(value)
    except ValueError:
        pixels = math.nan
    if not (math.isfinite(pixels) and pixels >= 1):
        raise SceneError(MAX_PIXELS_VARIABLE, f"must be a number of pixels ≥ 1, got {value!r}")
    return int(pixels)


def _check_readable(ds: rasterio.DatasetReader, scene: Scene) -> None:
    """Decode the first and last internal blocks, so truncated files fail before any work."""
    bh, bw = scene.block_shape
    for row, col in ((0, 0), (scene.height - 1, scene.width - 1)):
        window = Window(col - col % bw, row - row % bh, bw, bh).intersection(scene.window)
        try:
            ds.read(list(scene.bands), window=window)
        except RasterioError as exc:
            raise _decode_error(scene, exc) from None


def _has_valid_pixels(ds: rasterio.DatasetReader, scene: Scene) -> bool:
    """True as soon as one window of the scene has a valid pixel; windows are a few Mpx each."""
    all_valid = all(flags == [MaskFlags.all_valid] for flags in ds.mask_flag_enums)
    if all_valid and not _is_float(scene):
        return True
    return any(_valid_mask(ds, scene, window).any() for window in _scan_windows(scene))


def _scan_windows(scene: Scene) -> Iterator[Window]:
    """Windows covering the scene, aligned to its internal blocks, of at most ``_SCAN_PIXELS``."""
    bh, bw = scene.block_shape
    width = min(scene.width, max(bw, 1024))
    height = min(scene.height, max(bh, 1024), max(1, _SCAN_PIXELS // width))
    for row in range(0, scene.height, height):
        for col in range(0, scene.width, width):
            yield Window(col, row, width, height).intersection(scene.window)


def _is_float(scene: Scene) -> bool:
    return np.dtype(scene.dtype).kind == "f"


def _valid_mask(
    ds: rasterio.DatasetReader, scene: Scene, window: Window, pixels: np.ndarray | None = None
) -> np.ndarray:
    """True where any band is valid (nodata, alpha, internal masks), the alpha band that GDAL
    ignores (if any) is not 0, and no band is NaN or ±Inf.

    GDAL's mask bands cost about three pixel reads; where the mask is only "every pixel" or
    "not the nodata value", it is computed from the pixels instead (same result, checked in tests).
    """
    flags = [ds.mask_flag_enums[band - 1] for band in scene.bands]
    bands = list(scene.bands)
    valid: np.ndarray
    if all(f == [MaskFlags.all_valid] for f in flags):
        valid = np.ones((int(window.height), int(window.width)), dtype=bool)
    elif all(f == [MaskFlags.nodata] for f in flags) and _one_exact_nodata(scene):
        pixels = ds.read(bands, window=window) if pixels is None else pixels
        valid = (pixels != np.asarray(scene.nodata).astype(pixels.dtype)).any(axis=0)
    else:
        with warnings.catch_warnings():  # a nodata value shadowing the alpha band: handled below
            warnings.simplefilter("ignore", NodataShadowWarning)
            valid = ds.read_masks(bands, window=window).any(axis=0)
    if scene.alpha_band is not None:
        valid &= ds.read([scene.alpha_band], window=window)[0] != 0
    if _is_float(scene):
        pixels = ds.read(bands, window=window) if pixels is None else pixels
        valid &= np.isfinite(pixels).all(axis=0)
    return valid


def _one_exact_nodata(scene: Scene) -> bool:
    """True when the bands share one nodata value that their dtype holds exactly (or NaN)."""
    if scene.nodata is None or scene.nodata_per_band:
        return False
    with np.errstate(invalid="ignore", over="ignore"):
        cast = np.asarray(scene.nodata).astype(scene.dtype)
    return bool(cast == scene.nodata) or (np.isnan(scene.nodata) and _is_float(scene))


def read_window(
    scene: Scene,
    window: Window,
    dataset: rasterio.DatasetReader | None = None,
    nodata_fill: Sequence[float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Pixels (bands, h, w) and validity (h, w) of ``window``, which may reach outside the scene.

    Pixels are scaled by the scene's ``scaling``, if it has one (float32 then). Outside the
    scene the pixels are the reflection of the scene about its edges (so a tile at the border
    sees what the whole-image prediction sees) and validity is False. Invalid pixels inside the
    scene are replaced by ``nodata_fill`` (one value per band, scaled units) when it is given.
    Pass an open ``dataset`` to avoid reopening the file for every window.
    """
    if dataset is None:
        with open_pixels(scene.path) as ds:
            return read_window(scene, window, ds, nodata_fill)
    inside = window.intersection(scene.window) if _overlaps(window, scene.window) else None
    if inside is None:
        raise SceneError(scene.path, f"window {window} lies outside the scene")
    try:
        pixels = dataset.read(list(scene.bands), window=inside)
        valid = _valid_mask(dataset, scene, inside, pixels)
    except RasterioError as exc:
        raise _decode_error(scene, exc) from None
    if scene.scaling is not None:
        pixels = scene.scaling.apply(pixels)
    if nodata_fill is not None and not valid.all():
        fill = np.asarray(nodata_fill, dtype=np.float64).astype(pixels.dtype)
        pixels = np.where(valid[None], pixels, fill[:, None, None])
    pad = (
        _padding(window.row_off, window.height, inside.row_off, inside.height),
        _padding(window.col_off, window.width, inside.col_off, inside.width),
    )
    if any(p for pair in pad for p in pair):
        pixels = np.pad(pixels, ((0, 0), *pad), mode="symmetric" if min(pixels.shape[1:]) == 1 else "reflect")
        valid = np.pad(valid, pad, mode="constant", constant_values=False)
    return pixels, valid


def _padding(outer_off: float, outer_size: float, inner_off: float, inner_size: float) -> tuple[int, int]:
    """Pixels to pad before and after ``inner`` to reach ``outer`` along one axis."""
    return int(inner_off - outer_off), int(outer_off + outer_size - inner_off - inner_size)


def _decode_error(scene: Scene, exc: BaseException) -> SceneError:
    return SceneError(scene.path, f"pixels cannot be decoded, corrupt or truncated ({_first_line(exc)})")


def _overlaps(a: Window, b: Window) -> bool:
    return bool(
        a.col_off < b.col_off + b.width
        and b.col_off < a.col_off + a.width
        and a.row_off < b.row_off + b.height
        and b.row_off < a.row_off + a.height
    )


def _first_line(exc: BaseException) -> str:
    """The most specific one-line message of a GDAL error (its cause, when chained)."""
    while exc.__cause__ is not None and "See previous exception" in str(exc):
        exc = exc.__cause__
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
