"""Closing a generated part: the part model writes surfaces that often stop short of enclosing a
volume (shards); an open part is replaced by the convex hull of its vertices, which is closed and
consistently oriented by construction. Where the hull would take more faces than the part may
have, the hull of fewer of its vertices (spread out) or the bounding box replaces it, whichever
is nearer the hull's volume; the faces an object's other parts leave unused are first shared
among the parts over their limits (``closing_limits``). A closed part keeps its faces (it may be
concave), turned outside out when they face inwards; an open one whose limit is below a box's six
faces is kept as written."""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.spatial import ConvexHull, QhullError

# Thinner than this (in the layout's unit cube) in any direction, a part is thickened to it before its
# hull is taken: a flat shard becomes a slab two steps of the 7-bit grid thick, so the hull does
# not collapse when the mesh is put back on the grid.
MIN_THICKNESS = 2 / 128


def edge_counts(faces: list[tuple[int, ...]]) -> Counter[frozenset[int]]:
    """Undirected edge -> how many faces use it."""
    return Counter(frozenset((f[i], f[(i + 1) % len(f)])) for f in faces for i in range(len(f)))


def is_closed(faces: list[tuple[int, ...]]) -> bool:
    """Every edge shared by exactly two faces."""
    edges = edge_counts(faces)
    return bool(edges) and all(n == 2 for n in edges.values())


def is_consistently_wound(faces: list[tuple[int, ...]]) -> bool:
    """Neighbouring faces run along their shared edge in opposite directions (each directed edge
    once), so all face one side of the surface."""
    directed = Counter((f[i], f[(i + 1) % len(f)]) for f in faces for i in range(len(f)))
    return all(n == 1 for n in directed.values())


def signed_volume(vertices: np.ndarray, faces: list[tuple[int, ...]]) -> float:
    """Positive when a closed mesh's faces wind counter-clockwise seen from outside."""
    total = 0.0
    for f in faces:
        a = vertices[f[0]]
        for b, c in zip(f[1:-1], f[2:], strict=True):
            total += float(np.dot(a, np.cross(vertices[b], vertices[c])))
    return total / 6


def thickened(points: np.ndarray) -> np.ndarray:
    """The points, copied apart along each of their principal directions in which they are thinner
    than MIN_THICKNESS (a flat shard at any tilt, a line, a point)."""
    centred = points - points.mean(0)
    _, _, directions = np.linalg.svd(centred, full_matrices=True)
    for direction in directions:
        extent = float(np.ptp(points @ direction))
        if extent < MIN_THICKNESS:
            shift = direction * (MIN_THICKNESS - extent) / 2
            points = np.concatenate([points - shift, points + shift])
    return points


def convex_hull(points: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """(vertices, triangles wound counter-clockwise seen from outside) of full-dimensional points'
    hull (``thickened`` makes them so)."""
    hull = ConvexHull(points)
    used = np.unique(hull.simplices)
    index = np.full(len(points), -1)
    index[used] = np.arange(len(used))
    triangles = []
    for (a, b, c), plane in zip(hull.simplices, hull.equations, strict=True):
        normal = np.cross(points[b] - points[a], points[c] - points[a])
        if normal @ plane[:3] < 0:  # qhull does not orient its simplices; its planes face outwards
            b, c = c, b
        triangles.append((int(index[a]), int(index[b]), int(index[c])))
    return points[used], triangles


# A box's quads, wound counter-clockwise seen from outside; corner i is at (x, y, z) = bits of i.
BOX_FACES = [(0, 2, 3, 1), (4, 5, 7, 6), (0, 1, 5, 4), (2, 6, 7, 3), (0, 4, 6, 2), (1, 3, 7, 5)]


def bounding_box(points: np.ndarray) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    lo, hi = points.min(0), points.max(0)
    corners = np.array([[(hi if i >> axis & 1 else lo)[axis] for axis in range(3)] for i in range(8)])
    return corners, list(BOX_FACES)


def reduced_hull(points: np.ndarray, max_faces: int) -> tuple[np.ndarray, list[tuple[int, ...]]] | None:
    """The hull of ``max_faces // 2 + 2`` of the points spread by farthest-point sampling (a hull of
    k points has at most 2k - 4 triangles), or None where those span no volume."""
    chosen = [int(np.argmax(np.linalg.norm(points - points.mean(0), axis=1)))]
    distance = np.linalg.norm(points - points[chosen[0]], axis=1)
    while len(chosen) < min(len(points), max_faces // 2 + 2):
        chosen.append(int(np.argmax(distance)))
        distance = np.minimum(distance, np.linalg.norm(points - points[chosen[-1]], axis=1))
    try:
        vertices, triangles = convex_hull(points[chosen])
    except QhullError:
        return None
    return vertices, list(triangles)


def close_part(
    vertices: np.ndarray, faces: list[tuple[int, ...]], max_faces: int
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The part as written when it encloses a volume with its faces wound one way (turned outside
    out where they face inwards; wound both ways it would show faces from behind), else its
    convex hull, else a hull of fewer of its vertices or its bounding box (the nearer the hull's
    volume), each only within ``max_faces``."""
    if is_closed(faces) and is_consistently_wound(faces):
        volume = signed_volume(vertices, faces)
        # Smaller than that it is flat (faces back to back, say): closed like an open one below.
        if abs(volume) >= MIN_THICKNESS**3:
            return vertices, faces if volume > 0 else [tuple(reversed(f)) for f in faces]
    if max_faces < len(BOX_FACES):
        return vertices, faces
    solid = thickened(np.asarray(vertices, dtype=np.float64))
    hull_vertices, triangles = convex_hull(solid)
    if len(triangles) <= max_faces:
        return hull_vertices, list(triangles)
    box, fewer = bounding_box(solid), reduced_hull(hull_vertices, max_faces)
    if fewer is None:
        return box
    volume = signed_volume(hull_vertices, list(triangles))  # the box holds more, the fewer points less
    nearer = abs(signed_volume(*fewer) - volume) < abs(signed_volume(*box) - volume)
    return fewer if nearer else box


def closing_limits(needs: list[int], limits: list[int], face_budget: int) -> list[int]:
    """Each part's face limit for closing: a part whose closed form needs more than its limit gets a
    share of the faces the object's parts leave unused of ``face_budget`` (a part that fits uses
    what it needs), in proportion to how many it lacks, never more than it lacks."""
    lacking = [max(0, need - limit) for need, limit in zip(needs, limits, strict=True)]
    short = sum(lacking)
    if not short:
        return list(limits)
    spare = max(0, face_budget - sum(min(need, limit) for need, limit in zip(needs, limits, strict=True)))
    return [limit + min(lack, spare * lack // short) for limit, lack in zip(limits, lacking, strict=True)]
