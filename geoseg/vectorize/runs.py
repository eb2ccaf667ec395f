"""Flat arrays cut into consecutive runs: ``counts[i]`` items make run ``i``.

Outlines are stored this way (vertices per ring, rings per polygon, polygons per component);
these are the index computations every step that walks them shares.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


def offsets(counts: IntArray) -> IntArray:
    """Where each run starts, then where the last one ends (``len(counts) + 1`` values)."""
    return np.asarray(np.r_[0, np.cumsum(counts)], dtype=np.int64)


def starts(counts: IntArray) -> IntArray:
    """Where each run starts."""
    return offsets(counts)[:-1]


def ranges(first: IntArray, counts: IntArray) -> IntArray:
    """``first[i] .. first[i] + counts[i] - 1`` for every ``i``, one run after another."""
    shifted = np.repeat(first - starts(counts), counts)
    return np.asarray(shifted + np.arange(len(shifted)), dtype=np.int64)


def sums(values: IntArray, counts: IntArray) -> IntArray:
    """The sum of each run of ``values`` (0 for an empty run); exact for integers."""
    return np.asarray(np.diff(np.r_[0, np.cumsum(values)][offsets(counts)]), dtype=np.int64)


def within(sizes: IntArray, counts: IntArray) -> IntArray:
    """Each item's offset inside its run: the total ``sizes`` of the items before it there."""
    before = offsets(sizes)
    return np.asarray(before[:-1] - np.repeat(before[starts(counts)], counts), dtype=np.int64)
