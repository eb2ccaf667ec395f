"""Checkpoints: a round trip gives identical outputs; pickles and hostile files are refused, never loaded.

Every refusal is one line that names the file and the field or tensor at fault.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from geoseg.errors import CheckpointError
from geoseg.inference import Predictor
from geoseg.model.checkpoint import load_generator, save_checkpoint
from geoseg.model.discriminator import NLayerDiscriminator
from geoseg.model.metadata import Domain, ModelMetadata, read_metadata
from geoseg.model.unet import UNetGenerator
from tests.conftest import SHIPPED_MODEL


def _trained_looking_generator():
    torch.manual_seed(0)
    model = UNetGenerator(3, 2, base_width=8, depth=2)
    with torch.no_grad():  # non-default BatchNorm statistics must survive the round trip too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
    return model.eval()


def _metadata(model):
    return ModelMetadata.for_generator(
        model,
        classes=["background", "building"],
        mean=[100.0, 110, 120],
        std=[50.0, 40, 30],
        training={"steps": 3},
        provenance={"counts": {"train_chips": 9}},
        metrics={"validation": {"iou": 0.5}},
    )


def test_round_trip_gives_identical_outputs(tmp_path):
    model = _trained_looking_generator()
    path = save_checkpoint(tmp_path / "m.safetensors", model, _metadata(model))
    loaded, metadata = load_generator(path)
    image = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image), loaded(image))
    assert metadata == _metadata(model)
    assert read_metadata(path).receptive_radius_px == model.receptive_radius_px


def test_a_checkpoint_is_readable_like_any_other_output(tmp_path):
    """The umask decides its mode (0644 under 022), as for masks and vectors: workers running as
    another user on a shared file system can read it (safetensors' save_file made it 0600)."""
    from geoseg.model.checkpoint import rewrite_metadata

    model = _trained_looking_generator()
    previous = os.umask(0o022)
    try:
        path = save_checkpoint(tmp_path / "m.safetensors", model, _metadata(model))
        rewritten = rewrite_metadata(path, _metadata(model), tmp_path / "again.safetensors")
    finally:
        os.umask(previous)
    assert oct(path.stat().st_mode & 0o777) == oct(rewritten.stat().st_mode & 0o777) == oct(0o644)
    assert load_generator(rewritten)[1] == _metadata(model)


def test_new_metadata_must_describe_the_tensors_it_is_written_beside(tmp_path):
    from geoseg.model.checkpoint import rewrite_metadata

    model = _trained_looking_generator()
    path = save_checkpoint(tmp_path / "m.safetensors", model, _metadata(model))
    wider = _metadata(UNetGenerator(3, 2, base_width=16, depth=2))
    with pytest.raises(CheckpointError, match=r"bad tensor .*: shape .*, the architecture has"):
        rewrite_metadata(path, wider, tmp_path / "never.safetensors")
    assert not (tmp_path / "never.safetensors").exists()


def test_float16_checkpoint_is_half_the_size_and_predicts_like_the_float32_one(tmp_path):
    from safetensors import safe_open

    from geoseg.inference import Predictor

    model = _trained_looking_generator()
    full = save_checkpoint(tmp_path / "f32.safetensors", model, _metadata(model))
    half = save_checkpoint(tmp_path / "f16.safetensors", model, _metadata(model), torch.float16)
    with safe_open(str(half), "pt") as f:
        assert f.get_slice("head.weight").get_dtype() == "F16"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_generator(half)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    tiles = torch.rand(2, 3, 64, 64).mul(255).numpy()
    (ids_full, prob_full), (ids_half, prob_half) = (
        Predictor.from_checkpoint(path, device="cpu").predict(tiles) for path in (full, half)
    )
    assert (ids_full != ids_half).mean() < 0.002
    assert abs(prob_full.astype(int) - prob_half).max() <= 2


def test_pickled_checkpoint_is_refused(tmp_path):
    model = _trained_looking_generator()
    path = tmp_path / "evil.safetensors"
    torch.save(model.state_dict(), path)
    with pytest.raises(CheckpointError, match="pickled"):
        load_generator(path)


def test_a_named_pipe_as_checkpoint_is_refused_without_waiting_for_a_writer(tmp_path):
    pipe = tmp_path / "model.safetensors"
    os.mkfifo(pipe)
    with pytest.raises(CheckpointError, match="not a regular file"):
        read_metadata(pipe)


def test_weights_that_do_not_match_the_metadata_are_refused(tmp_path):
    model = _trained_looking_generator()
    other = UNetGenerator(3, 2, base_width=4, depth=2)
    path = save_checkpoint(tmp_path / "m.safetensors", other, _metadata(model))
    with pytest.raises(CheckpointError, match=r"'encoders\.0\.0\.weight': shape \[4, 3, 3, 3\]"):
        load_generator(path)


def test_patch_discriminator_scores_patches_of_image_and_mask():
    critic = NLayerDiscriminator(3 + 1, base_width=8, n_layers=3, spectral_norm=True)
    scores = critic(torch.randn(2, 3, 64, 64), torch.rand(2, 1, 64, 64))
    assert scores.shape == (2, 1, 6, 6)
    assert any("parametrizations" in name for name, _ in critic.named_parameters())


@pytest.mark.parametrize("low_byte", [0x80, 0x50])
def test_checkpoint_whose_header_size_starts_like_a_pickle_still_loads(tmp_path, low_byte):
    """The header size's first byte is arbitrary: 0x80 (pickle) or 'P' (zip) must not be refused."""
    model = _trained_looking_generator()
    for pad in range(0, 512, 8):
        path = save_checkpoint(
            tmp_path / "m.safetensors",
            model,
            _metadata(model).model_copy(update={"training": {"pad": "x" * pad}}),
        )
        if path.read_bytes()[0] == low_byte:
            break
    else:
        pytest.fail(f"no padding gave a header size with low byte {low_byte:#x}")
    loaded, _ = load_generator(path)
    assert read_metadata(path).training["pad"] == "x" * pad
    image = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(image), loaded(image))


def test_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights")
    with pytest.raises(CheckpointError, match="not a safetensors checkpoint"):
        load_generator(path)


# Hostile checkpoints: each is refused with one line naming the file and the field.


def _linear_tensors(in_bands=3, channels=1):
    return {"head.weight": torch.ones(channels, in_bands, 1, 1), "head.bias": torch.zeros(channels)}


def _linear_metadata(**changes):
    meta = {
        "format": "geoseg-checkpoint/1",
        "architecture": {"name": "linear", "in_bands": 3, "num_classes": 2},
        "classes": ["background", "water"],
        "bands": [1, 2, 3],
        "normalization": {"mean": [0.0, 0.0, 0.0], "std": [1.0, 1.0, 1.0]},
        "total_stride": 1,
        "receptive_radius_px": 0,
    }
    return {**meta, **changes}


def _unet_metadata(**changes):
    model = UNetGenerator(3, 2, base_width=4, depth=2)
    return {**json.loads(_metadata(model).model_dump_json()), **changes}


def _save(path, tensors, metadata):
    save_file(tensors, str(path), metadata={"geoseg": json.dumps(metadata)})
    return path


def _raw_file(path, header: bytes, data: bytes = b""):
    path.write_bytes(len(header).to_bytes(8, "little") + header + data)
    return path


def _norm(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)):
    return {"mean": list(mean), "std": list(std)}


def _domain(**changes):
    three = [1.0, 2.0, 3.0]
    return {
        "gsd_min_m": 0.3,
        "gsd_max_m": 0.6,
        "mean": three,
        "std": three,
        "p1": three,
        "p99": three,
        **changes,
    }


HOSTILE_METADATA = {
    "stride-0": (_unet_metadata(total_stride=0), "total_stride"),
    "stride-1": (_unet_metadata(total_stride=1), "total_stride"),
    "stride-1e9": (_unet_metadata(total_stride=10**9), "total_stride"),
    "radius-0": (_unet_metadata(receptive_radius_px=0), "receptive_radius_px"),
    "radius-1e7": (_unet_metadata(receptive_radius_px=10**7), "receptive_radius_px"),
    "linear-radius-58": (_linear_metadata(receptive_radius_px=58), "receptive_radius_px"),
    "base-width-200000": (
        _unet_metadata(architecture={"in_bands": 3, "num_classes": 2, "base_width": 200_000, "depth": 2}),
        "architecture.base_width",
    ),
    "two-billion-parameters": (
        _unet_metadata(architecture={"in_bands": 3, "num_classes": 2, "base_width": 128, "depth": 6}),
        "architecture",
    ),
    "depth-7": (
        _unet_metadata(architecture={"in_bands": 3, "num_classes": 2, "base_width": 4, "depth": 7}),
        "architecture.depth",
    ),
    "unknown-architecture": (
        _linear_metadata(architecture={"name": "transformer", "in_bands": 3, "num_classes": 2}),
        "architecture",
    ),
    "in-bands-0": (
        _linear_metadata(architecture={"name": "linear", "in_bands": 0, "num_classes": 2}),
        "architecture.in_bands",
    ),
    "in-bands-65": (
        _linear_metadata(architecture={"name": "linear", "in_bands": 65, "num_classes": 2}),
        "architecture.in_bands",
    ),
    "one-class": (
        _linear_metadata(architecture={"name": "linear", "in_bands": 3, "num_classes": 1}, classes=["x"]),
        "architecture.num_classes",
    ),
    "256-classes": (
        _linear_metadata(architecture={"name": "linear", "in_bands": 3, "num_classes": 256}),
        "architecture.num_classes",
    ),
    "no-classes": (_linear_metadata(classes=[]), "classes"),
    "three-names-two-classes": (_linear_metadata(classes=["a", "b", "c"]), "classes"),
    "duplicate-classes": (_linear_metadata(classes=["a", "a"]), "classes"),
    "empty-class-name": (_linear_metadata(classes=["background", " "]), "classes"),
    "mean-5-values-3-bands": (_linear_metadata(normalization=_norm(mean=[0.0] * 5)), "normalization"),
    "std-0": (_linear_metadata(normalization=_norm(std=(1.0, 0.0, 1.0))), "normalization.std.1"),
    "std-negative": (_linear_metadata(normalization=_norm(std=(1.0, 1.0, -2.0))), "normalization.std.2"),
    "std-nan": (_linear_metadata(normalization=_norm(std=(float("nan"), 1.0, 1.0))), "normalization.std.0"),
    "mean-inf": (
        _linear_metadata(normalization=_norm(mean=(0.0, float("inf"), 0.0))),
        "normalization.mean.1",
    ),
    "mean-1e300-infinite-in-float32": (
        _linear_metadata(normalization=_norm(mean=(0.0, 1e300, 0.0))),
        "normalization.mean.1",
    ),
    "std-1e-300-zero-in-float32": (
        _linear_metadata(normalization=_norm(std=(1e-300, 1.0, 1.0))),
        "normalization.std.0",
    ),
    "class-name-with-a-terminal-escape": (
        _linear_metadata(classes=["background", "\x1b[2Jwater"]),
        "classes",
    ),
    "domain-gsd-reversed": (
        _linear_metadata(domain=_domain(gsd_min_m=10.0, gsd_max_m=0.01)),
        "domain.gsd_min_m",
    ),
    "domain-std-negative": (_linear_metadata(domain=_domain(std=[1.0, -1.0, 1.0])), "domain.std"),
    "domain-p1-above-p99": (_linear_metadata(domain=_domain(p1=[300.0, 2.0, 3.0])), "domain.p1"),
    "domain-mean-4-values-3-bands": (_linear_metadata(domain=_domain(mean=[1.0] * 4)), "domain.mean"),
    "domain-std-1-value-3-bands": (_linear_metadata(domain=_domain(std=[1.0])), "domain.std"),
    "domain-p1-empty": (_linear_metadata(domain=_domain(p1=[])), "domain.p1"),
    "radiometry-percentiles-decreasing": (
        _linear_metadata(radiometry={"percentiles": [99, 1]}),
        "radiometry.percentiles",
    ),
    "radiometry-percentile-above-100": (
        _linear_metadata(radiometry={"percentiles": [1, 101]}),
        "radiometry.percentiles.1",
    ),
    "radiometry-target-nan": (
        _linear_metadata(radiometry={"target": [0, float("nan")]}),
        "radiometry.target.1",
    ),
    "radiometry-target-1e300": (
        _linear_metadata(radiometry={"target": [-1e300, 1e300]}),
        "radiometry.target.0",
    ),
    "radiometry-unknown-dtype": (
        _linear_metadata(radiometry={"kept_dtypes": ["uint9"]}),
        "radiometry.kept_dtypes",
    ),
    "bands-2-for-3": (_linear_metadata(bands=[1, 2]), "bands"),
    "band-0": (_linear_metadata(bands=[0, 1, 2]), "bands.0"),
    "colours-2-for-3-bands": (_linear_metadata(band_colours=["red", "green"]), "band_colours"),
    "colours-twice-red": (_linear_metadata(band_colours=["red", "red", "blue"]), "band_colours"),
    "colour-undefined": (_linear_metadata(band_colours=["red", "green", "undefined"]), "band_colours"),
    "colour-path": (_linear_metadata(band_colours=["red", "green", "../../etc"]), "band_colours.2"),
    "unknown-format": (_linear_metadata(format="geoseg-checkpoint/9"), "format"),
    "unknown-field": (_linear_metadata(hyperparameters={}), "hyperparameters"),
}


@pytest.mark.parametrize("metadata,field", HOSTILE_METADATA.values(), ids=HOSTILE_METADATA.keys())
def test_hostile_metadata_is_refused_naming_the_field(tmp_path, metadata, field):
    path = _save(tmp_path / "hostile.safetensors", _linear_tensors(), metadata)
    for read in (read_metadata, load_generator):
        with pytest.raises(CheckpointError) as caught:
            read(path)
        message = str(caught.value)
        assert len(message.splitlines()) == 1
        assert message.startswith(f"{path}: ") and f"'{field}'" in message, message


def test_domain_statistics_need_one_value_per_band(tmp_path):
    """The training domain of a 3-band model has 3 values per statistic; 2 percentiles are refused."""
    good = _save(tmp_path / "good.safetensors", _linear_tensors(), _linear_metadata(domain=_domain()))
    bad = _save(
        tmp_path / "bad.safetensors", _linear_tensors(), _linear_metadata(domain=_domain(p99=[9.0, 9.0]))
    )
    assert read_metadata(good).domain == Domain.model_validate(_domain())
    with pytest.raises(CheckpointError, match=r"bad metadata field 'domain\.p99': 2 values for 3 bands$"):
        read_metadata(bad)


HOSTILE_TENSORS = {
    "int64-weight": (
        {**_linear_tensors(), "head.weight": torch.ones(1, 3, 1, 1, dtype=torch.int64)},
        "head.weight",
    ),
    "bool-weight": (
        {**_linear_tensors(), "head.weight": torch.ones(1, 3, 1, 1, dtype=torch.bool)},
        "head.weight",
    ),
    "int-bias": ({**_linear_tensors(), "head.bias": torch.zeros(1, dtype=torch.int32)}, "head.bias"),
    "wrong-shape": (_linear_tensors(in_bands=4), "head.weight"),
    "missing": ({"head.weight": torch.ones(1, 3, 1, 1)}, "head.bias"),
    "unexpected": ({**_linear_tensors(), "backdoor.weight": torch.ones(1)}, "backdoor.weight"),
    "nan-weight": (
        {**_linear_tensors(), "head.weight": torch.full((1, 3, 1, 1), float("nan"))},
        "head.weight",
    ),
}


@pytest.mark.parametrize("tensors,name", HOSTILE_TENSORS.values(), ids=HOSTILE_TENSORS.keys())
def test_tensors_that_differ_from_the_architecture_are_refused_naming_the_tensor(tmp_path, tensors, name):
    path = _save(tmp_path / "hostile.safetensors", tensors, _linear_metadata())
    with pytest.raises(CheckpointError) as caught:
        load_generator(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{path}: ") and f"'{name}'" in message, message


def test_tensor_shapes_are_checked_before_any_weight_is_read(tmp_path):
    """A header claiming a huge tensor is refused from the header alone (the data is not there)."""
    header = {
        "__metadata__": {"geoseg": json.dumps(_linear_metadata())},
        "head.weight": {"dtype": "F32", "shape": [1, 3, 100_000, 100_000], "data_offsets": [0, 12]},
        "head.bias": {"dtype": "F32", "shape": [1], "data_offsets": [12, 16]},
    }
    path = _raw_file(tmp_path / "huge.safetensors", json.dumps(header).encode(), bytes(16))
    with pytest.raises(CheckpointError, match=r"'head\.weight': shape \[1, 3, 100000, 100000\]"):
        load_generator(path)


HOSTILE_HEADERS = {
    "metadata-not-a-mapping": (json.dumps({"__metadata__": "oops"}).encode(), "'__metadata__'"),
    "metadata-value-not-a-string": (
        json.dumps({"__metadata__": {"geoseg": {"format": "x"}}}).encode(),
        "'__metadata__'",
    ),
    "nested-200000-levels": (b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}", "nested too deeply"),
    "not-json": (b"{this is not json}", "unreadable header"),
    "integer-of-5000-digits": (b'{"a":' + b"1" * 5000 + b"}", "unreadable header"),
    "metadata-not-json": (json.dumps({"__metadata__": {"geoseg": "{oops"}}).encode(), "bad metadata"),
    "no-geoseg-metadata": (json.dumps({"__metadata__": {}}).encode(), "no geoseg metadata"),
    "deep-training-config": (
        json.dumps(
            {"__metadata__": {"geoseg": '{"training": {"a": ' + "[" * 5000 + "]" * 5000 + "}}"}}
        ).encode(),
        "bad metadata",
    ),
}


@pytest.mark.parametrize("header,reason", HOSTILE_HEADERS.values(), ids=HOSTILE_HEADERS.keys())
def test_hostile_header_is_refused_in_one_line(tmp_path, header, reason):
    path = _raw_file(tmp_path / "hostile.safetensors", header)
    with pytest.raises(CheckpointError) as caught:
        read_metadata(path)
    message = str(caught.value)
    assert len(message.splitlines()) == 1
    assert message.startswith(f"{path}: ") and reason in message, message


def test_a_checkpoint_cut_short_or_padded_is_refused_from_its_header_before_the_model_is_built(tmp_path):
    """A 135 KB file whose header claimed a 499 M-parameter U-Net made predict allocate 2.2 GB."""
    good = _save(tmp_path / "good.safetensors", _linear_tensors(), _linear_metadata())
    data = good.read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-4])
    (tmp_path / "padded.safetensors").write_bytes(data + b"\0" * 4)
    for name, reason in (("cut", "truncated"), ("padded", "bytes after the weights")):
        with pytest.raises(
            CheckpointError, match=rf"promises 16 bytes of weights and the file holds \d+ \({reason}\)"
        ):
            read_metadata(tmp_path / f"{name}.safetensors")


def test_a_negative_batch_norm_variance_is_refused(tmp_path):
    model = UNetGenerator(3, 2, base_width=4, depth=2)
    tensors = dict(model.state_dict())
    name = next(n for n in tensors if n.endswith("running_var"))
    tensors[name] = torch.full_like(tensors[name], -1.0)
    path = _save(tmp_path / "negative.safetensors", tensors, _unet_metadata())
    with pytest.raises(CheckpointError, match=rf"'{re.escape(name)}': a variance is negative"):
        load_generator(path)


def test_a_model_whose_outputs_overflow_fails_instead_of_calling_everything_background(tmp_path):
    tensors = {**_linear_tensors(), "head.weight": torch.full((1, 3, 1, 1), 3e38)}
    predictor = Predictor.from_checkpoint(
        _save(tmp_path / "big.safetensors", tensors, _linear_metadata()), "cpu"
    )
    with pytest.raises(CheckpointError, match="outputs are not finite"):
        predictor.predict(np.full((1, 3, 8, 8), 200, dtype=np.uint8))


def test_header_over_the_size_limit_is_refused_before_it_is_read(tmp_path):
    path = tmp_path / "big.safetensors"
    path.write_bytes((20_000_000).to_bytes(8, "little") + b'{"a": 1}')
    with pytest.raises(CheckpointError, match="over the 16 MB limit"):
        read_metadata(path)


def test_shipped_model_passes_validation():
    model, metadata = load_generator(SHIPPED_MODEL)
    assert isinstance(model, UNetGenerator)
    assert (metadata.total_stride, metadata.receptive_radius_px) == (
        model.total_stride,
        model.receptive_radius_px,
    )


@pytest.mark.parametrize(
    "case,field",
    [("stride-0", "total_stride"), ("std-0", "normalization.std.1"), ("int64-weight", "head.weight")],
)
def test_predict_with_a_hostile_checkpoint_fails_in_one_line(sample_data, tmp_path, case, field):
    if case in HOSTILE_TENSORS:
        model = _save(tmp_path / "hostile.safetensors", HOSTILE_TENSORS[case][0], _linear_metadata())
    else:
        model = _save(tmp_path / "hostile.safetensors", _linear_tensors(), HOSTILE_METADATA[case][0])
    out = tmp_path / "out" / "mask.tif"
    command = [sys.executable, "-m", "geoseg", "predict", str(sample_data / "edge/RGB.byte.tif")]
    result = subprocess.run(
        [*command, "--model", str(model), "--out", str(out)], capture_output=True, text=True
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and str(model) in lines[0] and f"'{field}'" in lines[0], result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists()
