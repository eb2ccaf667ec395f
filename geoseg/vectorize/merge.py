"""Cross-block merge: pieces of one object cut by block borders become one component.

Two pieces are the same object when they have the same class and touch across a shared block
border: facing pixels (4- and 8-connectivity) and, with 8-connectivity, diagonal neighbours
across the border or across a block corner. Only border pixels are compared, and the groups
are the connected components of that adjacency graph (union-find), so the work is linear in
the number of border pixels and pieces; geometries are unioned only for groups of several
pieces, and exactly, because pieces share integer pixel-grid edges. A union only changes the
rings that lie on a block border, so only those go through GEOS's overlay (see
``union_pieces``): a large object's many inner holes are carried over untouched.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import numpy.typing as npt
import shapely
from scipy.sparse import coo_array
from scipy.sparse.csgraph import connected_components

from geoseg.vectorize.polygonize import BlockPieces, Components, Connectivity

IntArray = npt.NDArray[np.int64]
GeometryArray = npt.NDArray[np.object_]
# One side of a border line: (offset along the line, global piece ids of the edge pixels).
_Edge = tuple[int, IntArray]


def merge_blocks(blocks: Sequence[BlockPieces]) -> Components:
    """Merge the pieces of non-overlapping blocks (any order) into whole components.

    A component of one piece keeps that piece's outlines; the geometry of one of several is
    their union (``Components.unions``), built from the pieces' outlines in pixel coordinates.
    """
    connectivity = _common_connectivity(blocks)
    offsets = np.cumsum([0, *(len(b) for b in blocks)])
    pieces = Components.concat([b.pieces for b in blocks])
    a, b = _adjacent_pieces(blocks, offsets, pieces.class_ids, diagonal=connectivity == 8)
    n = len(pieces)
    graph = coo_array((np.ones(len(a), dtype=np.int8), (a, b)), shape=(n, n))
    group_count, group = connected_components(graph, directed=False)
    first = np.full(group_count, -1, dtype=np.int64)
    first[group[::-1]] = np.arange(n)[::-1]
    sizes = np.bincount(group, minlength=group_count)
    order = np.argsort(group, kind="stable")
    starts = np.cumsum(sizes) - sizes
    frames = np.array([_frame(b) for b in blocks], dtype=np.float64).reshape(-1, 4)
    block_of_piece = np.repeat(np.arange(len(blocks)), np.diff(offsets))
    unioned = np.flatnonzero(sizes > 1)
    outlines = pieces.outlines
    piece_of_polygon = outlines.owner  # every polygon of a block belongs to a piece
    in_union = (sizes[group] > 1)[piece_of_polygon]
    members_only = replace(outlines, owner=np.where(in_union, piece_of_polygon, -1))
    piece_geometries = members_only.geometries(n)
    unions = np.full(group_count, None, dtype=object)
    for g in unioned:
        members = order[starts[g] : starts[g] + sizes[g]]
        unions[g] = union_pieces(piece_geometries[members], frames[block_of_piece[members]])
    unions[unioned] = in_polygonize_order(unions[unioned])

    def total(values: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
        return np.bincount(group, weights=values, minlength=group_count).astype(np.float64)

    return Components(
        class_ids=pieces.class_ids[first],
        prob_sums=total(pieces.prob_sums),
        prob_counts=total(pieces.prob_counts).astype(np.int64),
        outlines=replace(outlines, owner=np.where(in_union, -1, group[piece_of_polygon])),
        unions=unions,
    )


def union_pieces(pieces: GeometryArray, frames: npt.NDArray[np.float64]) -> shapely.Geometry:
    """The union of the pieces of one object; piece ``i`` lies in the block ``frames[i]``.

    ``frames`` holds each piece's block as (xmin, ymin, xmax, ymax) in pixels. Pieces are
    interior-disjoint pixel regions, so their union only changes rings that lie on a block
    frame, where a neighbour's ring can meet them. The rest is carried over as it is:

    * a hole that does not reach its block's frame stays a hole, inside whichever polygon of
      the union covers the part it was cut out of (no other piece can reach into it);
    * a part whose exterior does not reach its frame (an 8-connected part touching the others
      at corners) stays a part of its own.

    GEOS unions only the parts on a frame, with only their holes on a frame; the holes and
    parts set aside are added back. The result is valid: the union is, a hole set aside lies in
    the interior of the polygon it is added to and meets its rings at points only, and a part
    set aside meets the others at points only. Where block borders were, the union keeps
    collinear vertices (``in_polygonize_order`` drops them).
    """
    parts, piece_of_part = shapely.get_parts(pieces, return_index=True)
    rings, part_of_ring = shapely.get_rings(parts, return_index=True)
    coords, ring_of_vertex = shapely.get_coordinates(rings, return_index=True)
    frame = frames[piece_of_part[part_of_ring[ring_of_vertex]]]
    on_frame = ((coords == frame[:, :2]) | (coords == frame[:, 2:])).any(axis=1)
    ring_on_frame = np.bincount(ring_of_vertex[on_frame], minlength=len(rings)) > 0
    is_exterior = np.r_[True, part_of_ring[1:] != part_of_ring[:-1]]
    part_on_frame = ring_on_frame[is_exterior]
    in_union = part_on_frame[part_of_ring] & (is_exterior | ring_on_frame)
    holes_aside = rings[part_on_frame[part_of_ring] & ~in_union]
    parts_aside = parts[~part_on_frame]
    _, polygon_of_ring = np.unique(part_of_ring[in_union], return_inverse=True)
    union = shapely.union_all(shapely.polygons(rings[in_union], indices=polygon_of_ring))
    if len(holes_aside) == 0 and len(parts_aside) == 0:
        return union
    polygons = np.asarray(shapely.get_parts(union))
    polygons = np.concatenate([_add_holes(polygons, holes_aside), parts_aside])
    return polygons[0] if len(polygons) == 1 else shapely.multipolygons(polygons)


def in_polygonize_order(geometries: GeometryArray) -> GeometryArray:
    """Pixel-grid (Multi)Polygons written in the order ``Outlines.geometries`` writes a piece.

    That is GDAL's ring order: collinear vertices dropped, each ring starting at its top-left
    vertex (least row, then column) and running with the interior on its left in (column, row)
    coordinates (exterior rings go down first, holes right), holes after the exterior in the
    order of their first vertex; and parts in the order of their first vertex. A merged object
    is then vertex for vertex what polygonising the whole mask in one block gives, so that
    simplifying it, which depends on where rings start, does not depend on the block layout.
    """
    if len(geometries) == 0:
        return geometries
    parts, geometry_of_part = shapely.get_parts(geometries, return_index=True)
    rings, part_of_ring = shapely.get_rings(parts, return_index=True)
    coords, ring_of_vertex = shapely.get_coordinates(rings, return_index=True)
    is_closing = np.r_[ring_of_vertex[1:] != ring_of_vertex[:-1], True]
    xy, ring_of = _without_collinear_vertices(coords[~is_closing], ring_of_vertex[~is_closing], len(rings))
    sizes = np.bincount(ring_of, minlength=len(rings))
    starts = np.cumsum(sizes) - sizes
    x_min, x_span = xy[:, 0].min(), np.ptp(xy[:, 0]) + 1
    key = xy[:, 1] * x_span + (xy[:, 0] - x_min)  # row-major order of the vertices
    first = np.flatnonzero(key == np.minimum.reduceat(key, starts)[ring_of])
    is_hole = np.r_[False, part_of_ring[1:] == part_of_ring[:-1]]
    # Twice the signed area in (column, row) coordinates is negative with the interior on the left.
    following = np.arange(len(xy)) + 1
    following[starts + sizes - 1] = starts
    cross = xy[:, 0] * xy[following, 1] - xy[following, 0] * xy[:, 1]
    reverse = (np.add.reduceat(cross, starts) > 0) != is_hole
    step = np.arange(len(xy)) - starts[ring_of]
    step = np.where(reverse[ring_of], -step, step)
    ordered = xy[starts[ring_of] + (first[ring_of] - starts[ring_of] + step) % sizes[ring_of]]
    closed = np.insert(ordered, starts + sizes, ordered[starts], axis=0)
    new_rings = shapely.linearrings(closed, indices=np.repeat(np.arange(len(rings)), sizes + 1))
    ring_order = np.lexsort((key[first], is_hole, part_of_ring))
    polygons = shapely.polygons(new_rings[ring_order], indices=part_of_ring[ring_order])
    part_order = np.lexsort((key[first][~is_hole], geometry_of_part))
    parts_per_geometry = np.bincount(geometry_of_part, minlength=len(geometries))
    result = np.empty(len(geometries), dtype=object)
    multi = shapely.get_type_id(geometries) == shapely.GeometryType.MULTIPOLYGON
    single = ~multi[geometry_of_part]
    result[geometry_of_part[single]] = polygons[single]
    if multi.any():
        in_multi = part_order[multi[geometry_of_part[part_order]]]
        result[multi] = shapely.multipolygons(
            polygons[in_multi], indices=np.repeat(np.arange(multi.sum()), parts_per_geometry[multi])
        )
    return result


def _without_collinear_vertices(
    xy: npt.NDArray[np.float64], ring_of: IntArray, ring_count: int
) -> tuple[npt.NDArray[np.float64], IntArray]:
    """Drop the vertices of axis-parallel open rings where the ring runs straight on."""
    sizes = np.bincount(ring_of, minlength=ring_count)
    starts = np.cumsum(sizes) - sizes
    index = np.arange(len(xy))
    previous, following = index - 1, index + 1
    previous[starts] = starts + sizes - 1
    following[starts + sizes - 1] = starts
    straight = ((xy[previous] == xy) & (xy == xy[following])).any(axis=1)
    return xy[~straight], ring_of[~straight]


def _add_holes(polygons: GeometryArray, holes: GeometryArray) -> GeometryArray:
    """``polygons`` with each of ``holes`` (rings inside one polygon's interior) added to its own."""
    if len(holes) == 0:
        return polygons
    if len(polygons) == 1:
        owner = np.zeros(len(holes), dtype=np.int64)
    else:
        inside = shapely.point_on_surface(shapely.polygons(holes))
        # Querying with the polygons prepares each once (an indexed point-in-polygon test).
        polygon, found = shapely.STRtree(inside).query(polygons, predicate="contains")
        owner = np.empty(len(holes), dtype=np.int64)
        owner[found] = polygon
    rings, ring_owner = shapely.get_rings(polygons, return_index=True)
    rings = np.concatenate([rings, holes])
    ring_owner = np.concatenate([ring_owner, owner])
    order = np.argsort(ring_owner, kind="stable")  # each polygon's exterior ring stays first
    return np.asarray(shapely.polygons(rings[order], indices=ring_owner[order]))


def _frame(block: BlockPieces) -> tuple[int, int, int, int]:
    return (block.col_off, block.row_off, block.col_off + block.width, block.row_off + block.height)


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
