"""Mesh and point-cloud metrics for the geometry evaluation (numpy + scipy, no torch).

Shapes are compared in the tokenizer's unit cube (bounding box centred, longest side 1), the
space the model generates in. Chamfer distance here is the sum of the two mean squared
nearest-neighbour distances (the convention behind the COV / MMD / 1-NNA figures in
ANCHORS.md); the F-score uses plain distances at a threshold.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from scipy.spatial import cKDTree

from shared.ml.mesh_tokenizer import QuantizedMesh


def triangle_arrays(mesh: QuantizedMesh) -> np.ndarray:
    """(T, 3, 3) triangle corner positions in the unit cube (n-gons fan-triangulated)."""
    v = mesh.unit_vertices()
    tris = [(f[0], f[i], f[i + 1]) for f in mesh.faces for i in range(1, len(f) - 1)]
    return v[np.array(tris, dtype=np.int64).reshape(-1, 3)]


def sample_points(mesh: QuantizedMesh, count: int, rng: np.random.Generator) -> np.ndarray:
    """Area-weighted uniform samples on the surface; the vertices when the surface has no area."""
    tris = triangle_arrays(mesh)
    areas = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    if len(tris) == 0 or areas.sum() <= 0:
        v = mesh.unit_vertices()
        return v[rng.integers(len(v), size=count)] if len(v) else np.zeros((count, 3))
    pick = rng.choice(len(tris), size=count, p=areas / areas.sum())
    r1, r2 = rng.random((2, count, 1))
    s = np.sqrt(r1)
    t = tris[pick]
    return (1 - s) * t[:, 0] + s * (1 - r2) * t[:, 1] + s * r2 * t[:, 2]


class Cloud:
    """A point cloud with its k-d tree, so pairwise distances reuse the trees."""

    def __init__(self, points: np.ndarray):
        self.points = points
        self.tree = cKDTree(points)


def _nn(a: Cloud, b: Cloud) -> tuple[np.ndarray, np.ndarray]:
    return b.tree.query(a.points)[0], a.tree.query(b.points)[0]


def chamfer(a: Cloud, b: Cloud) -> float:
    d_ab, d_ba = _nn(a, b)
    return float((d_ab**2).mean() + (d_ba**2).mean())


def fscore(a: Cloud, b: Cloud, threshold: float = 0.02) -> float:
    d_ab, d_ba = _nn(a, b)
    precision, recall = (d_ab < threshold).mean(), (d_ba < threshold).mean()
    return float(2 * precision * recall / (precision + recall)) if precision + recall else 0.0


def distance_matrix(rows: list[Cloud], cols: list[Cloud] | None = None) -> np.ndarray:
    """Chamfer distances of every row cloud to every column cloud; without cols, of the rows to
    each other (symmetric: each pair computed once, zero diagonal)."""
    if cols is not None:
        return np.array([[chamfer(a, b) for b in cols] for a in rows]).reshape(len(rows), len(cols))
    out = np.zeros((len(rows), len(rows)))
    for i, j in zip(*np.triu_indices(len(rows), 1), strict=True):
        out[i, j] = out[j, i] = chamfer(rows[i], rows[j])
    return out


def set_metrics(
    generated: list[Cloud], reference: list[Cloud], reference_distances: np.ndarray | None = None
) -> dict[str, float]:
    """COV (%), MMD (x10^3) and 1-NNA (%) of a generated set against a reference set.

    reference_distances: distance_matrix(reference), when several sets are scored against it."""
    gr = distance_matrix(generated, reference)
    cov = len(set(gr.argmin(1))) / len(reference)
    mmd = gr.min(0).mean()
    gg = distance_matrix(generated)
    rr = distance_matrix(reference) if reference_distances is None else reference_distances
    n_g = len(generated)
    full = np.block([[gg, gr], [gr.T, rr]])
    np.fill_diagonal(full, np.inf)
    labels = np.r_[np.zeros(n_g), np.ones(len(reference))]
    nna = (labels[full.argmin(1)] == labels).mean()
    return {"COV": 100 * cov, "MMD": 1e3 * float(mmd), "1-NNA": 100 * float(nna)}


def validity(mesh: QuantizedMesh) -> dict[str, float]:
    """Degenerate faces (zero area or a repeated vertex) and the share of edges with exactly two faces."""
    degenerate = sum(len(set(f)) != len(f) for f in mesh.faces)
    tris = triangle_arrays(mesh)
    areas = 0.5 * np.linalg.norm(np.cross(tris[:, 1] - tris[:, 0], tris[:, 2] - tris[:, 0]), axis=1)
    face_area = (
        np.add.reduceat(areas, np.cumsum([0] + [len(f) - 2 for f in mesh.faces[:-1]]))
        if len(areas)
        else areas
    )
    degenerate += int((face_area <= 1e-12).sum())
    edges = Counter(frozenset((f[i], f[(i + 1) % len(f)])) for f in mesh.faces for i in range(len(f)))
    manifold = sum(1 for n in edges.values() if n == 2) / max(1, len(edges))
    return {"faces": len(mesh.faces), "degenerate_faces": degenerate, "manifold_edge_share": manifold}


class NearestNeighbourIndex:
    """Chamfer distance to the nearest of many clouds: a coarse pass on 64-point subsamples picks
    candidates, the exact distance decides among them."""

    def __init__(self, clouds: list[Cloud], coarse_points: int = 64, candidates: int = 16):
        self.clouds, self.candidates = clouds, candidates
        self.coarse = np.stack([c.points[:coarse_points] for c in clouds]).astype(np.float32)
        self.coarse_points = coarse_points

    def nearest(self, cloud: Cloud) -> tuple[int, float]:
        q = cloud.points[: self.coarse_points].astype(np.float32)
        d = (
            (self.coarse**2).sum(-1)[:, :, None]
            + (q**2).sum(-1)[None, None, :]
            - 2 * np.einsum("nid,jd->nij", self.coarse, q)
        )
        rough = d.min(2).mean(1) + d.min(1).mean(1)
        best = min(np.argsort(rough)[: self.candidates], key=lambda j: chamfer(cloud, self.clouds[j]))
        return int(best), chamfer(cloud, self.clouds[best])
