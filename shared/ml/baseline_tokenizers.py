"""Peer mesh tokenizers re-implemented from their papers, for the tokenizer benchmark only.

All three work on triangles (n-gons fan-triangulated) of a canonical mesh from
``mesh_tokenizer.quantize_mesh``, so every tokenizer sees the same grid points and faces.
Only encoders are needed: the benchmark compares sequence lengths (BOS/EOS not counted).

- naive (MeshXL, PolyGen-style coordinates): 9 tokens per triangle.
- AMT, Adjacent Mesh Tokenization (MeshAnything V2, Chen et al. 2024): faces in sorted order;
  when an unvisited face contains the last two emitted vertices only its third vertex is emitted
  (3 coordinate tokens), otherwise a separator "&" and the whole face (9 tokens).
- BPT, Blocked and Patchified Tokenization (Weng et al. 2024): each vertex is a block token and
  an offset token (block 8 / offset 16 per axis at 7 bits), the block omitted when it repeats;
  faces are grouped into patches around the vertex of highest remaining degree: the centre is
  written once (with its own, marked block and offset tokens) and then the ring of its unvisited
  faces in order; a ring that breaks into several fans restarts with the centre.
"""

from __future__ import annotations

from shared.ml.mesh_tokenizer import QuantizedMesh


def triangles(mesh: QuantizedMesh) -> list[tuple[int, int, int]]:
    """Fan triangulation of the canonical faces (same count as any triangulation: n - 2 each)."""
    return [(f[0], f[i], f[i + 1]) for f in mesh.faces for i in range(1, len(f) - 1)]


def naive_tokens(mesh: QuantizedMesh) -> int:
    return 9 * len(triangles(mesh))


def amt_tokens(mesh: QuantizedMesh) -> int:
    tris = sorted(tuple(t[t.index(min(t)) :] + t[: t.index(min(t))]) for t in triangles(mesh))
    by_edge: dict[frozenset[int], list[int]] = {}
    for i, t in enumerate(tris):
        for k in range(3):
            by_edge.setdefault(frozenset((t[k], t[(k + 1) % 3])), []).append(i)
    visited = [False] * len(tris)
    count, first_unvisited = 0, 0
    last: tuple[int, int] | None = None
    for _ in range(len(tris)):
        nxt = None
        if last is not None:
            nxt = next((i for i in by_edge[frozenset(last)] if not visited[i]), None)
        if nxt is None:  # "&" (except before the first face) and the whole face
            while visited[first_unvisited]:
                first_unvisited += 1
            nxt = first_unvisited
            count += (1 if last is not None else 0) + 9
            last = (tris[nxt][1], tris[nxt][2])
        else:  # only the vertex that is not on the shared edge
            assert last is not None
            (third,) = set(tris[nxt]) - set(last)
            count += 3
            last = (last[1], third)
        visited[nxt] = True
    return count


def bpt_tokens(mesh: QuantizedMesh, offset_bits: int = 4) -> int:
    tris = triangles(mesh)
    blocks = [tuple(int(c) >> offset_bits for c in p) for p in mesh.vertices]
    vertex_faces: dict[int, set[int]] = {}
    for i, t in enumerate(tris):
        for v in t:
            vertex_faces.setdefault(v, set()).add(i)
    visited = [False] * len(tris)
    remaining = len(tris)
    count = 0
    last_block = None
    while remaining:
        center = max(vertex_faces, key=lambda v: (len(vertex_faces[v]), -v))
        faces = vertex_faces[center]
        # Each face around the centre is an edge (a, b) of its ring; chain them into fans.
        ring = {}
        for i in faces:
            t = tris[i]
            k = t.index(center)
            ring[t[(k + 1) % 3]] = t[(k + 2) % 3]
        starts = set(ring) - set(ring.values()) or {min(ring)}
        while ring:
            a = min(starts & set(ring)) if starts & set(ring) else min(ring)
            count += 2  # the centre, marked block + offset
            last_block = blocks[center]
            fan = [a]
            while a in ring:
                a = ring.pop(a)
                fan.append(a)
            for v in fan:
                count += 1 if blocks[v] == last_block else 2
                last_block = blocks[v]
        for i in list(faces):
            visited[i] = True
            remaining -= 1
            for v in tris[i]:
                vertex_faces[v].discard(i)
        for v in [v for v, fs in vertex_faces.items() if not fs]:
            del vertex_faces[v]
    return count
