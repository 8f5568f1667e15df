"""Objects into parts, each with its box in the object frame: the data of structure-first geometry.

Pure numpy + scipy (no bpy, no torch). The rule, measured on dataset ``full`` (models/geometry
README, "Parts"):

1. The object is put in its unit frame (bounding box centred, longest side 1, as
   ``quantize_mesh`` does) and its vertices are welded at the tokenizer's grid (7 bits).
2. Connected components of the welded faces are the first parts: the artist's loose pieces.
   With ``concave_degrees``, a piece is parted further at its concave creases sharper than
   that angle (``concave_regions``).
3. A part whose tokens exceed ``max_part_tokens`` is cut into slabs at quantiles of its face
   centroids along their longest axis, as many as its tokens need, again until every piece fits.
4. Parts with fewer than ``min_part_faces`` faces, and then the smallest parts while there are
   more than ``target_parts``, merge into the part whose box is nearest (gap between the boxes,
   then centre distance), if the two fit ``max_part_tokens`` together.
5. Parts are ordered by their quantised box (centre z, y, x, then size), bottom first.

Each part is quantised in its own frame: its vertices stretched per axis to its box, so a small
part keeps the tokenizer's 128 steps per axis instead of its share of the object's. A part's
tokens are the mesh tokenizer's (``encode``), so the part model keeps its grammar.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from shared.ml.mesh_tokenizer import QuantizedMesh, TokenizerConfig, encode, quantize_mesh

RULE_VERSION = 3  # bump when the rule changes: cached decompositions are keyed by it

# Pooled tokens per authored face of the corpus (models/geometry README, "Tokenizer"): the estimate
# of a piece too large to encode, and how full a cut's slabs aim to be.
TOKENS_PER_FACE = 3.2
SLAB_FILL = 0.85

# A box side below this (in the object's unit frame) is flat: the part is not stretched along it.
FLAT = 1e-6


@dataclass(frozen=True)
class DecompositionConfig:
    max_part_tokens: int = 448
    min_part_faces: int = 4
    target_parts: int = 16
    # Dihedral angle (degrees) above which a concave edge separates parts within a connected
    # piece (a leg welded under a seat); 0 keeps connected pieces whole.
    concave_degrees: float = 30.0
    max_parts: int = 64
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> DecompositionConfig:
        data = dict(data)
        data["tokenizer"] = TokenizerConfig(**data.get("tokenizer", {}))
        return cls(**data)


@dataclass
class Part:
    faces: np.ndarray  # indices into the object's face list
    centre: np.ndarray  # (3,) box centre in the object's unit frame
    size: np.ndarray  # (3,) box sides
    tokens: list[int]  # the part in its own frame, BOS .. EOS
    face_count: int  # faces of the part after quantisation in its own frame


@dataclass
class Decomposition:
    parts: list[Part]
    fits: bool  # at most max_parts parts, each within max_part_tokens
    stats: dict[str, int]


def unit_frame(vertices: np.ndarray) -> np.ndarray:
    """Vertices centred on their bounding box and scaled so the longest side is 1."""
    lo, hi = vertices.min(0), vertices.max(0)
    return (vertices - (lo + hi) / 2) / (float((hi - lo).max()) or 1.0)


def part_frame(vertices: np.ndarray, centre: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Vertices (object unit frame) stretched per axis so the box becomes the unit cube; flat axes stay 0."""
    return np.where(size > FLAT, (vertices - centre) / np.maximum(size, FLAT), 0.0)


def quantize_part(
    unit_vertices: np.ndarray, faces: list[tuple[int, ...]], tokenizer: TokenizerConfig
) -> tuple[QuantizedMesh, np.ndarray, np.ndarray]:
    """(the part quantised in its own frame, box centre, box size) of some faces of an object."""
    used = np.unique(np.fromiter((v for f in faces for v in f), dtype=np.int64))
    remap = np.full(int(used.max()) + 1, -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    verts = unit_vertices[used]
    lo, hi = verts.min(0), verts.max(0)
    centre, size = (lo + hi) / 2, hi - lo
    local = [tuple(int(remap[v]) for v in f) for f in faces]
    return quantize_mesh(part_frame(verts, centre, size), local, tokenizer), centre, size


def concave_regions(
    unit_vertices: np.ndarray, faces: list[tuple[int, ...]], weld: np.ndarray, degrees: float
) -> np.ndarray:
    """Region label of each face: faces sharing a welded edge are connected unless the edge is
    concave (each face's centroid in front of the other's plane) with a dihedral angle above
    ``degrees``. Convex creases (a box's corners) keep a piece together; concave ones (where a
    leg meets a seat) part it, which approximates a convex decomposition."""
    sizes = np.array([len(f) for f in faces])
    starts = np.cumsum(sizes) - sizes
    corner = np.fromiter((v for f in faces for v in f), dtype=np.int64)
    owner = np.repeat(np.arange(len(faces)), sizes)
    following = corner.copy()  # each corner's next corner within its face
    following[:-1] = corner[1:]
    following[starts + sizes - 1] = corner[starts]
    points, nexts = unit_vertices[corner], unit_vertices[following]
    normals = np.add.reduceat(np.cross(points, nexts), starts)  # Newell's method
    normals /= np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)
    centroids = np.add.reduceat(points, starts) / sizes[:, None]
    a, b = weld[corner], weld[following]
    keys = np.minimum(a, b) * (int(weld.max()) + 1) + np.maximum(a, b)
    order = np.argsort(keys, kind="stable")
    same = keys[order][1:] == keys[order][:-1]
    f1, f2 = owner[order][:-1][same], owner[order][1:][same]
    cos = (normals[f1] * normals[f2]).sum(1)
    bends_in = ((centroids[f2] - centroids[f1]) * normals[f1]).sum(1) > 1e-9
    joined = ~(bends_in & (cos < np.cos(np.radians(degrees)))) & (f1 != f2)
    n = len(faces)
    graph = coo_matrix((np.ones(int(joined.sum())), (f1[joined], f2[joined])), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def face_components(faces: list[tuple[int, ...]], weld: np.ndarray) -> np.ndarray:
    """Component label of each face: faces sharing a welded vertex are connected."""
    rows = np.repeat(np.arange(len(faces)), [len(f) for f in faces])
    cols = weld[np.fromiter((v for f in faces for v in f), dtype=np.int64)] + len(faces)
    n = len(faces) + int(weld.max()) + 1
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1][: len(faces)]


@dataclass
class _Piece:
    """A part while the rule runs: its faces, box and (estimated until measured) token count."""

    faces: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    tokens: int
    measured: Part | None = None  # the encoded part, while the piece is unchanged


class _Builder:
    """The parts of one object while the rule runs. Encoding is the slow step (pure Python), so a
    piece is encoded only where its token count decides something: a piece whose faces alone
    (two tokens each at least) exceed the budget is cut unencoded, and merges add up counts."""

    def __init__(self, unit_vertices: np.ndarray, faces: list[tuple[int, ...]], config: DecompositionConfig):
        self.v, self.faces, self.config = unit_vertices, faces, config
        flat = np.fromiter((v for f in faces for v in f), dtype=np.int64)
        sizes = np.array([len(f) for f in faces])
        starts = np.cumsum(sizes) - sizes
        corners = unit_vertices[flat]
        self.centroids = np.add.reduceat(corners, starts) / sizes[:, None]
        self.face_lo = np.minimum.reduceat(corners, starts)
        self.face_hi = np.maximum.reduceat(corners, starts)

    def piece(self, face_ids: np.ndarray, tokens: int | None = None) -> _Piece:
        lo, hi = self.face_lo[face_ids].min(0), self.face_hi[face_ids].max(0)
        if tokens is None and 2 * len(face_ids) + 2 <= self.config.max_part_tokens:
            part = self.measure(face_ids)
            return _Piece(face_ids, lo, hi, len(part.tokens), part)
        # Too many faces to fit at two tokens each: estimated at the corpus's tokens per face.
        return _Piece(
            face_ids, lo, hi, int(TOKENS_PER_FACE * len(face_ids)) + 2 if tokens is None else tokens
        )

    def measure(self, face_ids: np.ndarray) -> Part:
        mesh, centre, size = quantize_part(self.v, [self.faces[i] for i in face_ids], self.config.tokenizer)
        tokens = encode(mesh, self.config.tokenizer) if mesh.faces else []
        return Part(np.sort(face_ids), centre, size, tokens, len(mesh.faces))

    def fitted(self, piece: _Piece) -> list[_Piece]:
        """The piece, or slabs of it cut at quantiles of its face centroids along their longest
        axis, as many as its tokens need (each slab checked again), so each fits the budget."""
        budget = self.config.max_part_tokens
        if piece.tokens <= budget or len(piece.faces) < 2:
            return [piece]
        c = self.centroids[piece.faces]
        axis = int(np.argmax(c.max(0) - c.min(0)))
        order = np.argsort(c[:, axis], kind="stable")
        slabs = min(len(order), max(2, math.ceil(piece.tokens / (SLAB_FILL * budget))))
        return [p for ids in np.array_split(piece.faces[order], slabs) for p in self.fitted(self.piece(ids))]

    def merged(self, pieces: list[_Piece], stats: dict[str, int]) -> list[_Piece]:
        """Tiny pieces, then the smallest while there are more than target_parts, into the nearest box."""
        cfg = self.config
        while len(pieces) > 1:
            sizes = np.array([len(p.faces) for p in pieces])
            tiny = sizes < cfg.min_part_faces
            if len(pieces) <= cfg.target_parts and not tiny.any():
                break
            lengths = np.array([p.tokens for p in pieces])
            by_size = np.argsort(sizes, kind="stable")
            candidates = [i for i in by_size if tiny[i]]
            if len(pieces) > cfg.target_parts:
                candidates += [i for i in by_size if not tiny[i]]
            centres = np.array([(p.lo + p.hi) / 2 for p in pieces])
            halves = np.array([(p.hi - p.lo) / 2 for p in pieces])
            for i in candidates:
                gap = np.linalg.norm(np.maximum(0, np.abs(centres - centres[i]) - halves - halves[i]), axis=1)
                near = gap + 1e-3 * np.linalg.norm(centres - centres[i], axis=1)
                # Tokens of the merged part are about the sum of both (each loses a BOS or EOS).
                near[(lengths + lengths[i] - 2 > cfg.max_part_tokens) | (np.arange(len(pieces)) == i)] = (
                    np.inf
                )
                j = int(np.argmin(near))
                if np.isfinite(near[j]):
                    break
            else:
                break
            a, b = pieces[i], pieces[j]
            stats["merges"] += 1
            merged = _Piece(
                np.concatenate([a.faces, b.faces]),
                np.minimum(a.lo, b.lo),
                np.maximum(a.hi, b.hi),
                a.tokens + b.tokens - 2,
            )
            pieces = [p for k, p in enumerate(pieces) if k not in (i, j)] + [merged]
        return pieces


def decompose(vertices, faces, config: DecompositionConfig | None = None) -> Decomposition:
    """The parts of a mesh by the module's rule; every face of the mesh is in exactly one part
    (faces that collapse in their part's frame still belong to it, with nothing to write)."""
    config = config or DecompositionConfig()
    verts = np.asarray(vertices, dtype=np.float64)
    faces = [tuple(int(v) for v in f) for f in faces]
    if verts.ndim != 2 or verts.shape[1] != 3 or not len(faces):
        raise ValueError("decompose needs (N, 3) vertices and at least one face")
    unit = unit_frame(verts)
    top = (1 << config.tokenizer.bits) - 1
    weld = np.unique(np.rint((unit + 0.5) * top).astype(np.int64), axis=0, return_inverse=True)[1].reshape(-1)
    labels = face_components(faces, weld)
    stats = {"components": int(labels.max()) + 1, "merges": 0}
    if config.concave_degrees > 0:
        labels = concave_regions(unit, faces, weld, config.concave_degrees)
        stats["regions"] = int(labels.max()) + 1
    builder = _Builder(unit, faces, config)
    order = np.argsort(labels, kind="stable")
    bounds = np.flatnonzero(np.diff(labels[order])) + 1
    pieces = [p for ids in np.split(order, bounds) for p in builder.fitted(builder.piece(ids))]
    stats["after_split"] = len(pieces)
    pieces = builder.merged(pieces, stats)
    # Merged counts were estimates: measure, and cut what turned out too long.
    parts = []
    for piece in pieces:
        part = piece.measured or builder.measure(piece.faces)
        if len(part.tokens) > config.max_part_tokens:
            cut = builder.fitted(_Piece(piece.faces, piece.lo, piece.hi, len(part.tokens)))
            parts += [p.measured or builder.measure(p.faces) for p in cut]
        else:
            parts.append(part)
    empty = [p for p in parts if not p.face_count]
    for p in empty:  # nothing to write: their faces ride along with the nearest real part
        parts.remove(p)
    if empty and parts:
        centres = np.array([p.centre for p in parts])
        for p in empty:
            j = int(np.argmin(np.linalg.norm(centres - p.centre, axis=1)))
            parts[j].faces = np.sort(np.concatenate([parts[j].faces, p.faces]))
    stats["empty_parts"] = len(empty)
    parts.sort(key=lambda p: tuple(box_key(p.centre, p.size, config.tokenizer.bits)))
    fits = bool(parts) and len(parts) <= config.max_parts
    fits = fits and all(len(p.tokens) <= config.max_part_tokens for p in parts)
    return Decomposition(parts, fits, stats)


def quantize_box(centre: np.ndarray, size: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Grid steps (0 .. 2**bits - 1) of a box's centre (over [-0.5, 0.5]) and sides (over [0, 1]);
    a side that rounding would push past the unit cube is cut to fit (the layout grammar's rule)."""
    top = (1 << bits) - 1
    q_centre = np.clip(np.rint((np.asarray(centre) + 0.5) * top), 0, top).astype(np.int64)
    q_size = np.clip(np.rint(np.asarray(size) * top), 0, top).astype(np.int64)
    return q_centre, np.minimum(q_size, 2 * np.minimum(q_centre, top - q_centre))


def box_key(centre: np.ndarray, size: np.ndarray, bits: int) -> list[int]:
    """Sort key of a part: quantised centre z, y, x, then size z, y, x."""
    q_centre, q_size = quantize_box(centre, size, bits)
    return [*q_centre[::-1].tolist(), *q_size[::-1].tolist()]
