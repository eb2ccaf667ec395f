"""Cross-block merge: pieces of one object cut by block borders become one component.

Two pieces are the same object when they have the same class and touch across a shared block
border: facing pixels (4- and 8-connectivity) and, with 8-connectivity, diagonal neighbours
across the border or across a block corner. Only border pixels are compared, and the groups
are the connected components of that adjacency graph (union-find), so the work is linear in
the number of border pixels and pieces; geometries are unioned only for groups of several
pieces, and exactly, because pieces share integer pixel-grid edges.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from geoseg.vectorize.polygonize import BlockPieces, Components, Connectivity

IntArray = npt.NDArray[np.int64]
# One side of a border line: (offset along the line, global piece ids of the edge pixels).
_Edge = tuple[int, IntArray]


def merge_blocks(blocks: Sequence[BlockPieces]) -> Components:
    """Merge the pieces of non-overlapping blocks (any order) into whole components."""
    connectivity = _common_connectivity(blocks)
    offsets = np.cumsum([0, *(len(b) for b in blocks)])
    pieces = Components.concat([b.pieces for b in blocks])
    a, b = _adjacent_pieces(blocks, offsets, pieces.class_ids, diagonal=connectivity == 8)
    n = len(pieces)
    graph = coo_array((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    group_count, group = connected_components(graph, directed=False)
    first = np.full(group_count, -1, dtype=np.int64)
    first[group[::-1]] = np.arange(n)[::-1]
    merged = pieces.geometries[first]
    sizes = np.bincount(group, minlength=group_count)
    order = np.argsort(group, kind="stable")
    starts = np.cumsum(sizes) - sizes
    for g in np.flatnonzero(sizes > 1):
        members = order[starts[g] : starts[g] + sizes[g]]
        # Simplifying by 0 drops the collinear vertices left where block borders were.
        merged[g] = shapely.simplify(shapely.union_all(pieces.geometries[members]), 0)

    def total(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return np.bincount(group, weights=values, minlength=group_count).astype(np.float64)

    return Components(
        class_ids=pieces.class_ids[first],
        pixel_counts=total(pieces.pixel_counts).astype(np.int64),
        prob_sums=total(pieces.prob_sums),
        prob_counts=total(pieces.prob_counts).astype(np.int64),
        geometries=merged,
    )


def _common_connectivity(blocks: Sequence[BlockPieces]) -> Connectivity:
    kinds = {b.connectivity for b in blocks}
    if len(kinds) > 1:
        raise ValueError(f"blocks were polygonised with different connectivities {sorted(kinds)}")
    return kinds.pop() if kinds else 8


def _adjacent_pieces(
    blocks: Sequence[BlockPieces],
    offsets: IntArray,
    class_of: npt.NDArray[np.uint8],
    *,
    diagonal: bool,
) -> tuple[IntArray, IntArray]:
    """Pairs of global piece ids of the same class that touch across a block border."""
    # Border lines keyed by position: pieces on the low side (left/above) and on the high side.
    vertical: dict[int, tuple[list[_Edge], list[_Edge]]] = defaultdict(lambda: ([], []))
    horizontal: dict[int, tuple[list[_Edge], list[_Edge]]] = defaultdict(lambda: ([], []))
    for block, offset in zip(blocks, offsets.tolist(), strict=False):
        right, left = _global_ids(block.right, offset), _global_ids(block.left, offset)
        bottom, top = _global_ids(block.bottom, offset), _global_ids(block.top, offset)
        vertical[block.col_off + block.width][0].append((block.row_off, right))
        vertical[block.col_off][1].append((block.row_off, left))
        horizontal[block.row_off + block.height][0].append((block.col_off, bottom))
        horizontal[block.row_off][1].append((block.col_off, top))
    pairs = [
        _pairs_across(low, high, class_of, diagonal=diagonal)
        for lines in (vertical, horizontal)
        for low, high in lines.values()
        if low and high
    ]
    if not pairs:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate([p[0] for p in pairs]), np.concatenate([p[1] for p in pairs])


def _global_ids(edge: npt.NDArray[np.int32], offset: int) -> IntArray:
    """Block labels along an edge → global piece ids (-1 where there is no piece)."""
    return np.where(edge > 0, edge.astype(np.int64) + offset - 1, -1)


def _pairs_across(
    low: list[_Edge], high: list[_Edge], class_of: npt.NDArray[np.uint8], *, diagonal: bool
) -> tuple[IntArray, IntArray]:
    """Touching same-class pieces on the two sides of one border line."""
    length = max(start + len(ids) for start, ids in [*low, *high])
    sides = []
    for edges in (low, high):
        line = np.full(length, -1, dtype=np.int64)
        for start, ids in edges:
            line[start : start + len(ids)] = ids
        sides.append(line)
    a_side, b_side = sides
    shifts = [(a_side, b_side)]
    if diagonal:
        shifts += [(a_side[:-1], b_side[1:]), (a_side[1:], b_side[:-1])]
    a = np.concatenate([s[0] for s in shifts])
    b = np.concatenate([s[1] for s in shifts])
    keep = (a >= 0) & (b >= 0)
    a, b = a[keep], b[keep]
    same = class_of[a] == class_of[b]
    return a[same], b[same]
