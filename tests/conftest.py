"""Shared fixtures: the real sample data (``GEOSEG_SAMPLE_DATA``, default ``../shared/data``)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from geoseg.sampledata import sample_data_dir

REPO = Path(__file__).resolve().parents[1]
SHIPPED_MODEL = REPO / "geoseg" / "models" / "buildings-unet.safetensors"
BASE_MODEL = SHIPPED_MODEL.with_name("buildings-unet-base.safetensors")  # the shipped one starts from it


def sample_data_root() -> Path:
    """Where the real sample scenes live."""
    return sample_data_dir().resolve()


@pytest.fixture(scope="session")
def sample_data() -> Path:
    """The real sample data folder; tests that need it skip (loudly) when it is absent."""
    root = sample_data_root()
    if not (root / "README.md").exists():
        pytest.skip(f"real sample data not found at {root} (set GEOSEG_SAMPLE_DATA)")
    return root


def make_checkpoint(
    path: Path, pixels: np.ndarray, seed: int = 0, depth: int = 3, upsample: str = "transpose"
) -> Path:
    """An untrained generator whose outputs split ``pixels`` (bands, h, w) into both classes.

    Normalisation comes from the pixels; the head's bias is set to the median logit so the
    random network gives a non-trivial mask (a test that would pass on an all-zero mask is no
    test of seams).
    """

    import torch

    from geoseg.model.checkpoint import save_checkpoint
    from geoseg.model.metadata import ModelMetadata
    from geoseg.model.unet import UNetGenerator

    torch.manual_seed(seed)
    bands = pixels.shape[0]
    model = UNetGenerator(bands, 2, base_width=8, depth=depth, upsample=upsample).eval()
    flat = pixels.reshape(bands, -1).astype(np.float64)
    mean, std = flat.mean(axis=1), flat.std(axis=1) + 1e-6
    crop = pixels[:, :128, :128].astype(np.float32)
    with torch.no_grad():
        x = (
            torch.from_numpy(crop)[None] - torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        ) / torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        logits = model(x)
        model.head.bias -= logits.median()
    meta = ModelMetadata.for_generator(model, classes=["background", "thing"], mean=list(mean), std=list(std))
    return save_checkpoint(path, model, meta)


def vrt_of(source: str, path: Path) -> Path:
    """A 3-band 8 × 8 VRT at ``path`` whose every band reads band 1 of ``source`` (relative to it)."""
    bands = "".join(
        f'<VRTRasterBand dataType="Byte" band="{band}"><SimpleSource>'
        f'<SourceFilename relativeToVRT="1">{source}</SourceFilename><SourceBand>1</SourceBand>'
        "</SimpleSource></VRTRasterBand>"
        for band in (1, 2, 3)
    )
    path.write_text(
        '<VRTDataset rasterXSize="8" rasterYSize="8"><SRS>EPSG:32636</SRS>'
        f"<GeoTransform>500000, 0.3, 0, 100000, 0, -0.3</GeoTransform>{bands}</VRTDataset>"
    )
    return path


def raw_vrt_of(source: Path, path: Path) -> Path:
    """A 3-band 64 × 8 VRT at ``path`` whose raw bands read the bytes of any file ``source``."""
    band = (
        '<VRTRasterBand dataType="Byte" band="{}" subClass="VRTRawRasterBand">'
        f'<SourceFilename relativeToVRT="0">{source}</SourceFilename>'
        "<ImageOffset>0</ImageOffset><PixelOffset>1</PixelOffset><LineOffset>64</LineOffset></VRTRasterBand>"
    )
    path.write_text(
        '<VRTDataset rasterXSize="64" rasterYSize="8"><SRS>EPSG:32636</SRS>'
        "<GeoTransform>500000, 0.3, 0, 100000, 0, -0.3</GeoTransform>"
        + "".join(band.format(b) for b in (1, 2, 3))
        + "</VRTDataset>"
    )
    return path


def eleven_bit_copy(source: Path, out: Path) -> Path:
    """A real 8-bit scene re-encoded as an 11-bit sensor would store it (× 8 + 100, uint16)."""
    import rasterio

    with rasterio.open(source) as src:
        profile, pixels = src.profile, src.read()
    profile.update(dtype="uint16", nodata=None)
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(pixels.astype(np.uint16) * 8 + 100)
    return out


def reordered_copy(source, out, order, colours):
    """``source``'s bands in ``order`` (1-based; 0: a band of zeros), tagged with ``colours``."""
    import rasterio
    from rasterio.enums import ColorInterp

    with rasterio.open(source) as src:
        profile, pixels = src.profile, src.read()
    bands = [pixels[i - 1] if i else np.zeros_like(pixels[0]) for i in order]
    profile.update(count=len(bands), photometric="MINISBLACK")
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(np.stack(bands))
        dst.colorinterp = [ColorInterp[c] for c in colours]
    return out


def read_as_is(predictor):
    """``predictor`` without its checkpoint's radiometry: other pixel types reach it unscaled."""
    from geoseg.inference import Predictor

    metadata = predictor.metadata.model_copy(update={"radiometry": None})
    return Predictor(predictor.model, metadata, predictor.device, tta=predictor.tta)


def tiled_and_whole_masks(scene_path: str, predictor, folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """Class masks of a scene predicted in 128-px tiles with the receptive radius as halo, and whole."""
    import rasterio

    from geoseg.predict import predict_scene

    radius = predictor.metadata.receptive_radius_px
    tiled = predict_scene(
        scene_path, predictor, folder / "tiled.tif", tile_size_px=128, halo_px=radius, block_size_px=256
    )
    whole = predict_scene(scene_path, predictor, folder / "whole.tif", tile_size_px=4096)
    with rasterio.open(tiled) as a, rasterio.open(whole) as b:
        return a.read(1), b.read(1)


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A URL on a local server that accepts connections and never answers."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                accepted.append(server.accept()[0])
            except OSError:
                return

    threading.Thread(target=accept, daemon=True).start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}/scene.tif"  # any path: nothing is ever sent
    server.close()
    for connection in accepted:
        connection.close()
