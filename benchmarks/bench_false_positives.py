"""Benchmark: false buildings of the shipped model on real building-free imagery (issue 12).

Each scene is predicted whole with ``predict_scene`` on the CPU, as ``geoseg predict`` would,
and measured inside its building-free part: a scene without buildings, or the part of one that
its labels say holds none (crop fields, flood water, land-cover polygons, > 2 m from labelled
buildings). The sample data has no building-free scene at the model's GSD; the Québec tiles and
New Brunswick clips (complete building labels, 0.15–0.5 m) give in-domain negatives that way.

* FP rate: the share of counted pixels predicted "building" (counted = valid mask pixels
  inside the building-free part, less pixels that are 0 in every band: unmarked collars);
* polygons: 8-connected building components touching the counted pixels (what ``geoseg run``
  would vectorise with ``min_area_m2: 0``), and per km² of counted pixels;
* the whole scene's building share and the 2×2 grid-phase spread of its mask, for context;
* where buildings are labelled, how many of them the model finds (notes under the table).

Scenes are read as the checkpoint's radiometry says (``geoseg.radiometry``: 16-bit pixels
stretched per band into the 8-bit range); scenes it scales are also predicted unscaled, which
shows what the scaling does beside the resolution mismatch. Band orders were checked by eye:
the Sentinel-2 Denmark and both Landsat files are stored blue, green, red.

    python benchmarks/bench_false_positives.py [--model PATH] [--threads 2] [--tta none|flips|dihedral]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import get_args

import geopandas as gpd
import numpy as np
import rasterio
import torch
from rasterio.features import rasterize
from scipy import ndimage

from geoseg.inference import Predictor
from geoseg.maskformat import NODATA
from geoseg.model_input import ModelInput, open_for_model
from geoseg.predict import predict_scene
from geoseg.sampledata import sample_data_dir
from geoseg.training.metrics import grid_phase_spread
from geoseg.units import ground_sampling_distance_m
from geoseg.vectorize.polygonize import label_components
from geoseg.workflow import TTA

DATA = sample_data_dir()
SHIPPED_MODEL = Path(__file__).parents[1] / "geoseg" / "models" / "buildings-unet.safetensors"
BUILDING = 1
SCALED = "pixel values scaled"
"""How the note of a scene scaled by the checkpoint's radiometry begins (``geoseg.radiometry``)."""

Region = Callable[[rasterio.DatasetReader], np.ndarray]
"""The building-free part of a scene as a boolean array on its grid."""


def whole_scene(src: rasterio.DatasetReader) -> np.ndarray:
    return np.ones(src.shape, dtype=bool)


def inside(polygons: gpd.GeoDataFrame, src: rasterio.DatasetReader, buffer_m: float = 0.0) -> np.ndarray:
    """Pixels whose centre lies inside ``polygons`` (optionally buffered, in the scene's CRS units)."""
    shapes = polygons.to_crs(src.crs).geometry
    if buffer_m:
        shapes = shapes.buffer(buffer_m)
    burnt = rasterize(((g, 1) for g in shapes), out_shape=src.shape, transform=src.transform, dtype="uint8")
    return burnt.astype(bool)


def danish_fields(src: rasterio.DatasetReader) -> np.ndarray:
    """The 276 mapped crop fields (the villages and farmsteads between them are left out)."""
    return inside(gpd.read_file(DATA / "labeled/s2-fields-denmark/data/marker2016_small.shp"), src)


def flood_water(src: rasterio.DatasetReader) -> np.ndarray:
    """Pixels hand-labelled water (flooded fields and the river) in Sen1Floods11."""
    labels = DATA / "labeled/sen1floods11-water/sample/Labels/Spain_7370579_LabelHand.tif"
    with rasterio.open(labels) as lab:
        water: np.ndarray = lab.read(1) == 1
    return water


def reservoir_and_fields(src: rasterio.DatasetReader) -> np.ndarray:
    """The north-east quarter of the Landsat 8 scene: a reservoir and farmland, no town.

    The rest of the scene holds a city (bottom left), which is not building-free.
    """
    region = np.zeros(src.shape, dtype=bool)
    region[:900, 1000:] = True
    return region


def new_brunswick_land(src: rasterio.DatasetReader) -> np.ndarray:
    """Land-cover polygons that are not buildings (forest, water, road, rail), 2 m off any building."""
    cover = gpd.read_file(DATA / "labeled/new-brunswick-landcover/landcover.gpkg")
    buildings = cover["Niveau_2"] == "Building"
    return inside(cover[~buildings], src) & ~inside(cover[buildings], src, buffer_m=2.0)


def new_brunswick_buildings(src: rasterio.DatasetReader, buffer_m: float = 0.0) -> np.ndarray:
    """Pixels of the 28 labelled buildings, optionally buffered (metres)."""
    cover = gpd.read_file(DATA / "labeled/new-brunswick-landcover/landcover.gpkg")
    return inside(cover[cover["Niveau_2"] == "Building"], src, buffer_m)


def quebec_buildings(tile: int) -> Callable[[rasterio.DatasetReader, float], np.ndarray]:
    """The building mask of Québec tile ``tile`` (``label_N.tif``), grown by a buffer in metres."""

    def buildings(src: rasterio.DatasetReader, buffer_m: float = 0.0) -> np.ndarray:
        with rasterio.open(DATA / f"labeled/quebec-aerial-tiles/label_{tile}.tif") as labels:
            mask: np.ndarray = labels.read(1) > 0
        steps = round(buffer_m / src.res[0])
        return ndimage.binary_dilation(mask, np.ones((3, 3)), iterations=steps) if steps else mask

    return buildings


def quebec_away_from_buildings(tile: int) -> Region:
    """Pixels of Québec tile ``tile`` farther than 2 m from its labelled buildings."""
    return lambda src: ~quebec_buildings(tile)(src, 2.0)


@dataclass(frozen=True)
class Case:
    """A scene, the bands that make it RGB, and its building-free part."""

    name: str
    path: Path
    bands: list[int]
    region: Region
    region_name: str
    buildings: Callable[[rasterio.DatasetReader, float], np.ndarray] | None = None


CASES = [
    *(
        Case(
            f"Québec aerial, image_{tile}",
            DATA / f"labeled/quebec-aerial-tiles/image_{tile}.tif",
            [1, 2, 3],
            quebec_away_from_buildings(tile),
            "> 2 m from labelled buildings",
            quebec_buildings(tile),
        )
        for tile in (1, 2)
    ),
    Case(
        "Sentinel-2 fields, Denmark",
        DATA / "labeled/s2-fields-denmark/data/RGB_small.tif",
        [3, 2, 1],
        danish_fields,
        "inside the field polygons",
    ),
    Case(
        "Sen1Floods11 S2, Spain",
        DATA / "labeled/sen1floods11-water/sample/S2/Spain_7370579_S2Hand.tif",
        [4, 3, 2],
        flood_water,
        "pixels labelled water",
    ),
    Case(
        "Landsat chip (Albers)",
        DATA / "labeled/landsat-albers/image.tif",
        [3, 2, 1],
        whole_scene,
        "whole chip (farmland)",
    ),
    Case(
        "Landsat 8 scene 224/078",
        DATA / "scenes/landsat8-224078-rgb.tif",
        [3, 2, 1],
        reservoir_and_fields,
        "NE quarter: reservoir, fields",
    ),
    Case(
        "New Brunswick aerial, clip 1",
        DATA / "labeled/new-brunswick-landcover/image_1of2.tif",
        [1, 2, 3],
        new_brunswick_land,
        "forest/water/road polygons",
        new_brunswick_buildings,
    ),
    Case(
        "New Brunswick aerial, clip 2",
        DATA / "labeled/new-brunswick-landcover/image_2of2.tif",
        [1, 2, 3],
        new_brunswick_land,
        "forest/water/road polygons",
        new_brunswick_buildings,
    ),
    Case(
        "edge/cogeo.tif", DATA / "edge/cogeo.tif", [1, 2, 3], whole_scene, "whole scene (snow, forest, road)"
    ),
    Case(
        "edge/RGB.byte.tif",
        DATA / "edge/RGB.byte.tif",
        [1, 2, 3],
        whole_scene,
        "whole scene (sea, cloud, land)",
    ),
]


@dataclass(frozen=True)
class Measurement:
    """What one prediction of one scene gave."""

    gsd_m: float
    warnings: list[str]
    counted_px: int
    counted_km2: float
    fp_rate: float
    polygons: int
    polygons_per_km2: float
    whole_share: float
    phase_spread: float
    seconds: float
    buildings: tuple[float, float, float] | None
    """Where buildings are labelled: the share of their pixels predicted building, of building
    predictions within 2 m of one, and of pixels farther than 2 m from all predicted building."""


def measure(case: Case, image: Path, bands: list[int], predictor: Predictor, folder: Path) -> Measurement:
    """Predict ``image`` whole and measure false buildings inside the case's building-free part."""
    prepared = open_for_model(image, ModelInput.of(predictor.metadata), bands)
    scene, warnings = prepared.scene, prepared.notes
    gsd_m = ground_sampling_distance_m(scene.crs, scene.transform, scene.width, scene.height)
    started = time.perf_counter()
    mask_path = predict_scene(image, predictor, folder / "mask.tif", bands=bands)
    seconds = time.perf_counter() - started
    with rasterio.open(mask_path) as mask:
        classes = mask.read(1)
    with rasterio.open(image) as src:
        blank = (src.read(bands) == 0).all(axis=0)
        region = case.region(src)
    valid = (classes != NODATA) & ~blank
    counted = valid & region
    building = classes == BUILDING
    in_region = np.where(counted, classes, NODATA).astype(np.uint8)
    labels, _ = label_components(in_region, connectivity=8)
    area_km2 = counted.sum() * gsd_m**2 / 1e6
    buildings = None
    if case.buildings is not None:
        with rasterio.open(image) as src:
            roofs, near_roofs = case.buildings(src, 0.0) & valid, case.buildings(src, 2.0)
        predicted = building & valid
        away = valid & ~near_roofs
        buildings = (
            float(building[roofs].mean()),
            float(near_roofs[predicted].mean()),
            float(building[away].mean()),
        )
    return Measurement(
        gsd_m=gsd_m,
        warnings=warnings,
        counted_px=int(counted.sum()),
        counted_km2=float(area_km2),
        fp_rate=float(building[counted].mean()),
        polygons=int(labels.max()),
        polygons_per_km2=float(labels.max() / area_km2),
        whole_share=float(building[valid].mean()),
        phase_spread=grid_phase_spread(building, valid),
        seconds=seconds,
        buildings=buildings,
    )


def measure_case(case: Case, predictor: Predictor) -> list[tuple[str, Measurement]]:
    """The scene read as the checkpoint says (its radiometry) and, when that scales it, as stored."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        scaled = measure(case, case.path, case.bands, predictor, folder)
        results = [("as the checkpoint reads it", scaled)]
        if any(w.startswith(SCALED) for w in scaled.warnings):
            metadata = predictor.metadata.model_copy(update={"radiometry": None})
            as_is = Predictor(predictor.model, metadata, predictor.device, tta=predictor.tta)
            results.append(("unscaled", measure(case, case.path, case.bands, as_is, folder)))
    return results


def _number(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:.2g}"


def warning_kinds(warnings: list[str]) -> str:
    kinds = [
        "GSD" if w.startswith("GSD") else "scaled" if w.startswith(SCALED) else "pixel stats"
        for w in warnings
    ]
    return "yes (" + ", ".join(kinds) + ")" if kinds else "no"


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=SHIPPED_MODEL)
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--tta", choices=get_args(TTA), default="none", help="test-time augmentation")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    predictor = Predictor.from_checkpoint(args.model, device="cpu", tta=args.tta)
    print(f"model {args.model}, TTA {args.tta}; CPU {cpu_name()}, {args.threads} torch threads")
    print()
    print(
        "| scene | input | GSD | warnings | building-free part | counted px (km²) | FP rate "
        "| polygons (/km²) | whole-scene building share | phase spread | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    notes = []
    for case in CASES:
        for label, m in measure_case(case, predictor):
            print(
                f"| {case.name} | {label} | {m.gsd_m:.3g} m | {warning_kinds(m.warnings)} "
                f"| {case.region_name} | {m.counted_px:,} ({_number(m.counted_km2)}) "
                f"| {100 * m.fp_rate:.1f} % | {m.polygons:,} ({_number(m.polygons_per_km2)}) "
                f"| {100 * m.whole_share:.1f} % | {m.phase_spread:.4f} | {m.seconds:.1f} |"
            )
            if m.buildings is not None:
                recall, near, away = m.buildings
                notes.append(
                    f"{case.name} ({label}): {100 * recall:.0f} % of the labelled building pixels "
                    f"predicted building; {100 * near:.0f} % of the predicted building pixels "
                    f"within 2 m of a labelled one; {100 * away:.1f} % of all pixels farther than 2 m "
                    "from any labelled building predicted building"
                )
            notes.extend(f"{case.name} ({label}): warning: {warning}" for warning in m.warnings)
    print()
    for note in notes:
        print(f"- {note}")


if __name__ == "__main__":
    main()
