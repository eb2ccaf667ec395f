"""Self-describing checkpoints: safetensors weights plus JSON metadata in the same file.

The metadata is ``geoseg.model.metadata`` (read and checked without torch); this module
writes checkpoints and rebuilds their networks. Loading never unpickles, and each tensor's
name, dtype and shape must equal the architecture's before any weight is read. Every refusal
is a one-line ``CheckpointError`` naming the file and the field.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from geoseg.atomic import atomic_output
from geoseg.errors import CheckpointError
from geoseg.model.architecture import Architecture, LinearArchitecture
from geoseg.model.linear import LinearSegmenter
from geoseg.model.metadata import METADATA_KEY, ModelMetadata, parse_metadata, read_header
from geoseg.model.unet import UNetGenerator

Generator = UNetGenerator | LinearSegmenter
"""The networks a checkpoint can hold."""
TensorLayout = Mapping[str, tuple[tuple[int, ...], bool]]
"""Each state-dict name's shape and whether it is floating point."""
_FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64"})


@functools.lru_cache(maxsize=16)
def tensor_layout(architecture: Architecture | LinearArchitecture) -> TensorLayout:
    """The tensors the architecture's network holds, known without allocating a weight (``meta``)."""
    with torch.device("meta"):
        model = generator_for(architecture)
    return {name: (tuple(t.shape), t.is_floating_point()) for name, t in model.state_dict().items()}


def build_generator(metadata: ModelMetadata) -> Generator:
    """An untrained generator with the checkpoint's architecture."""
    return generator_for(metadata.architecture)


def generator_for(arch: Architecture | LinearArchitecture) -> Generator:
    """An untrained generator that the architecture record describes."""
    if isinstance(arch, LinearArchitecture):
        return LinearSegmenter(arch.in_bands, arch.num_classes)
    return UNetGenerator(arch.in_bands, arch.num_classes, arch.base_width, arch.depth, arch.upsample)


def save_checkpoint(
    path: str | os.PathLike[str],
    model: Generator,
    metadata: ModelMetadata,
    float_dtype: torch.dtype | None = None,
) -> Path:
    """Write weights (floating ones cast to ``float_dtype`` if given) and metadata to one file, atomically.

    ``load_generator`` casts them back to the model's float32.
    """
    tensors = {}
    for name, tensor in model.state_dict().items():
        if float_dtype is not None and tensor.is_floating_point():
            tensor = tensor.to(float_dtype)
        tensors[name] = tensor.detach().cpu().contiguous()
    with atomic_output(path) as tmp:
        _write(tensors, metadata, tmp)
    return Path(path)


def _write(tensors: dict[str, torch.Tensor], metadata: ModelMetadata, path: Path) -> None:
    """The safetensors file, written by Python so that it gets the umask's mode like every other
    output (``safetensors.torch.save_file`` makes it 0600: unreadable to workers running as
    another user on a shared file system)."""
    path.write_bytes(save(tensors, metadata={METADATA_KEY: metadata.model_dump_json()}))


def rewrite_metadata(
    path: str | os.PathLike[str], metadata: ModelMetadata, out: str | os.PathLike[str] | None = None
) -> Path:
    """Write ``path``'s tensors as they are stored (same dtypes and bytes) with new ``metadata``
    to ``out`` (default: ``path``), atomically.

    Refused before anything is written unless ``path`` is a safetensors file whose tensors the new
    ``metadata``'s architecture describes (names, dtypes, shapes).
    """
    _check_tensors(Path(path), read_header(Path(path)), tensor_layout(metadata.architecture))
    tensors = load_file(os.fspath(path))
    target = Path(out or path)
    with atomic_output(target) as tmp:
        _write(tensors, metadata, tmp)
    return target


def load_generator(path: str | os.PathLike[str]) -> tuple[Generator, ModelMetadata]:
    """Rebuild the generator from a checkpoint, in eval mode on the CPU.

    Tensor names, dtypes and shapes are checked against the architecture before any weight is
    read, and the weights must be finite.
    """
    header = read_header(Path(path))
    metadata = parse_metadata(Path(path), header)
    _check_tensors(Path(path), header, tensor_layout(metadata.architecture))
    model = build_generator(metadata)
    try:
        state = load_file(str(path), device="cpu")
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError) as exc:
        reason = str(exc).splitlines()[0]
        raise CheckpointError(f"{path}: weights do not match the metadata: {reason}") from None
    for name, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise CheckpointError(f"{path}: bad tensor {name!r}: weights are not all finite")
        if name.endswith("running_var") and bool((tensor < 0).any()):
            raise CheckpointError(f"{path}: bad tensor {name!r}: a variance is negative")
    return model.eval(), metadata


def _check_tensors(path: Path, header: dict[str, Any], expected: TensorLayout) -> None:
    """Each tensor named as the architecture's, floating point where it is, of the same shape."""
    stored = {name: entry for name, entry in header.items() if name != "__metadata__"}
    missing = sorted(expected.keys() - stored.keys())
    unexpected = sorted(stored.keys() - expected.keys())
    if missing:
        raise CheckpointError(f"{path}: tensor {missing[0]!r} missing ({len(missing)} in all)")
    if unexpected:
        raise CheckpointError(f"{path}: unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all)")
    for name, (shape, floating) in expected.items():
        entry = stored[name] if isinstance(stored[name], dict) else {}
        dtype = entry.get("dtype")
        if floating and dtype not in _FLOAT_DTYPES:
            raise CheckpointError(f"{path}: bad tensor {name!r}: dtype {dtype} is not floating point")
        if not floating and dtype != "I64":
            raise CheckpointError(f"{path}: bad tensor {name!r}: dtype {dtype}, expected I64")
        if entry.get("shape") != list(shape):
            raise CheckpointError(
                f"{path}: bad tensor {name!r}: shape {entry.get('shape')}, the architecture has {list(shape)}"
            )
