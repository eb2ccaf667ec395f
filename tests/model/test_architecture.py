"""An architecture record's numbers (computed without torch) are those of the network it builds."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from geoseg.model.architecture import Architecture, LinearArchitecture
from geoseg.model.checkpoint import generator_for
from tests.conftest import SHIPPED_MODEL

RECORDS = [
    *(
        Architecture(in_bands=bands, num_classes=classes, base_width=width, depth=depth, upsample=upsample)
        for bands, classes, width, depth, upsample in [
            (3, 2, 16, 3, "transpose"),
            (3, 2, 24, 4, "bilinear"),
            (4, 5, 1, 1, "transpose"),
            (1, 2, 8, 6, "bilinear"),
            (13, 11, 32, 2, "transpose"),
        ]
    ),
    LinearArchitecture(in_bands=3, num_classes=2),
    LinearArchitecture(in_bands=6, num_classes=7),
]


@pytest.mark.parametrize("record", RECORDS, ids=repr)
def test_the_record_counts_the_parameters_stride_and_radius_of_its_network(record):
    with torch.device("meta"):
        network = generator_for(record)
    assert record.parameters == sum(p.numel() for p in network.parameters())
    assert network.architecture == record
    assert (record.total_stride, record.receptive_radius_px) == (
        network.total_stride,
        network.receptive_radius_px,
    )


def test_reading_a_checkpoints_metadata_does_not_import_torch():
    script = (
        "import sys; from geoseg.model.metadata import read_metadata; "
        f"read_metadata({str(SHIPPED_MODEL)!r}); print('torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
