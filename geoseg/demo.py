"""The main job out of the box: a batch run over the bundled catalog on a local cluster.

With the real sample data present (``$GEOSEG_SAMPLE_DATA``), the run reads the bundled STAC
catalog ``catalogs/example/catalog.json`` of real scenes; without it (a fresh machine
offline), it first builds a few synthetic aerial-like scenes and a catalog of them, and says so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from scipy import ndimage

from geoseg.catalog import build_catalog, load_inputs
from geoseg.errors import ConfigError
from geoseg.workflow import Workflow, load_workflow

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_WORKFLOW = REPO / "workflows" / "example.yaml"


def demo_workflow(out: Path, synthetic: bool = False) -> tuple[Workflow, str]:
    """The example workflow writing under ``out``, and a sentence saying which data it uses."""
    if not EXAMPLE_WORKFLOW.exists():
        raise ConfigError(f"{EXAMPLE_WORKFLOW}: example workflow not found (run from a geoseg checkout)")
    out = out.resolve()  # the workflow resolves relative paths against its own folder
    workflow = load_workflow(EXAMPLE_WORKFLOW, output=str(out))
    catalog = workflow.resolve(str(workflow.inputs))
    if not synthetic and _all_assets_exist(catalog):
        return workflow, f"Using the real sample data through the bundled catalog {catalog}."
    scenes = write_demo_scenes(out / "demo-scenes")
    demo_catalog, _ = build_catalog(
        scenes, out / "demo-scenes" / "catalog.json", "geoseg synthetic demo scenes"
    )
    reason = "on request" if synthetic else f"the sample data behind {catalog} is not here"
    return (
        workflow.model_copy(update={"inputs": str(demo_catalog)}),
        f"Using {len(scenes)} synthetic demo scenes ({reason}); "
        "they show the pipeline, not the model's quality.",
    )


def _all_assets_exist(catalog: Path) -> bool:
    try:
        inputs = load_inputs(str(catalog))
    except ConfigError:
        return False
    return bool(inputs) and all(Path(scene.href).exists() for scene in inputs)


def write_demo_scenes(folder: Path, count: int = 3, size_px: int = 1024, seed: int = 0) -> list[Path]:
    """Synthetic 0.3 m RGB scenes (UTM 36N): textured ground with rectangular roofs."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for index in range(count):
        path = folder / f"demo-{index + 1}.tif"
        pixels = _demo_pixels(rng, size_px)
        transform = from_origin(450_000 + index * size_px * 0.3, 40_000, 0.3, 0.3)
        with rasterio.open(
            path,
            "w",
            driver="GTiff",
            width=size_px,
            height=size_px,
            count=3,
            dtype="uint8",
            crs="EPSG:32636",
            transform=transform,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            compress="DEFLATE",
        ) as dst:
            dst.write(pixels)
        paths.append(path)
    return paths


def _demo_pixels(rng: np.random.Generator, size: int) -> np.ndarray:
    noise = ndimage.gaussian_filter(rng.normal(size=(size, size)), 6)
    ground = np.stack([110 + 900 * noise, 105 + 700 * noise, 70 + 500 * noise])
    for _ in range(size * size // 6000):
        h, w = rng.integers(12, 40, size=2)
        y, x = rng.integers(0, size - 40, size=2)
        ground[:, y : y + h, x : x + w] = rng.integers(150, 230, size=3)[:, None, None]
    return np.clip(ground + rng.normal(0, 6, ground.shape), 0, 255).astype(np.uint8)
