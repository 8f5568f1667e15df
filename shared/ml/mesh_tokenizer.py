"""N-gon mesh tokenizer: lossless at the quantisation grid, canonical, with a grammar for decoding.

Pure Python + numpy (no torch): the trainer, the evaluation, the benchmarks and the serving code
all load it.

Canonical mesh (``quantize_mesh``)
    Vertices are centred on their bounding box, scaled so the longest side is 1 and quantised to
    ``bits`` per axis (0 .. 2**bits - 1). Vertices that land on the same grid point are merged.
    Vertices are sorted by z, then y, then x. Each face drops repeated consecutive corners;
    a face left with fewer than 3 corners, or that visits a vertex twice, is dropped and counted
    (``faces_collapsed``). Faces above ``max_face_size`` corners are cut into a fan of smaller
    polygons (``faces_split``). Each face is rotated to start at its lowest vertex (winding
    kept), exact duplicates are dropped (``faces_duplicate``), faces are sorted, and vertices
    that no face uses are dropped (``vertices_unused``).

Token grammar (``encode`` / ``MeshGrammar``)::

    sequence := BOS face+ EOS
    face     := POP_d* (NEW_s corner{s} | CONT_e_s_f corner{s-2})
    corner   := REF_r | [BLOCK_b] OFFSET_o

- ``NEW_s`` starts a face of ``s`` corners (3 <= s <= max_face_size), all given explicitly, and
  empties the anchor stack.
- ``CONT_e_s_f`` adds a face of ``s`` corners that shares edge ``e`` of the *anchor* face (the
  face on top of the stack), edge e running from corner e to corner e+1 of the anchor as it was
  emitted: with (a, b) that edge, the new face starts with the two implicit corners [b, a]
  (f=0, consistent winding) or [a, b] (f=1, flipped winding), and only its other s-2 corners
  follow. Every face is pushed on the stack once emitted.
- ``POP_d`` removes the top d faces of the stack (1 <= d <= max_pop; the encoder repeats it for
  longer jumps), so the traversal can branch from an earlier face: a depth-first walk over
  face adjacency in which most corners are implicit.
- A corner is ``REF_r``: the vertex with recency rank r among the vertices already placed and not
  in the current face (rank 0 = most recently used; every placed corner moves its vertex to the
  front), r < max_ref. Or coordinates as BPT does: the grid point split into a block (high
  bits) and an offset (low ``offset_bits``), each axis packed z-major into one token; ``BLOCK_b``
  is omitted when it equals the block of the previous corner. Coordinates equal to an existing
  vertex mean that vertex, so a reference is only a shortcut and any corner can be spelt out.

The encoder is deterministic (Warnsdorff-style choice of the next face: the unvisited neighbour
with the fewest unvisited neighbours), so each canonical mesh has one token sequence.
``MeshGrammar`` is the decoder: fed token by token it rebuilds the mesh, and ``allowed()`` gives
the tokens that keep the sequence valid (no dangling references, no repeated vertex in a face,
no face repeated, EOS only between faces, a face budget and a token budget that leave room to
finish), so constrained sampling always yields a mesh that decodes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PAD, BOS, EOS = 0, 1, 2


class TokenizerError(ValueError):
    """Bad input mesh or a token sequence that breaks the grammar."""


@dataclass(frozen=True)
class TokenizerConfig:
    bits: int = 7
    offset_bits: int = 4
    max_face_size: int = 32
    max_ref: int = 128
    max_pop: int = 16

    def __post_init__(self) -> None:
        if not 2 <= self.bits <= 10 or not 1 <= self.offset_bits < self.bits:
            raise TokenizerError(f"unsupported quantisation: bits={self.bits} offset_bits={self.offset_bits}")
        if self.max_face_size < 3 or self.max_ref < 1 or self.max_pop < 1:
            raise TokenizerError("max_face_size >= 3, max_ref >= 1 and max_pop >= 1 are required")


@dataclass
class QuantizedMesh:
    """A canonical mesh on the integer grid, plus how to map it back to the input's space."""

    vertices: np.ndarray  # (V, 3) int64, sorted z, y, x
    faces: list[tuple[int, ...]]
    bits: int
    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    scale: float = 1.0
    stats: dict[str, int] = field(default_factory=dict)

    @property
    def triangle_count(self) -> int:
        return sum(len(f) - 2 for f in self.faces)

    def unit_vertices(self) -> np.ndarray:
        """Grid points as floats in the unit cube [-0.5, 0.5]^3."""
        return self.vertices.astype(np.float64) / ((1 << self.bits) - 1) - 0.5

    def world_vertices(self) -> np.ndarray:
        return self.unit_vertices() * self.scale + self.center


class Vocabulary:
    """Token id layout: specials, POP, NEW, CONT, REF, BLOCK, OFFSET, in contiguous ranges."""

    def __init__(self, config: TokenizerConfig):
        c = config
        self.config = c
        self.sizes = c.max_face_size - 2  # face sizes 3 .. max_face_size
        self.pop0 = 3
        self.new0 = self.pop0 + c.max_pop
        self.cont0 = self.new0 + self.sizes
        self.ref0 = self.cont0 + c.max_face_size * self.sizes * 2
        self.block0 = self.ref0 + c.max_ref
        self.block_side = 1 << (c.bits - c.offset_bits)
        self.offset_side = 1 << c.offset_bits
        self.offset0 = self.block0 + self.block_side**3
        self.size = self.offset0 + self.offset_side**3

    def pop(self, d: int) -> int:
        return self.pop0 + d - 1

    def new(self, s: int) -> int:
        return self.new0 + s - 3

    def cont(self, edge: int, s: int, flip: int) -> int:
        return self.cont0 + (edge * self.sizes + (s - 3)) * 2 + flip

    def ref(self, rank: int) -> int:
        return self.ref0 + rank

    def split(self, q: tuple[int, int, int]) -> tuple[int, int]:
        """Block and offset index of a grid point (x, y, z), z-major."""
        o, b = self.config.offset_bits, self.block_side
        m = self.offset_side - 1
        block = ((q[2] >> o) * b + (q[1] >> o)) * b + (q[0] >> o)
        offset = ((q[2] & m) * self.offset_side + (q[1] & m)) * self.offset_side + (q[0] & m)
        return block, offset

    def join(self, block: int, offset: int) -> tuple[int, int, int]:
        b, s, o = self.block_side, self.offset_side, self.config.offset_bits
        bz, by, bx = block // (b * b), (block // b) % b, block % b
        oz, oy, ox = offset // (s * s), (offset // s) % s, offset % s
        return ((bx << o) | ox, (by << o) | oy, (bz << o) | oz)

    def describe(self, token: int) -> str:
        if token < 3:
            return ("PAD", "BOS", "EOS")[token]
        if token < self.new0:
            return f"POP_{token - self.pop0 + 1}"
        if token < self.cont0:
            return f"NEW_{token - self.new0 + 3}"
        if token < self.ref0:
            k = token - self.cont0
            flip, k = k % 2, k // 2
            return f"CONT_e{k // self.sizes}_s{k % self.sizes + 3}_f{flip}"
        if token < self.block0:
            return f"REF_{token - self.ref0}"
        if token < self.offset0:
            return f"BLOCK_{token - self.block0}"
        return f"OFFSET_{token - self.offset0}"


def _canonical_faces(faces: list[tuple[int, ...]], stats: dict[str, int]) -> list[tuple[int, ...]]:
    rotated = set()
    out = []
    for f in faces:
        i = f.index(min(f))
        r = f[i:] + f[:i]
        if r in rotated:
            stats["faces_duplicate"] = stats.get("faces_duplicate", 0) + 1
            continue
        rotated.add(r)
        out.append(r)
    out.sort()
    return out


def canonicalize(vertices: np.ndarray, faces: list[tuple[int, ...]], bits: int) -> QuantizedMesh:
    """Canonical form of a mesh whose vertices already are distinct grid points."""
    stats: dict[str, int] = {}
    used = sorted({v for f in faces for v in f})
    verts = np.asarray(vertices, dtype=np.int64).reshape(-1, 3)[used]
    order = np.lexsort((verts[:, 0], verts[:, 1], verts[:, 2]))
    remap = {used[int(old)]: new for new, old in enumerate(order)}
    new_faces = [tuple(remap[v] for v in f) for f in faces]
    return QuantizedMesh(verts[order], _canonical_faces(new_faces, stats), bits, stats=stats)


def _split_face(face: list[int], max_size: int) -> list[tuple[int, ...]]:
    """Cuts an n-gon into a fan of polygons of at most ``max_size`` corners around its first corner."""
    pieces, start = [], 1
    while start < len(face) - 1:
        end = min(start + max_size - 2, len(face) - 1)
        pieces.append((face[0], *face[start : end + 1]))
        start = end
    return pieces


def quantize_mesh(vertices, faces, config: TokenizerConfig | None = None) -> QuantizedMesh:
    """Quantises and canonicalises a float mesh; see the module docstring for every rule."""
    config = config or TokenizerConfig()
    verts = np.asarray(vertices, dtype=np.float64)
    if verts.ndim != 2 or verts.shape[1] != 3:
        raise TokenizerError(f"vertices must be an (N, 3) array, got shape {verts.shape}")
    if len(verts) and not np.isfinite(verts).all():
        raise TokenizerError("vertices contain NaN or infinite coordinates")
    for f in faces:
        if len(f) < 3 or min(f) < 0 or max(f) >= len(verts):
            raise TokenizerError(f"face {list(f)[:8]} has fewer than 3 corners or an index out of range")
    stats = {"faces_in": len(faces), "vertices_in": len(verts), "faces_collapsed": 0, "faces_split": 0}
    if len(verts) == 0:
        return QuantizedMesh(np.zeros((0, 3), np.int64), [], config.bits, stats=stats)
    lo, hi = verts.min(0), verts.max(0)
    center = (lo + hi) / 2
    scale = float((hi - lo).max()) or 1.0
    top = (1 << config.bits) - 1
    grid = np.clip(np.rint(((verts - center) / scale + 0.5) * top), 0, top).astype(np.int64)
    points, inverse = np.unique(grid, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    cleaned: list[tuple[int, ...]] = []
    for f in faces:
        corners = [int(inverse[v]) for v in f]
        corners = [v for i, v in enumerate(corners) if v != corners[i - 1]] if len(set(corners)) > 1 else []
        if len(corners) < 3 or len(set(corners)) != len(corners):
            stats["faces_collapsed"] += 1
            continue
        if len(corners) > config.max_face_size:
            stats["faces_split"] += 1
            cleaned.extend(_split_face(corners, config.max_face_size))
        else:
            cleaned.append(tuple(corners))
    mesh = canonicalize(points, cleaned, config.bits)
    mesh.center, mesh.scale = center, scale
    stats["faces_duplicate"] = mesh.stats.get("faces_duplicate", 0)
    stats["vertices_merged"] = len(verts) - len(points)
    stats["vertices_unused"] = len(points) - len(mesh.vertices)
    mesh.stats = stats
    return mesh


class MeshGrammar:
    """Decoder state machine: ``feed`` tokens (after BOS), ``allowed`` says what may come next.

    ``face_budget`` caps the faces, ``max_tokens`` the whole sequence (BOS and EOS included);
    ``min_faces`` holds EOS back until that many faces exist or no further face fits.
    """

    def __init__(
        self,
        config: TokenizerConfig | None = None,
        face_budget: int | None = None,
        max_tokens=None,
        min_faces: int = 1,
    ):
        self.config = config or TokenizerConfig()
        self.min_faces = max(1, min_faces)
        if face_budget is not None and face_budget < 1:
            raise TokenizerError("face_budget must be at least 1")
        self.vocab = Vocabulary(self.config)
        self.face_budget = face_budget
        self.max_tokens = max_tokens
        if max_tokens is not None and max_tokens < 9:
            raise TokenizerError("max_tokens must leave room for BOS, one spelt-out triangle and EOS")
        self.points: list[tuple[int, int, int]] = []
        self.index: dict[tuple[int, int, int], int] = {}
        self.faces: list[tuple[int, ...]] = []
        self.stack: list[int] = []
        self.recency: list[int] = []  # vertex ids, most recently used first
        self.closers: dict[tuple[int, ...], set[int]] = {}  # forbids closing a face that exists
        self.used = 1  # BOS
        self.done = False
        self.face: list[int] = []
        self.corners_left = 0
        self.block: int | None = None  # block of the previous corner
        self.pending_block: int | None = None  # a BLOCK token waiting for its OFFSET
        self._mask: np.ndarray | None = None  # allowed_mask of this state; feed checks it too

    # -- state updates -------------------------------------------------------------------
    def _place(self, v: int) -> None:
        self.face.append(v)
        self.recency.remove(v)
        self.recency.insert(0, v)
        self.block = self.vocab.split(self.points[v])[0]
        self.corners_left -= 1
        if self.corners_left == 0:
            face = tuple(self.face)
            self.faces.append(face)
            self.stack.append(len(self.faces) - 1)
            self.face = []
            n = len(face)
            for j in range(n):  # every rotation's first n-1 corners -> the corner that closes it
                run = tuple(face[(j + k) % n] for k in range(n - 1))
                self.closers.setdefault(run, set()).add(face[(j + n - 1) % n])

    def _vertex_at(self, point: tuple[int, int, int]) -> int:
        if point not in self.index:
            self.index[point] = len(self.points)
            self.points.append(point)
            self.recency.append(self.index[point])
        return self.index[point]

    def feed(self, token: int) -> None:
        if not self.allowed_token(token):
            raise TokenizerError(f"token {token} ({self.describe(token)}) is not allowed here")
        self._mask = None
        self.used += 1
        v = self.vocab
        if token == EOS:
            self.done = True
        elif token < v.new0:
            del self.stack[len(self.stack) - (token - v.pop0 + 1) :]
        elif token < v.cont0:
            self.stack, self.face, self.corners_left = [], [], token - v.new0 + 3
        elif token < v.ref0:
            k = token - v.cont0
            flip, k = k % 2, k // 2
            edge, size = k // v.sizes, k % v.sizes + 3
            anchor = self.faces[self.stack[-1]]
            a, b = anchor[edge], anchor[(edge + 1) % len(anchor)]
            self.face, self.corners_left = [], size
            for corner in (a, b) if flip else (b, a):
                self._place(corner)
        elif token < v.block0:
            self._place(self.recency[len(self.face) + token - v.ref0])
        elif token < v.offset0:
            self.pending_block = token - v.block0
        else:
            block = self.block if self.pending_block is None else self.pending_block
            assert block is not None  # allowed_token refuses an OFFSET without a block
            self.pending_block = None
            self._place(self._vertex_at(v.join(block, token - v.offset0)))

    # -- what may come next --------------------------------------------------------------
    def _face_fits(self, explicit: int) -> bool:
        """Room for the structure token, `explicit` spelt-out corners (2 tokens each) and EOS."""
        return self.max_tokens is None or self.used + 1 + 2 * explicit + 1 <= self.max_tokens

    def _forbidden_vertices(self) -> set[int]:
        """Vertices the next corner may not be: those of the face so far and, for its last corner,
        any that would repeat an existing face (same corners, same winding)."""
        closing = self.closers.get(tuple(self.face), set()) if self.corners_left == 1 else set()
        return set(self.face) | closing

    def _forbidden_offsets(self, block: int, forbidden: set[int]) -> list[int]:
        out = []
        for u in forbidden:
            b, o = self.vocab.split(self.points[u])
            if b == block:
                out.append(o)
        return out

    def allowed_mask(self) -> np.ndarray:
        """A read-only bool mask over the vocabulary of the tokens that may come next."""
        if self._mask is None:
            self._mask = self._compute_mask()
            self._mask.flags.writeable = False
        return self._mask

    def _compute_mask(self) -> np.ndarray:
        v, c = self.vocab, self.config
        mask = np.zeros(v.size, dtype=bool)
        if self.done:
            return mask
        if self.pending_block is not None or self.corners_left:
            forbidden = self._forbidden_vertices()
            if self.pending_block is None:
                refs = min(c.max_ref, len(self.recency) - len(self.face))
                mask[v.ref0 : v.ref0 + refs] = True
                for u in forbidden - set(self.face):
                    rank = self.recency.index(u) - len(self.face)
                    if rank < refs:
                        mask[v.ref0 + rank] = False
                mask[v.block0 : v.offset0] = True
            block = self.pending_block if self.pending_block is not None else self.block
            if block is not None:
                mask[v.offset0 :] = True
                for o in self._forbidden_offsets(block, forbidden):
                    mask[v.offset0 + o] = False
            return mask
        if self.face_budget is not None and len(self.faces) >= self.face_budget:
            mask[EOS] = True
            return mask
        for s in range(3, c.max_face_size + 1):
            mask[v.new(s)] = self._face_fits(s)
        if self.stack:
            anchor = self.faces[self.stack[-1]]
            sizes = sum(self._face_fits(s - 2) for s in range(3, c.max_face_size + 1))
            mask[v.cont0 : v.ref0].reshape(c.max_face_size, v.sizes, 2)[: len(anchor), :sizes] = True
            if self._face_fits(2):  # POP, then at least a CONT triangle
                mask[v.pop0 : v.pop0 + min(c.max_pop, len(self.stack) - 1)] = True
        mask[EOS] = bool(self.faces) and (len(self.faces) >= self.min_faces or not mask.any())
        return mask

    def allowed_token(self, token: int) -> bool:
        return 0 <= token < self.vocab.size and bool(self.allowed_mask()[token])

    def describe(self, token: int) -> str:
        return self.vocab.describe(token) if 0 <= token < self.vocab.size else "out of range"

    def mesh(self) -> QuantizedMesh:
        """The decoded mesh in canonical form (finished faces only)."""
        pts = np.array(self.points, dtype=np.int64).reshape(-1, 3)
        return canonicalize(pts, self.faces, self.config.bits)


def encode(mesh: QuantizedMesh, config: TokenizerConfig | None = None) -> list[int]:
    """Token sequence (BOS ... EOS) of a canonical mesh from ``quantize_mesh``."""
    config = config or TokenizerConfig()
    if mesh.bits != config.bits:
        raise TokenizerError(f"mesh quantised at {mesh.bits} bits, tokenizer expects {config.bits}")
    vocab = Vocabulary(config)
    faces = mesh.faces
    if any(len(f) > config.max_face_size for f in faces):
        raise TokenizerError("a face is larger than max_face_size: quantize_mesh with the same config")
    points = [(int(p[0]), int(p[1]), int(p[2])) for p in mesh.vertices]
    edge_faces: dict[tuple[int, int], list[int]] = {}
    for fi, f in enumerate(faces):
        for i, a in enumerate(f):
            b = f[(i + 1) % len(f)]
            edge_faces.setdefault((min(a, b), max(a, b)), []).append(fi)
    neighbours = [
        {
            g
            for i, a in enumerate(f)
            for g in edge_faces[(min(a, f[(i + 1) % len(f)]), max(a, f[(i + 1) % len(f)]))]
        }
        - {fi}
        for fi, f in enumerate(faces)
    ]
    open_degree = [len(n) for n in neighbours]
    visited = [False] * len(faces)
    emitted: list[tuple[int, ...]] = [()] * len(faces)  # each face's corners in emitted order
    stack: list[int] = []
    recency: list[int] = []
    placed: set[int] = set()
    tokens = [BOS]
    block: int | None = None
    next_unvisited = 0

    def next_from(anchor: int) -> tuple[int, int] | None:
        """(edge, face) of the anchor's unvisited neighbour with the fewest unvisited neighbours."""
        corners = emitted[anchor]
        best = None
        for e in range(min(len(corners), config.max_face_size)):
            a, b = corners[e], corners[(e + 1) % len(corners)]
            for g in edge_faces[(min(a, b), max(a, b))]:
                if not visited[g] and (best is None or open_degree[g] < best[0]):
                    best = (open_degree[g], e, g)
        return None if best is None else (best[1], best[2])

    def place(v: int, explicit: bool, face_so_far: int) -> None:
        nonlocal block
        b, o = vocab.split(points[v])
        if explicit:
            rank = None
            if v in placed:
                # In-face vertices sit at the front of the recency list; ranks skip them.
                head = recency[: face_so_far + config.max_ref]
                if v in head:
                    rank = head.index(v) - face_so_far
            if rank is not None:
                tokens.append(vocab.ref(rank))
            else:
                if b != block:
                    tokens.append(vocab.block0 + b)
                tokens.append(vocab.offset0 + o)
        if v in placed:
            recency.remove(v)
        placed.add(v)
        recency.insert(0, v)
        block = b

    for _ in range(len(faces)):
        step = None
        depth = 0
        while stack:
            step = next_from(stack[-1])
            if step:
                break
            stack.pop()
            depth += 1
        if step and depth:
            while depth:
                d = min(depth, config.max_pop)
                tokens.append(vocab.pop(d))
                depth -= d
        if step:
            edge, g = step
            anchor = emitted[stack[-1]]
            a, b = anchor[edge], anchor[(edge + 1) % len(anchor)]
            f = faces[g]
            i = f.index(b)
            flip = 0 if f[(i + 1) % len(f)] == a else 1
            start = i if flip == 0 else f.index(a)
            order = f[start:] + f[:start]
            tokens.append(vocab.cont(edge, len(f), flip))
        else:
            while visited[next_unvisited]:
                next_unvisited += 1
            g, order = next_unvisited, faces[next_unvisited]
            stack = []
            tokens.append(vocab.new(len(order)))
        implicit = 2 if step else 0
        for k, v in enumerate(order):
            place(v, k >= implicit, k)
        emitted[g] = order
        visited[g] = True
        stack.append(g)
        for h in neighbours[g]:
            open_degree[h] -= 1
    tokens.append(EOS)
    return tokens


def decode(tokens, config: TokenizerConfig | None = None) -> QuantizedMesh:
    """Mesh from a token sequence (BOS optional, EOS required); raises TokenizerError if invalid."""
    grammar = MeshGrammar(config)
    seq = list(tokens)
    if seq and seq[0] == BOS:
        seq = seq[1:]
    for t in seq:
        grammar.feed(int(t))
    if not grammar.done:
        raise TokenizerError("sequence ended before EOS")
    return grammar.mesh()


def meshes_equal(a: QuantizedMesh, b: QuantizedMesh) -> bool:
    return a.bits == b.bits and np.array_equal(a.vertices, b.vertices) and a.faces == b.faces
