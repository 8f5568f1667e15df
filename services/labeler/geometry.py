"""Measurements on one mesh (numpy only): quality checks, the exact-duplicate hash, a shape
descriptor for near duplicates, and a mirror-symmetry test.

A mesh here is the scene format's ``{"vertices": [[x, y, z]...], "faces": [[i, j, k, ...]...],
"loose_edges": [[i, j]...]}`` with n-gons as authored.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.settings import Settings

D2_BINS = 32
D2_SAMPLES = 8192
EXTENT_WEIGHT = 0.5  # how much the sorted bbox proportions count against the D2 histogram


@dataclass
class MeshArrays:
    vertices: np.ndarray  # (V, 3) float64
    faces: list[list[int]]
    loose_edges: list[tuple[int, int]]

    @classmethod
    def from_doc(cls, mesh: dict[str, Any]) -> MeshArrays:
        vertices = np.asarray(mesh.get("vertices") or [], dtype=np.float64).reshape(-1, 3)
        return cls(vertices, [list(f) for f in mesh.get("faces") or []], list(mesh.get("loose_edges") or []))

    def triangles(self) -> np.ndarray:
        """(T, 3) vertex indices: every n-gon fanned from its first corner."""
        tris = [(f[0], f[i], f[i + 1]) for f in self.faces for i in range(1, len(f) - 1)]
        return np.asarray(tris, dtype=np.int64).reshape(-1, 3)

    def face_areas(self) -> np.ndarray:
        """Area of every face (sum of its fan triangles)."""
        tris = self.triangles()
        if not len(tris):
            return np.zeros(len(self.faces))
        p = self.vertices[tris]
        tri_area = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
        owner = np.repeat(np.arange(len(self.faces)), [max(len(f) - 2, 0) for f in self.faces])
        return np.bincount(owner, weights=tri_area, minlength=len(self.faces))

    def diagonal(self) -> float:
        if not len(self.vertices):
            return 0.0
        return length(self.vertices.max(axis=0) - self.vertices.min(axis=0))


def length(vector: np.ndarray) -> float:
    """Euclidean length of a 3-vector, summed in a fixed order of IEEE operations: np.linalg.norm
    of a vector is a BLAS dot product, which OpenBLAS's AVX-512 kernels fuse (another last bit for
    about one vector in ten), and these lengths scale thresholds and the D2 histogram (issue 19)."""
    x, y, z = (float(c) for c in vector)
    return math.sqrt(x * x + y * y + z * z)


# ---- quality ----------------------------------------------------------------------------------


def quality(
    mesh: MeshArrays, settings: Settings, scale: tuple[float, float, float] = (1, 1, 1)
) -> dict[str, Any]:
    """Measured values plus ``failed``: the checks this mesh fails, each ``(code, detail)``, in order.

    ``scale`` is the object's scale, so the size check sees the object as it sits in the scene.
    """
    n_vertices, n_faces = len(mesh.vertices), len(mesh.faces)
    flags: dict[str, Any] = {"vertices": n_vertices, "faces": n_faces}
    failed: list[tuple[str, str]] = []
    if n_vertices == 0 or n_faces == 0:
        failed.append(("empty", f"{n_vertices} vertices, {n_faces} faces"))
        return {**flags, "failed": failed}
    bad_index = any(i < 0 or i >= n_vertices for f in mesh.faces for i in f)
    if bad_index or any(len(f) < 3 for f in mesh.faces):
        failed.append(("degenerate", "faces with fewer than 3 corners or out-of-range vertex indices"))
        return {**flags, "failed": failed}
    diagonal = mesh.diagonal()
    extents = mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0)
    flags["diagonal"] = round(diagonal, 6)
    areas = mesh.face_areas()
    zero = areas <= settings.quality_zero_area_epsilon * max(diagonal, 1e-30) ** 2
    flags["zero_area_share"] = round(float(zero.mean()), 4)
    if diagonal == 0.0 or zero.all() or int((extents > 1e-9 * max(diagonal, 1e-30)).sum()) < 2:
        failed.append(("degenerate", f"no surface: extents {np.round(extents, 6).tolist()}"))
        return {**flags, "failed": failed}

    edge_faces = _edge_face_counts(mesh.faces)
    counts = np.fromiter(edge_faces.values(), dtype=np.int64)
    flags["edges"] = len(counts)
    flags["non_manifold_share"] = round(float((counts > 2).mean()), 4)
    flags["boundary_share"] = round(float((counts == 1).mean()), 4)
    used = np.zeros(n_vertices, dtype=bool)
    used[[i for f in mesh.faces for i in f]] = True
    flags["loose_vertex_share"] = round(float(1.0 - used.mean()), 4)
    flags["loose_edge_share"] = round(len(mesh.loose_edges) / (len(counts) + len(mesh.loose_edges)), 4)
    world_diagonal = length(extents * np.abs(np.asarray(scale, dtype=np.float64)))
    flags["world_diagonal"] = round(world_diagonal, 6)

    if n_faces < settings.quality_min_faces:
        failed.append(("too_few_faces", f"{n_faces} < {settings.quality_min_faces}"))
    if n_faces > settings.quality_max_faces:
        failed.append(("too_many_faces", f"{n_faces} > {settings.quality_max_faces}"))
    if flags["zero_area_share"] > settings.quality_max_zero_area_share:
        failed.append(
            (
                "zero_area_faces",
                f"{flags['zero_area_share']:.1%} > {settings.quality_max_zero_area_share:.0%}",
            )
        )
    if flags["non_manifold_share"] > settings.quality_max_non_manifold_share:
        failed.append(
            (
                "non_manifold",
                f"{flags['non_manifold_share']:.1%} of edges in >2 faces "
                f"> {settings.quality_max_non_manifold_share:.0%}",
            )
        )
    loose = max(flags["loose_vertex_share"], flags["loose_edge_share"])
    if loose > settings.quality_max_loose_share:
        failed.append(
            ("loose_geometry", f"{loose:.1%} loose vertices/edges > {settings.quality_max_loose_share:.0%}")
        )
    if not settings.quality_min_size <= world_diagonal <= settings.quality_max_size:
        failed.append(
            (
                "scale_outlier",
                f"diagonal {world_diagonal:.3g} outside [{settings.quality_min_size:g}, {settings.quality_max_size:g}]",
            )
        )
    return {**flags, "failed": failed}


def _edge_face_counts(faces: list[list[int]]) -> dict[tuple[int, int], int]:
    counts: dict[tuple[int, int], int] = {}
    for face in faces:
        for a, b in zip(face, face[1:] + face[:1], strict=True):
            key = (a, b) if a < b else (b, a)
            counts[key] = counts.get(key, 0) + 1
    return counts


# ---- exact duplicates -------------------------------------------------------------------------


def geometry_hash(mesh: MeshArrays, bits: int) -> str:
    """sha256 of the mesh made canonical: centred on its bbox, scaled to a unit box, quantised to
    ``bits`` per axis, vertices sorted (so their order does not matter), faces remapped, each face
    rotated to start at its smallest index (winding kept), and faces sorted."""
    if not len(mesh.vertices):
        return hashlib.sha256(b"empty").hexdigest()
    lo, hi = mesh.vertices.min(axis=0), mesh.vertices.max(axis=0)
    extent = float((hi - lo).max()) or 1.0
    unit = (mesh.vertices - (lo + hi) / 2) / extent  # in [-0.5, 0.5]
    # 2**bits steps (not 2**bits - 1): "nice" coordinates such as thirds or sixths of the extent
    # then never land on a rounding boundary, where float noise from a transform would flip them.
    levels = 1 << bits
    quantised = np.rint((unit + 0.5) * levels).astype(np.int64)
    unique, remap = np.unique(quantised, axis=0, return_inverse=True)
    remap = remap.reshape(-1)
    faces: list[tuple[int, ...]] = []
    for face in mesh.faces:
        ids = [int(remap[i]) for i in face]
        start = ids.index(min(ids))
        faces.append(tuple(ids[start:] + ids[:start]))
    digest = hashlib.sha256()
    digest.update(unique.astype("<i4").tobytes())
    for canonical in sorted(faces):
        digest.update(np.asarray((len(canonical), *canonical), dtype="<i4").tobytes())
    return digest.hexdigest()


# ---- near duplicates --------------------------------------------------------------------------


def shape_descriptor(mesh: MeshArrays, seed: int = 0) -> list[float]:
    """D2 shape distribution plus proportions: a histogram of distances between random surface
    points (scale-normalised by the bbox diagonal) followed by the sorted bbox extents / the
    largest. Invariant to position, scale, vertex order and triangulation; smooth-shaded and
    flat-shaded or lightly subdivided variants of a model land close together."""
    tris = mesh.triangles()
    diagonal = mesh.diagonal()
    if not len(tris) or diagonal == 0.0:
        return [0.0] * (D2_BINS + 3)
    p = mesh.vertices[tris]
    areas = 0.5 * np.linalg.norm(np.cross(p[:, 1] - p[:, 0], p[:, 2] - p[:, 0]), axis=1)
    if areas.sum() <= 0:
        return [0.0] * (D2_BINS + 3)
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(tris), size=2 * D2_SAMPLES, p=areas / areas.sum())
    r1, r2 = rng.random((2, 2 * D2_SAMPLES, 1))
    s = np.sqrt(r1)
    points = (1 - s) * p[chosen, 0] + s * (1 - r2) * p[chosen, 1] + s * r2 * p[chosen, 2]
    distances = np.linalg.norm(points[:D2_SAMPLES] - points[D2_SAMPLES:], axis=1) / diagonal
    histogram, _ = np.histogram(distances, bins=D2_BINS, range=(0.0, 1.0))
    extents = np.sort(mesh.vertices.max(axis=0) - mesh.vertices.min(axis=0))[::-1]
    proportions = extents / extents[0]
    return [round(float(x), 5) for x in (*(histogram / D2_SAMPLES), *proportions)]


def descriptor_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance between descriptors (rows of ``a`` against rows of ``b``): half the L1 distance of
    the D2 histograms (0..1) plus EXTENT_WEIGHT x the largest difference in proportions."""
    hist = 0.5 * np.abs(a[:, None, :D2_BINS] - b[None, :, :D2_BINS]).sum(axis=2)
    extent = np.abs(a[:, None, D2_BINS:] - b[None, :, D2_BINS:]).max(axis=2)
    return hist + EXTENT_WEIGHT * extent


# ---- symmetry ---------------------------------------------------------------------------------


def mirror_axes(mesh: MeshArrays, tolerance: float = 0.01, sample: int = 256) -> list[str]:
    """Axes (of 'x', 'y', 'z') across which the vertices mirror onto vertices about the bbox centre,
    within ``tolerance`` x the bbox diagonal, for at least 95% of a fixed vertex sample."""
    v = mesh.vertices
    diagonal = mesh.diagonal()
    if len(v) < 4 or diagonal == 0.0:
        return []
    v = v - (v.min(axis=0) + v.max(axis=0)) / 2  # centred, so mirroring is a sign flip
    picks = v[np.linspace(0, len(v) - 1, min(sample, len(v))).astype(np.int64)]
    limit = (tolerance * diagonal) ** 2
    axes = []
    for axis, name in enumerate("xyz"):
        mirrored = picks.copy()
        mirrored[:, axis] = -mirrored[:, axis]
        nearest = np.full(len(mirrored), np.inf)
        for start in range(0, len(v), 8192):  # chunks keep the distance matrix small
            block = v[start : start + 8192]
            squared = (mirrored**2).sum(1)[:, None] - 2 * mirrored @ block.T + (block**2).sum(1)[None, :]
            nearest = np.minimum(nearest, squared.min(axis=1))
        if float((nearest <= limit).mean()) >= 0.95:
            axes.append(name)
    return axes
