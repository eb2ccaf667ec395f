"""Mask overviews: each level halves the one below, classes by majority, probabilities by mean."""

import numpy as np

from geoseg.overviews import halve_classes, halve_mean, overview_factors

NODATA = 255


def test_a_cell_takes_its_majority_class():
    classes = np.array([[1, 1, 0, 2], [1, 0, 2, 2]], dtype=np.uint8)
    assert halve_classes(classes, NODATA).tolist() == [[1, 2]]


def test_nodata_pixels_do_not_vote_and_an_all_nodata_cell_is_nodata():
    classes = np.array([[255, 255, 255, 255], [255, 1, 255, 255]], dtype=np.uint8)
    assert halve_classes(classes, NODATA).tolist() == [[1, NODATA]]


def test_ties_are_shared_so_a_class_keeps_its_share_of_the_pixels():
    checkerboard = (np.indices((64, 64)).sum(axis=0) % 2).astype(np.uint8)  # every cell a 2–2 tie
    halved = halve_classes(checkerboard, NODATA)
    assert halved.mean() == 0.5


def test_a_level_computed_window_by_window_equals_one_computed_whole():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, 3, size=(40, 60)).astype(np.uint8)
    whole = halve_classes(classes, NODATA)
    pieces = np.block(
        [
            [halve_classes(classes[r : r + 20, c : c + 20], NODATA, r // 2, c // 2) for c in range(0, 60, 20)]
            for r in range(0, 40, 20)
        ]
    )
    assert np.array_equal(whole, pieces)


def test_odd_edges_are_halved_with_what_they_have():
    classes = np.ones((3, 5), dtype=np.uint8)
    assert halve_classes(classes, NODATA).shape == (2, 3)
    assert (halve_classes(classes, NODATA) == 1).all()


def test_probabilities_take_the_rounded_mean_of_valid_pixels():
    probability = np.array([[10, 20, 255, 255], [30, 41, 255, 90]], dtype=np.uint8)
    assert halve_mean(probability, NODATA).tolist() == [[25, 90]]


def test_levels_halve_until_they_fit_in_one_block():
    assert overview_factors(512, 300, block_px=512) == []
    assert overview_factors(513, 300, block_px=512) == [2]
    assert overview_factors(2041, 1860, block_px=512) == [2, 4]


def _halve_cell_by_cell(classes, nodata, row_off, col_off):
    """The rule, one cell at a time: most valid votes; a tie goes to the first tied pixel
    (row-major within the cell) from position (row + 2 col) mod 4 on."""
    rows, cols = (classes.shape[0] + 1) // 2, (classes.shape[1] + 1) // 2
    padded = np.full((2 * rows, 2 * cols), nodata, dtype=np.uint8)
    padded[: classes.shape[0], : classes.shape[1]] = classes
    out = np.full((rows, cols), nodata, dtype=np.uint8)
    for r in range(rows):
        for c in range(cols):
            cell = padded[2 * r : 2 * r + 2, 2 * c : 2 * c + 2].ravel().tolist()
            votes = [cell.count(v) if v != nodata else 0 for v in cell]
            start = (r + row_off + 2 * (c + col_off)) % 4
            for turn in range(4):
                position = (start + turn) % 4
                if votes[position] == max(votes) > 0:
                    out[r, c] = cell[position]
                    break
    return out


def test_halving_follows_the_rule_cell_by_cell():
    rng = np.random.default_rng(1)
    for _ in range(50):
        height, width = rng.integers(1, 24, size=2)
        classes = rng.integers(0, rng.integers(1, 5), size=(height, width)).astype(np.uint8)
        classes[rng.random((height, width)) < 0.3] = NODATA
        row_off, col_off = rng.integers(0, 9, size=2)
        expected = _halve_cell_by_cell(classes, NODATA, row_off, col_off)
        assert np.array_equal(halve_classes(classes, NODATA, row_off, col_off), expected)
