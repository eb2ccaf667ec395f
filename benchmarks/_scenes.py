"""Benchmark inputs: large scenes mosaicked from real pixels, and the benchmark model.

Scenes repeat the real Landsat 8 scene of the sample data (``scenes/landsat8-224078-rgb.tif``,
2041×1860, 3 × uint16) stretched to uint8, to ``size``² pixels. Its no-data collar (zeros)
becomes nodata 0, so every copy keeps the real scene's edges and empty corners. They are
written strip by strip (memory bounded by one strip) as 512²-tiled, DEFLATE-compressed
GeoTIFFs like real COGs, and cached under ``benchmarks/.cache/``.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import rasterio
from rasterio.windows import Window

from geoseg.sampledata import sample_data_dir

DATA = sample_data_dir()
CACHE = Path(__file__).parent / ".cache"
SOURCE = DATA / "scenes" / "landsat8-224078-rgb.tif"
REPO = Path(__file__).parents[1]
SHIPPED_MODEL = Path(__file__).parents[1] / "geoseg" / "models" / "buildings-unet.safetensors"
_STRIP_PX = 512


def source_pixels() -> tuple[np.ndarray, dict[str, object]]:
    """The real scene stretched to uint8 (1..255, 0 = nodata) and its georeferencing (cached).

    The cached copy (6 MiB) is what travels to a lent GPU machine, where the sample data is not.
    """
    cached = CACHE / "landsat8-224078-rgb-uint8.tif"
    if cached.exists():
        with rasterio.open(cached) as src:
            return src.read(), {"crs": src.crs, "transform": src.transform}
    pixels, geo = _stretched()
    CACHE.mkdir(parents=True, exist_ok=True)
    profile = {"driver": "GTiff", "width": pixels.shape[2], "height": pixels.shape[1], "count": 3}
    with rasterio.open(
        cached, "w", **profile, dtype="uint8", tiled=True, compress="DEFLATE", predictor=2, zlevel=9, **geo
    ) as dst:
        dst.write(pixels)
    return pixels, geo


def _stretched() -> tuple[np.ndarray, dict[str, object]]:
    with rasterio.open(SOURCE) as src:
        raw = src.read()
        geo = {"crs": src.crs, "transform": src.transform}
    nodata = (raw == 0).all(axis=0)
    low, high = np.percentile(raw[:, ~nodata], [2, 98])
    stretched = np.clip((raw.astype(np.float32) - low) / (high - low) * 254 + 1, 1, 255).astype(np.uint8)
    stretched[:, nodata] = 0
    return stretched, geo


def mosaic_scene(size: int, compress: str = "DEFLATE", offset_px: int = 0) -> Path:
    """A ``size``² mosaic of the real scene (cached), shifted by ``offset_px``; built by strips."""
    path = CACHE / f"landsat8-mosaic-{size}-{compress.lower()}-{offset_px}.tif"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    pixels, geo = source_pixels()
    _, height, width = pixels.shape
    cols = (np.arange(size) + offset_px) % width
    tmp = path.with_suffix(".partial.tif")
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 3, "dtype": "uint8", "nodata": 0,
        "tiled": True, "blockxsize": 512, "blockysize": 512, "compress": compress, **geo,
    }  # fmt: skip
    if compress.upper() == "DEFLATE":
        profile["predictor"] = 2
    with rasterio.open(tmp, "w", **profile) as dst:
        for top in range(0, size, _STRIP_PX):
            rows = (np.arange(top, min(top + _STRIP_PX, size)) + offset_px) % height
            strip = pixels[:, rows][:, :, cols]
            dst.write(strip, window=Window(0, top, size, len(rows)))
    tmp.rename(path)
    return path


def benchmark_model(path: Path | None) -> tuple[Path, str]:
    """The checkpoint to benchmark and a description: ``path``, the shipped model, or untrained.

    The untrained fallback has the shipped architecture (U-Net, base width 16, depth 3, 3
    uint8 bands) with the head's bias set to the 90th-percentile logit, so about 10 % of the
    pixels are foreground, a building-like share (an empty mask would cost nothing to vectorise).
    """
    for candidate, what in ((path, "given"), (SHIPPED_MODEL, "shipped")):
        if candidate is not None and candidate.exists():
            return candidate.resolve(), f"{what} checkpoint {candidate}"
    return untrained_model(16, 3, "transpose"), "untrained U-Net (16, depth 3)"


def untrained_model(base_width: int, depth: int, upsample: str) -> Path:
    """An untrained U-Net checkpoint of this architecture, biased to ~10 % foreground (cached)."""
    path = CACHE / f"untrained-unet{base_width}-d{depth}-{upsample}-q90.safetensors"
    if path.exists():
        return path
    import torch

    from geoseg.model.checkpoint import save_checkpoint
    from geoseg.model.metadata import ModelMetadata
    from geoseg.model.unet import UNetGenerator

    torch.manual_seed(0)
    pixels, _ = source_pixels()
    valid = pixels[:, (pixels > 0).all(axis=0)].astype(np.float64)
    mean, std = valid.mean(axis=1), valid.std(axis=1) + 1e-6
    model = UNetGenerator(3, 2, base_width=base_width, depth=depth, upsample=upsample).eval()
    crop = torch.from_numpy(pixels[:, 600:856, 600:856].astype(np.float32))[None]
    with torch.no_grad():
        image = (crop - torch.tensor(mean).float().view(1, -1, 1, 1)) / torch.tensor(std).float().view(
            1, -1, 1, 1
        )
        model.head.bias -= model(image).quantile(0.9)
    meta = ModelMetadata.for_generator(
        model, classes=["background", "building"], mean=list(mean), std=list(std)
    )
    CACHE.mkdir(parents=True, exist_ok=True)
    return Path(save_checkpoint(path, model, meta))


def scene_megapixels(path: Path) -> float:
    """Pixels of a scene, in millions."""
    with rasterio.open(path) as src:
        return src.width * src.height / 1e6


def write_workflow(
    folder: Path,
    scenes: list[Path],
    model: Path,
    *,
    n_workers: int,
    threads_per_worker: int,
    device: str = "cpu",
    tile_size_px: int = 512,
    block_size_px: int = 2048,
    batch_size: int = 8,
    compile_model: bool = False,
    cpu_workers: int | None = None,
    outputs: dict[str, object] | None = None,
    precision: str = "fp32",
) -> Path:
    """A ``geoseg run`` workflow over ``scenes`` writing under ``folder/out`` (default outputs)."""
    import yaml

    workflow = {
        "inputs": [str(s) for s in scenes],
        "model": str(model),
        "output": str(folder / "out"),
        "inference": {
            "device": device,
            "batch_size": batch_size,
            "precision": precision,
            "compile_model": compile_model,
        },
        "tiling": {"tile_size_px": tile_size_px, "block_size_px": block_size_px},
        "cluster": {
            "n_workers": n_workers,
            "threads_per_worker": threads_per_worker,
            "dashboard_address": "127.0.0.1:0",
            "cpu_workers": cpu_workers,
        },
        **({"outputs": outputs} if outputs else {}),
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "workflow.yaml"
    path.write_text(yaml.safe_dump(workflow))
    return path


def worktree(ref: str) -> Path:
    """A detached git worktree of ``ref`` under the cache (for before/after runs): its root."""
    path = CACHE / f"worktree-{ref.replace('/', '_').replace('~', '_')}"
    if not path.exists():
        command = ["git", "-C", str(REPO), "worktree", "add", "--detach", str(path), ref]
        subprocess.run(command, check=True, capture_output=True)
    return path
