"""Mirror symmetry of a polygon mesh across a plane x = const: ``reflected`` gives the mesh's mirror
image, ``mirrored_half`` the mesh made symmetric from its low-x half (cut at the plane, then joined
to its reflection along the cut). The result has no face across the plane, so Blender's Mirror
modifier can rebuild it from one half (which ``shared.ml.modifier_structure`` finds and peels).

Pure numpy; faces are tuples of vertex indices, n-gons kept as n-gons where the cut leaves them whole.
"""

from __future__ import annotations

import numpy as np

# Vertices this close to the plane (a share of the mesh's largest side) are on it: snapped there and
# shared by the two halves, so no sliver face is left along the cut (Mirror detection's tolerance
# is 1e-4 of the diagonal).
ON_PLANE = 1e-3


def reflected(
    vertices: np.ndarray, faces: list[tuple[int, ...]], plane_x: float
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The mirror image across x = plane_x, faces turned so they still face out."""
    out = np.array(vertices, dtype=np.float64, copy=True)
    out[:, 0] = 2 * plane_x - out[:, 0]
    return out, [tuple(reversed(f)) for f in faces]


def mirrored_half(
    vertices: np.ndarray, faces: list[tuple[int, ...]], plane_x: float
) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The mesh's part at x <= plane_x joined to its own reflection: symmetric across the plane.

    A face across the plane is cut there (each cut edge gets one new vertex, shared by the faces on
    that edge, so a closed mesh stays closed); faces beyond the plane, and faces lying in it, are
    dropped. Vertices on the plane are shared by both halves. A mesh with nothing at x <= plane_x
    gives an empty mesh."""
    v = np.asarray(vertices, dtype=np.float64)
    if not len(v) or not faces:
        return np.zeros((0, 3)), []
    side = v[:, 0] - plane_x
    side[np.abs(side) <= ON_PLANE * float(np.ptp(v, axis=0).max())] = 0.0
    points = [p.copy() for p in v]
    for i in np.flatnonzero(side == 0):
        points[i][0] = plane_x
    cuts: dict[tuple[int, int], int] = {}

    def cut(a: int, b: int) -> int:
        key = (min(a, b), max(a, b))
        if key not in cuts:
            t = side[key[0]] / (side[key[0]] - side[key[1]])
            point = v[key[0]] + t * (v[key[1]] - v[key[0]])
            point[0] = plane_x
            cuts[key] = len(points)
            points.append(point)
        return cuts[key]

    half: list[tuple[int, ...]] = []
    for face in faces:
        sides = side[list(face)]
        if (sides >= 0).all():  # beyond the plane, or lying in it
            continue
        if (sides <= 0).all():
            half.append(tuple(face))
            continue
        kept: list[int] = []  # Sutherland-Hodgman against x <= plane_x
        for k, a in enumerate(face):
            b = face[(k + 1) % len(face)]
            if side[a] <= 0:
                kept.append(a)
            if side[a] * side[b] < 0:
                kept.append(cut(a, b))
        kept = [p for k, p in enumerate(kept) if p != kept[k - 1]]
        if len(kept) >= 3:
            half.append(tuple(kept))
    used = sorted({i for f in half for i in f})
    if not used:
        return np.zeros((0, 3)), []
    low = np.array([points[i] for i in used])
    index = {old: new for new, old in enumerate(used)}
    on_plane = low[:, 0] == plane_x
    # the reflection's vertices: the plane's are the half's own, the rest new copies
    mirror_index = np.where(on_plane, np.arange(len(used)), len(used) + np.cumsum(~on_plane) - 1)
    high = low[~on_plane].copy()
    high[:, 0] = 2 * plane_x - high[:, 0]
    halves = [tuple(index[i] for i in f) for f in half]
    mirrored = [tuple(int(mirror_index[i]) for i in reversed(f)) for f in halves]
    return np.concatenate([low, high]), halves + mirrored
