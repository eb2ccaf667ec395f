"""Pixel-edge rings of labelled regions, traced with array operations (no per-vertex Python).

Each region (4-connected pixels of one label) becomes one polygon whose rings run along pixel
edges, vertex for vertex what GDAL's polygonising gives: corners only, every ring starting at
its top-left vertex (least row, then column) with the region on its left in (column, row)
coordinates (exterior rings go down first, holes right), the exterior first and the holes in
the order of their first vertex.

How: each boundary edge belongs to the region on its left. Maximal straight runs of such edges
are found by comparing every pixel once with its lower neighbour (horizontal edges) and once
with its right neighbour (vertical edges, whose runs are then paired column by column); the
rest works on the runs only. Each
horizontal run's end is followed, by the 2×2 pixels around that corner, into the vertical run
that leaves it, and that run's end into the next horizontal run: a permutation of the
horizontal runs whose cycles are the rings. Cycles are ranked by pointer jumping (Wyllie), so
the work is O(runs · log ring length) in NumPy, not a walk vertex by vertex.

Where one region touches itself at a corner (pixels ``a`` and ``d`` diagonal, ``b`` and ``c``
not the region), the rings turn around ``b`` and ``c``: the region stays one polygon whose
rings meet at that point, and no ring passes through a vertex twice (a ring touching itself is
invalid). Two rings of one region can meet there, but a 4-connected path of the region around
the corner separates ``b`` from ``c``, so they are never the same ring. GDAL does the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Rings:
    """Polygons as flat arrays, ready for ``shapely.from_ragged_array``.

    ``coords`` holds each closed ring's (x, y) = (column, row) vertices end to end,
    ``ring_sizes`` the vertex count of each ring (closing vertex included) and
    ``rings_per_polygon`` the ring count of each polygon; polygon ``i`` is region ``i + 1``.
    ``corner_contacts`` holds pairs of regions (labels) at diagonal pixels of a vertex whose
    other two pixels are neither: regions that touch only at that corner.
    """

    coords: npt.NDArray[np.int32]
    ring_sizes: IntArray
    rings_per_polygon: IntArray
    corner_contacts: npt.NDArray[np.int32]


@dataclass(frozen=True)
class _Runs:
    """Straight runs of boundary edges of one orientation: start and end vertex, region."""

    start: IntArray  # vertex keys
    end: IntArray
    region: IntArray


def trace_regions(regions: npt.NDArray[np.integer], count: int) -> Rings:
    """The rings of regions ``1..count`` of a label image (0 = no region; each label 4-connected)."""
    height, width = regions.shape
    padded = np.pad(regions.astype(np.int32, copy=False), 1)
    east, west = _runs(padded, across_rows=True)
    up, down = _runs(padded, across_rows=False)
    if len(east.start) == 0:
        empty = np.zeros(0, np.int64)
        return Rings(np.zeros((0, 2), np.int32), empty, empty, np.zeros((0, 2), np.int32))
    horizontal, is_east = _joined(east, west)
    vertical, is_up = _joined(up, down)
    stride, flat = width + 2, padded.ravel()
    lookup = _VertexLookup(height, width)
    # The 2×2 pixels around a vertex: a = flat[p], b = flat[p + 1] (above), c = flat[p +
    # stride], d = flat[p + stride + 1] (below). After an east run the ring turns up unless d
    # is the region; after a west run it turns up when a is. Where the region touches itself
    # diagonally, this turns around the other two pixels.
    corner = _pixel_at(horizontal.end, width)
    goes_up = np.where(
        is_east, flat[corner + stride + 1] != horizontal.region, flat[corner] == horizontal.region
    )
    into_vertical = np.where(
        goes_up,
        lookup.find(up.start, horizontal.end),
        len(up.start) + lookup.find(down.start, horizontal.end),
    )
    # After an up run the ring turns east when b is the region; after a down run, unless c is.
    corner = _pixel_at(vertical.end, width)
    goes_east = np.where(is_up, flat[corner + 1] == vertical.region, flat[corner + stride] != vertical.region)
    into_horizontal = np.where(
        goes_east,
        lookup.find(east.start, vertical.end),
        len(east.start) + lookup.find(west.start, vertical.end),
    )
    coords, ring_sizes, rings_per_polygon = _rings(
        horizontal, is_east, into_horizontal[into_vertical], width, count
    )
    return Rings(coords, ring_sizes, rings_per_polygon, _corner_contacts(flat, east, width))


def _corner_contacts(flat: npt.NDArray[np.int32], east: _Runs, width: int) -> npt.NDArray[np.int32]:
    """Pairs of regions at diagonal pixels of a vertex whose other two pixels are neither.

    Every such vertex ends an east run along the bottom of the upper-left pixel ``a`` (the pair
    ``a``, ``d``) or starts one along the bottom of the upper-right pixel ``b`` (``b``, ``c``).
    """
    stride = width + 2
    found = []
    for vertex, diagonal, sides in (
        (east.end, stride + 1, (1, stride)),
        (east.start, stride, (0, stride + 1)),
    ):
        a = _pixel_at(vertex, width)
        other = flat[a + diagonal]
        touch = (
            (other > 0)
            & (other != east.region)
            & (flat[a + sides[0]] != other)
            & (flat[a + sides[1]] != other)
        )
        found.append(np.column_stack([east.region[touch], other[touch]]))
    return np.concatenate(found).astype(np.int32)


def _runs(padded: npt.NDArray[np.int32], across_rows: bool) -> tuple[_Runs, _Runs]:
    """Maximal straight runs of boundary edges between rows (east, west) or columns (down, up).

    Each edge is named by the flat index of the pixel before it (above it, or left of it) in
    ``padded``; a run continues while the next edge along the line has the same region on the
    same side.
    """
    rows, stride = padded.shape
    width = stride - 2
    flat = padded.ravel()
    across, along = (stride, 1) if across_rows else (1, stride)
    edges = np.flatnonzero(flat[:-across] != flat[across:])
    runs = []
    for before_side in (True, False):
        mine, theirs = (0, across) if before_side else (across, 0)
        region = flat[edges + mine]
        edges_r, region = edges[region > 0], region[region > 0]

        opens = ~_same_run(flat, edges_r - along, region, mine, theirs)
        first = edges_r[opens]
        last = edges_r[~_same_run(flat, edges_r + along, region, mine, theirs)]
        regions = region[opens].astype(np.int64)
        if not across_rows:  # runs go down the columns: pair first and last edges column-major
            order = np.argsort(first % stride * rows + first // stride)
            first, regions = first[order], regions[order]
            last = last[np.argsort(last % stride * rows + last // stride)]
        row_first, col_first = np.divmod(first, stride)
        row_last, col_last = np.divmod(last, stride)
        # Edge before pixel (r, c) of ``padded`` spans x = c - 1 .. c on line y = r (between
        # rows), or y = r - 1 .. r on line x = c (between columns).
        if across_rows:
            low = row_first * (width + 1) + col_first - 1
            high = row_last * (width + 1) + col_last
        else:
            low = (row_first - 1) * (width + 1) + col_first
            high = row_last * (width + 1) + col_last
        # The region is on the left: a run east (down) when it is above (right of) the edge.
        forward = before_side == across_rows
        runs.append(_Runs(low, high, regions) if forward else _Runs(high, low, regions))
    return runs[0], runs[1]


def _same_run(
    flat: npt.NDArray[np.int32], edges: IntArray, region: npt.NDArray[np.int32], mine: int, theirs: int
) -> npt.NDArray[np.bool_]:
    """Whether each edge has ``region`` on the same side (``mine`` past the edge's index)."""
    same: npt.NDArray[np.bool_] = (flat[edges + mine] == region) & (flat[edges + theirs] != region)
    return same


def _joined(first: _Runs, second: _Runs) -> tuple[_Runs, npt.NDArray[np.bool_]]:
    """Both kinds of runs in one table, and which rows are of the first kind."""
    joined = _Runs(
        np.concatenate([first.start, second.start]),
        np.concatenate([first.end, second.end]),
        np.concatenate([first.region, second.region]),
    )
    return joined, np.arange(len(joined.start)) < len(first.start)


def _pixel_at(vertex: IntArray, width: int) -> IntArray:
    """Flat index in the padded image of pixel ``a``, above and left of each vertex."""
    y, x = np.divmod(vertex, width + 1)
    return y * (width + 2) + x


class _VertexLookup:
    """Which run starts at a vertex: a scratch table over all vertices, filled per query."""

    def __init__(self, height: int, width: int) -> None:
        self._table = np.empty((height + 1) * (width + 1), dtype=np.int32)

    def find(self, starts: IntArray, vertices: IntArray) -> IntArray:
        """Index in ``starts`` of each vertex; meaningful only where a run starts there."""
        self._table[starts] = np.arange(len(starts), dtype=np.int32)
        return self._table[vertices].astype(np.int64)


def _rings(
    horizontal: _Runs, is_east: npt.NDArray[np.bool_], following: IntArray, width: int, count: int
) -> tuple[npt.NDArray[np.int32], IntArray, IntArray]:
    """Order the cycles of ``following`` into GDAL's rings: coordinates, ring sizes, rings per polygon."""
    n = len(following)
    graph = coo_array((np.ones(n, dtype=np.int8), (np.arange(n), following)), shape=(n, n))
    ring_count, ring_of = connected_components(graph, directed=True, connection="weak")
    # The top-left vertex of a ring is the left end of one of its horizontal runs.
    left = np.where(is_east, horizontal.start, horizontal.end)
    first_key = np.full(ring_count, np.iinfo(np.int64).max)
    np.minimum.at(first_key, ring_of, left)
    is_head = left == first_key[ring_of]
    head = np.empty(ring_count, np.int64)
    head[ring_of[is_head]] = np.flatnonzero(is_head)
    sizes = np.bincount(ring_of, minlength=ring_count)
    rank = _rank_from(head, following, sizes[ring_of])
    # A hole starts with an east run at its top-left vertex; an exterior with the end of a west run.
    is_hole = is_east[head]
    region = horizontal.region[head]
    ring_order = np.lexsort((first_key, is_hole, region))
    position_of_ring = np.empty(ring_count, np.int64)
    ring_sizes = 2 * sizes[ring_order] + 1
    position_of_ring[ring_order] = np.cumsum(ring_sizes) - ring_sizes
    base = position_of_ring[ring_of]
    start_slot = np.where(is_hole[ring_of], 2 * rank, (2 * rank - 1) % (2 * sizes[ring_of]))
    end_slot = np.where(is_hole[ring_of], 2 * rank + 1, 2 * rank)
    keys = np.empty(int(ring_sizes.sum()), np.int64)
    keys[base + start_slot] = horizontal.start
    keys[base + end_slot] = horizontal.end
    closing = position_of_ring + 2 * sizes
    keys[closing] = keys[position_of_ring]
    y, x = np.divmod(keys, width + 1)
    coords = np.column_stack([x, y]).astype(np.int32)
    rings_per_polygon = np.bincount(region - 1, minlength=count)
    return coords, ring_sizes.astype(np.int64), rings_per_polygon.astype(np.int64)


def _rank_from(head: IntArray, following: IntArray, ring_size: IntArray) -> IntArray:
    """Each run's distance from its ring's head along ``following`` (Wyllie's pointer jumping).

    ``ring_size`` is the run count of each run's ring.
    """
    n = len(following)
    preceding = np.empty(n, np.int64)
    preceding[following] = np.arange(n)
    tail = preceding[head]
    nxt = following.copy()
    nxt[tail] = tail
    to_tail = np.ones(n, np.int64)
    to_tail[tail] = 0
    active = np.flatnonzero(nxt[nxt] != nxt)
    while len(active):
        ahead = nxt[active]
        to_tail[active] += to_tail[ahead]
        nxt[active] = nxt[ahead]
        active = active[nxt[nxt[active]] != nxt[active]]
    return ring_size - 1 - to_tail
