"""The structure that modifiers express, found in a finished mesh (pure numpy and scipy).

A mesh an artist made with a Mirror, Array or Solidify modifier and then applied still carries the
modifier's trace: it is its own reflection, or copies of one part at a constant step, or two
parallel sheets joined by a rim. ``peel`` finds such a trace, outermost modifier first, and returns
the simpler base plus the stack that rebuilds the mesh from it; real Blender then has the last word
(services/labeler/modifier_derive.py keeps a pair only when applying the stack gives the mesh back).
``features`` summarises a mesh for the modifier model (symmetry, repetition, thickness, dihedral
angles, size), and the generator reuses ``peel_stack`` to cut a predicted stack's base.

Tolerances are shares of the bounding-box diagonal, so a 2 cm bolt and a 20 m hall read alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree

# Vertices closer than this share of the diagonal are one point (applied modifiers are exact to
# float32 rounding; a hand-made near-symmetry is not a Mirror).
MATCH_TOLERANCE = 1e-4
# The loose Mirror: an exported mesh's two halves may differ by more than float rounding (a
# re-export, a rescale) while a Mirror still rebuilds it within Blender verification's thresholds.
LOOSE_MATCH_TOLERANCE = 1e-3
# A Solidify's two sheets: share of the surface area that must have a parallel twin.
SOLIDIFY_MIN_PAIRED_AREA = 0.6
ARRAY_MAX_COUNT = 64
DIHEDRAL_BINS = 8
AXES = "XYZ"


@dataclass
class MeshArrays:
    vertices: np.ndarray  # (n, 3) float64
    faces: list[list[int]]

    @classmethod
    def from_dict(cls, mesh: dict[str, Any]) -> MeshArrays:
        vertices = np.asarray(mesh.get("vertices") or [], dtype=np.float64).reshape(-1, 3)
        faces = [list(map(int, f)) for f in mesh.get("faces") or [] if len(f) >= 3]
        if len(vertices) == 0 or not faces:
            raise ValueError("the mesh needs vertices and faces")
        top = max(max(f) for f in faces)
        if top >= len(vertices) or min(min(f) for f in faces) < 0:
            raise ValueError(f"a face refers to vertex {top}, but the mesh has {len(vertices)} vertices")
        if not np.isfinite(vertices).all():
            raise ValueError("the mesh has non-finite vertex coordinates")
        return cls(vertices, faces)

    def to_dict(self) -> dict[str, Any]:
        return {
            "vertices": [[round(float(c), 6) for c in v] for v in self.vertices],
            "faces": [list(map(int, f)) for f in self.faces],
        }

    @property
    def diagonal(self) -> float:
        return float(np.linalg.norm(np.ptp(self.vertices, axis=0))) or 1.0

    def welded(self) -> MeshArrays:
        """Coincident vertices merged (Blender's Merge by Distance at MATCH_TOLERANCE): exported
        flat-shaded meshes split every vertex per face, which hides their parts and shells.
        Faces that collapse below three corners are dropped, and so are repeats of a face (the same
        corners; double-sided exports), which Blender would remove on its own."""
        step = MATCH_TOLERANCE * self.diagonal
        keys = np.round(self.vertices / step).astype(np.int64)
        _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        faces, seen = [], set()
        for f in self.faces:
            corners = [int(inverse[i]) for i in f]
            corners = [c for k, c in enumerate(corners) if c != corners[k - 1]]
            key = frozenset(corners)
            if len(key) >= 3 and key not in seen:
                seen.add(key)
                faces.append(corners)
        if not faces:  # a mesh smaller than the tolerance everywhere: welding would leave nothing
            return self
        return MeshArrays(self.vertices[first], faces)

    def subset(self, face_ids: list[int] | np.ndarray) -> MeshArrays:
        """The chosen faces with only the vertices they use, renumbered in their old order."""
        faces = [self.faces[i] for i in face_ids]
        used = np.unique(np.fromiter((v for f in faces for v in f), dtype=np.int64))
        remap = np.full(len(self.vertices), -1, dtype=np.int64)
        remap[used] = np.arange(len(used))
        return MeshArrays(self.vertices[used].copy(), [remap[f].tolist() for f in faces])


@dataclass
class Peeled:
    """A base mesh and the stack (first applied first) that rebuilds the original from it. The
    base is moved by ``origin`` (a Mirror works about the object's origin): the stack on the base
    gives the original minus ``origin``, so the object goes back at ``origin``."""

    base: MeshArrays
    stack: list[dict[str, Any]] = field(default_factory=list)
    origin: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rejections: dict[str, str] = field(default_factory=dict)  # modifier type -> why it was not found
    rules: list[str] = field(default_factory=list)  # per stack modifier, the rule that found it


# ---- face geometry -------------------------------------------------------------------------------


def face_geometry(mesh: MeshArrays) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(unit normals, centroids, areas) per face, from a fan of triangles (n-gons included)."""
    v = mesh.vertices
    normals = np.zeros((len(mesh.faces), 3))
    centroids = np.zeros((len(mesh.faces), 3))
    for i, f in enumerate(mesh.faces):
        p = v[f]
        centroids[i] = p.mean(0)
        normals[i] = np.cross(p[1:-1] - p[0], p[2:] - p[0]).sum(0) / 2
    areas = np.linalg.norm(normals, axis=1)
    normals = normals / np.maximum(areas, 1e-30)[:, None]
    return normals, centroids, areas


def edge_faces(faces: list[list[int]]) -> dict[tuple[int, int], list[int]]:
    """Undirected edge -> the faces using it."""
    out: dict[tuple[int, int], list[int]] = {}
    for i, f in enumerate(faces):
        for a, b in zip(f, f[1:] + f[:1], strict=True):
            out.setdefault((a, b) if a < b else (b, a), []).append(i)
    return out


def components(mesh: MeshArrays) -> tuple[int, np.ndarray]:
    """(count, per-vertex label) of the parts joined by faces."""
    rows, cols = [], []
    for f in mesh.faces:
        rows += f
        cols += f[1:] + f[:1]
    n = len(mesh.vertices)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)


def _face_components(faces: list[list[int]], face_ids: np.ndarray) -> np.ndarray:
    """Per chosen face, the label of its patch (faces sharing an edge, among the chosen ones)."""
    index = {int(f): k for k, f in enumerate(face_ids)}
    rows, cols = [], []
    for shared in edge_faces([faces[int(i)] for i in face_ids]).values():
        for a, b in zip(shared, shared[1:], strict=False):
            rows.append(a)
            cols.append(b)
    n = len(index)
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


# ---- Mirror ----------------------------------------------------------------------------------------


def mirror_score(mesh: MeshArrays, axis: int, tolerance: float) -> float:
    """Share of vertices whose reflection through the box-centre plane lands on a vertex."""
    v = mesh.vertices
    centre = (v[:, axis].min() + v[:, axis].max()) / 2
    reflected = v.copy()
    reflected[:, axis] = 2 * centre - reflected[:, axis]
    distance, _ = cKDTree(v).query(reflected)
    return float((distance <= tolerance * mesh.diagonal).mean())


def peel_mirror(
    mesh: MeshArrays, axis: int, tolerance: float = MATCH_TOLERANCE, same_faces: bool = True
) -> tuple[MeshArrays, float] | str:
    """(half, plane) for a mesh that is its own reflection through the box-centre plane on ``axis``:
    the half on the positive side, moved so the plane is at 0, its seam vertices on the plane.
    Otherwise the reason it is not.

    ``same_faces=False`` is the re-triangulated Mirror: the points are each other's reflection but
    the faces need not be (an exporter triangulated each half's quads along its own diagonals);
    each side must still hold half the faces and none may cross the plane, so the Mirror of the
    positive half has the original's vertices and face count (Blender verification then measures
    how far its surface is from the original's)."""
    v = mesh.vertices
    tol = tolerance * mesh.diagonal
    plane = (v[:, axis].min() + v[:, axis].max()) / 2
    if np.ptp(v[:, axis]) <= tol:
        return "flat_on_axis"
    reflected = v.copy()
    reflected[:, axis] = 2 * plane - reflected[:, axis]
    distance, partner = cKDTree(v).query(reflected)
    if distance.max() > tol:
        return "not_symmetric"
    if same_faces:
        face_set = {tuple(sorted(f)) for f in mesh.faces}
        if any(tuple(sorted(partner[f].tolist())) not in face_set for f in mesh.faces):
            return "faces_not_symmetric"
    side = v[:, axis] - plane
    positive = [i for i, f in enumerate(mesh.faces) if side[f].min() >= -tol]
    negative = [i for i, f in enumerate(mesh.faces) if side[f].max() <= tol]
    if len(positive) + len(negative) < len(mesh.faces):
        return "faces_cross_plane"
    if set(positive) & set(negative):
        return "faces_in_plane"
    if not same_faces and len(positive) != len(negative):
        return "halves_differ"
    half = mesh.subset(positive)
    half.vertices[:, axis] -= plane
    seam = np.abs(half.vertices[:, axis]) <= tol
    half.vertices[seam, axis] = 0.0
    return half, float(plane)


# The Mirror rules, strictest first: (name, tolerance, faces must mirror too).
MIRROR_RULES = (
    ("mirror", MATCH_TOLERANCE, True),
    ("mirror_retriangulated", MATCH_TOLERANCE, False),
    ("mirror_loose", LOOSE_MATCH_TOLERANCE, False),
)


def peel_mirror_any(mesh: MeshArrays, axis: int) -> tuple[MeshArrays, float, str] | str:
    """The first Mirror rule that peels ``axis``: (half, plane, rule name); else the strict rule's
    reason it is not a Mirror (the loose rules' reasons say less)."""
    first = ""
    for name, tolerance, same_faces in MIRROR_RULES:
        found = peel_mirror(mesh, axis, tolerance, same_faces)
        if not isinstance(found, str):
            return found[0], found[1], name
        first = first or found
    return first


def mirror_modifier(axes: list[int], diagonal: float) -> dict[str, Any]:
    return {
        "name": "Mirror",
        "type": "MIRROR",
        "params": {
            "use_axis": [a in axes for a in range(3)],
            "use_clip": True,
            "use_mirror_merge": True,
            # Seam vertices lie exactly on the plane; the threshold only has to catch rounding.
            "merge_threshold": float(min(1e-3, 1e-3 * diagonal)),
        },
    }


# ---- Array -----------------------------------------------------------------------------------------


def peel_array(mesh: MeshArrays) -> tuple[MeshArrays, dict[str, Any]] | str:
    """(first element, modifier) for a mesh made of identical parts at a constant step along one
    axis; otherwise the reason it is not."""
    count, labels = components(mesh)
    if count < 2:
        return "one_part"
    if count > ARRAY_MAX_COUNT:
        return "too_many_parts"
    tol = MATCH_TOLERANCE * mesh.diagonal
    v = mesh.vertices
    parts = [np.flatnonzero(labels == k) for k in range(count)]
    sizes = {len(p) for p in parts}
    if len(sizes) != 1:
        return "parts_differ"
    corners = np.array([v[p].min(0) for p in parts])
    reference = v[parts[0]] - corners[0]
    tree = cKDTree(reference)
    for p, corner in zip(parts[1:], corners[1:], strict=True):
        if tree.query(v[p] - corner)[0].max() > tol:
            return "parts_differ"
    spread = np.ptp(corners, axis=0)
    axis = int(np.argmax(spread))
    order = np.argsort(corners[:, axis])
    steps = np.diff(corners[order], axis=0)
    step = steps.mean(0)
    if np.abs(steps - step).max() > tol:
        return "uneven_steps"
    off_axis = [a for a in range(3) if a != axis]
    if np.abs(step[off_axis]).max() > tol:
        return "step_not_axis_aligned"
    first = int(order[0])
    face_ids = [i for i, f in enumerate(mesh.faces) if labels[f[0]] == first]
    if not face_ids:
        return "loose_vertices"  # the parts are single vertices no face uses
    element = mesh.subset(face_ids)
    extent = float(np.ptp(element.vertices[:, axis]))
    displace = [0.0, 0.0, 0.0]
    if extent > tol:
        displace[axis] = float(step[axis] / extent)
        params: dict[str, Any] = {
            "use_relative_offset": True,
            "relative_offset_displace": displace,
            "use_constant_offset": False,
        }
    else:  # a flat element: a relative step of its zero thickness would be no step
        displace[axis] = float(step[axis])
        params = {
            "use_relative_offset": False,
            "use_constant_offset": True,
            "constant_offset_displace": displace,
        }
    params.update(fit_type="FIXED_COUNT", count=count, use_merge_vertices=False)
    return element, {"name": "Array", "type": "ARRAY", "params": params}


def peel_array_translation(mesh: MeshArrays) -> tuple[MeshArrays, dict[str, Any]] | str:
    """The Array whose element is several parts (a pair of legs, a post with its cap) or whose
    step is not along one axis: (first element, modifier) when the whole mesh is the translation
    copies ``element + k * step`` (k < count) of one vertex layer, face for face; otherwise the
    reason it is not. The step is tried among the offsets between parts of the same shape, the
    shortest first; the modifier uses a constant offset (the step vector)."""
    count, labels = components(mesh)
    if count < 2:
        return "one_part"
    tol = MATCH_TOLERANCE * mesh.diagonal
    v = mesh.vertices
    parts = [np.flatnonzero(labels == k) for k in range(count)]
    corners = np.array([v[p].min(0) for p in parts])
    shape_key = [
        (len(p), *np.round(np.ptp(v[p], axis=0) / (10 * tol)).astype(np.int64).tolist()) for p in parts
    ]
    groups: dict[tuple, list[int]] = {}
    for k, key in enumerate(shape_key):
        groups.setdefault(key, []).append(k)
    largest = max(groups.values(), key=len)
    if len(largest) < 2:
        return "no_repeated_part"
    members = largest[:ARRAY_MAX_COUNT]
    offsets = (corners[members][None, :, :] - corners[members][:, None, :]).reshape(-1, 3)
    offsets = offsets[np.linalg.norm(offsets, axis=1) > tol]
    # one sign per offset: the first clearly non-zero coordinate positive
    sign = np.sign(offsets[np.arange(len(offsets)), np.argmax(np.abs(offsets) > tol, axis=1)])
    offsets = np.unique(np.round(offsets * sign[:, None] / tol) * tol, axis=0)
    offsets = offsets[np.argsort(np.linalg.norm(offsets, axis=1))][:12]
    tree = cKDTree(v)
    face_keys = {tuple(sorted(f)) for f in mesh.faces}
    for step in offsets:
        for direction in (step, -step):
            found = _translation_layers(mesh, tree, direction, tol)
            if found is None:
                continue
            layer, nxt, layers = found
            if not 2 <= layers <= ARRAY_MAX_COUNT:
                continue
            face_layer = [set(layer[f].tolist()) for f in mesh.faces]
            if any(len(s) != 1 for s in face_layer):
                continue  # a face joins two copies: not separate elements
            first = [i for i, s in enumerate(face_layer) if 0 in s]
            if len(first) * layers != len(mesh.faces):
                continue
            shifted_ok = True
            for i in first:
                f = np.asarray(mesh.faces[i])
                for _ in range(layers - 1):
                    f = nxt[f]
                    if tuple(sorted(f.tolist())) not in face_keys:
                        shifted_ok = False
                        break
                if not shifted_ok:
                    break
            if not shifted_ok:
                continue
            element = mesh.subset(first)
            linked = nxt >= 0
            direction = (v[nxt[linked]] - v[linked]).mean(0)  # the exact step, not the rounded one
            params: dict[str, Any] = {
                "fit_type": "FIXED_COUNT",
                "count": int(layers),
                "use_relative_offset": False,
                "use_constant_offset": True,
                "constant_offset_displace": [float(c) for c in direction],
                "use_merge_vertices": False,
            }
            return element, {"name": "Array", "type": "ARRAY", "params": params}
    return "no_translation_repeats"


def _translation_layers(
    mesh: MeshArrays, tree: cKDTree, step: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(layer per vertex, the vertex one step on, layers) when every vertex lies on a chain
    v, v + step, v + 2 step ... of one common length; else None."""
    v = mesh.vertices
    d_next, nxt = tree.query(v + step)
    d_prev, _ = tree.query(v - step)
    has_next, has_prev = d_next <= tol, d_prev <= tol
    starts = np.flatnonzero(~has_prev)
    if len(starts) == 0 or len(v) % len(starts):
        return None
    layers = len(v) // len(starts)
    layer = np.full(len(v), -1, dtype=np.int64)
    current = starts
    for k in range(layers):
        if (layer[current] >= 0).any():
            return None
        layer[current] = k
        if k < layers - 1:
            if not has_next[current].all():
                return None
            current = nxt[current]
    if (layer < 0).any() or has_next[current].any():
        return None
    nxt = np.where(has_next, nxt, -1)
    return layer, nxt, layers


# ---- Solidify --------------------------------------------------------------------------------------


def peel_solidify(mesh: MeshArrays, rimless: bool = False) -> tuple[MeshArrays, dict[str, Any]] | str:
    """(one sheet, modifier) for a closed mesh made of two parallel sheets a constant thickness
    apart (plus the rim joining their borders); otherwise the reason it is not. ``rimless``: an open
    mesh of two parallel sheets and no rim (a Solidify with Fill Rim off)."""
    edges = edge_faces(mesh.faces)
    if rimless:
        if any(len(users) > 2 for users in edges.values()):
            return "non_manifold"
        if all(len(users) == 2 for users in edges.values()):
            return "closed"
    elif any(len(users) != 2 for users in edges.values()):
        return "not_closed"
    normals, centroids, areas = face_geometry(mesh)
    diagonal = mesh.diagonal
    # Each face's twin: among its nearest face centres, the closest one behind it, facing the
    # other way, straight behind it (a little sideways drift allowed for even-thickness corners).
    neighbours = min(16, len(mesh.faces))
    _, found = cKDTree(centroids).query(centroids, k=neighbours)
    found = found.reshape(len(mesh.faces), -1)
    gap = centroids[:, None, :] - centroids[found]
    along = (gap * normals[:, None, :]).sum(-1)
    lateral = np.linalg.norm(gap - along[..., None] * normals[:, None, :], axis=-1)
    facing = (normals[:, None, :] * normals[found]).sum(-1) <= -0.99
    behind = facing & (along > 0) & (lateral <= 0.05 * along + MATCH_TOLERANCE * diagonal)
    behind &= found != np.arange(len(mesh.faces))[:, None]
    candidates = np.where(behind, along, np.inf)
    nearest = candidates.argmin(1)
    depth = candidates[np.arange(len(mesh.faces)), nearest]
    twin = np.where(np.isfinite(depth), found[np.arange(len(mesh.faces)), nearest], -1)
    depth = np.where(np.isfinite(depth), depth, 0.0)
    paired = twin >= 0
    if areas[paired].sum() < SOLIDIFY_MIN_PAIRED_AREA * areas.sum():
        return "no_parallel_sheets"
    thickness = float(np.median(depth[paired]))
    consistent = paired & (np.abs(depth - thickness) <= 0.02 * thickness + MATCH_TOLERANCE * diagonal)
    if areas[consistent].sum() < SOLIDIFY_MIN_PAIRED_AREA * areas.sum():
        return "uneven_thickness"
    sheet_faces = np.flatnonzero(consistent)
    patches = _face_components(mesh.faces, sheet_faces)
    if rimless and 2 * len(set(patches.tolist())) > len(sheet_faces):
        return "loose_faces"  # sheets are surfaces; facing pairs of loose faces are not a Solidify
    # Two patches are twins when their faces are; colour the patches two ways along twin links.
    patch_of = dict(zip(sheet_faces.tolist(), patches.tolist(), strict=True))
    links: dict[int, set[int]] = {}
    for f in sheet_faces.tolist():
        g = int(twin[f])
        if g in patch_of:
            links.setdefault(patch_of[f], set()).add(patch_of[g])
    colour: dict[int, int] = {}
    for start in sorted(set(patches.tolist())):
        if start in colour:
            continue
        colour[start] = 0
        pending = [start]
        while pending:
            p = pending.pop()
            for q in links.get(p, ()):
                if q not in colour:
                    colour[q] = 1 - colour[p]
                    pending.append(q)
                elif colour[q] == colour[p]:
                    return "sheets_not_separable"
    area_by_colour = [0.0, 0.0]
    for f in sheet_faces.tolist():
        area_by_colour[colour[patch_of[f]]] += areas[f]
    keep = int(np.argmax(area_by_colour))
    outer = [f for f in sheet_faces.tolist() if colour[patch_of[f]] == keep]
    sheet = mesh.subset(outer)
    rim = 0 if rimless else sum(1 for users in edge_faces(sheet.faces).values() if len(users) == 1)
    if 2 * len(sheet.faces) + rim != len(mesh.faces):
        return "rim_does_not_match"
    return sheet, {
        "name": "Solidify",
        "type": "SOLIDIFY",
        "params": {"thickness": thickness, "offset": -1.0, "use_even_offset": True, "use_rim": not rimless},
    }


def find_solidify(mesh: MeshArrays) -> tuple[MeshArrays, dict[str, Any], str] | str:
    """Solidify of a closed shell, else of two open sheets without a rim: (sheet, modifier, rule)
    or the closed rule's reason."""
    found = peel_solidify(mesh)
    if not isinstance(found, str):
        return found[0], found[1], "solidify"
    if found == "not_closed":
        open_found = peel_solidify(mesh, rimless=True)
        if not isinstance(open_found, str):
            return open_found[0], open_found[1], "solidify_rimless"
    return found


# ---- the stack -------------------------------------------------------------------------------------


def find_array(mesh: MeshArrays) -> tuple[MeshArrays, dict[str, Any], str] | str:
    """Array by the strict rule (every part one element, an axis-aligned step), else by
    translation (an element of several parts, any step): (element, modifier, rule name) or the
    strict rule's reason. Two mirrored halves are an artist's Mirror, not an Array of two."""
    found: tuple[MeshArrays, dict[str, Any]] | str = peel_array(mesh)
    rule = "array"
    if isinstance(found, str) and found != "one_part":
        strict_reason = found
        found = peel_array_translation(mesh)
        rule = "array_translation"
        if isinstance(found, str):
            found = strict_reason
    if isinstance(found, str):
        return found
    if found[1]["params"]["count"] == 2 and _mirrors_along_step(mesh, found[1]):
        return "two_parts_mirror"
    return found[0], found[1], rule


def peel(mesh: MeshArrays) -> Peeled:
    """The stack found on this mesh: Array (outermost), then Solidify, then Mirror, each peeled off
    the previous base. Each type appears at most once; its order is the order it is applied.
    ``rules`` names the rule that found each modifier of the stack, in stack order."""
    result = Peeled(mesh)
    rules: list[str] = []
    array = find_array(result.base)
    if isinstance(array, str):
        result.rejections["ARRAY"] = array
    else:
        result.base = array[0]
        result.stack.insert(0, array[1])
        rules.insert(0, array[2])
    solidify = find_solidify(result.base)
    if isinstance(solidify, str):
        result.rejections["SOLIDIFY"] = solidify
    else:
        result.base = solidify[0]
        result.stack.insert(0, solidify[1])
        rules.insert(0, solidify[2])
    axes, reasons, mirror_rules = [], [], []
    for axis in range(3):
        half = peel_mirror_any(result.base, axis)
        if isinstance(half, str):
            reasons.append(f"{AXES[axis]}:{half}")
            continue
        result.base, plane, rule = half
        result.origin[axis] += plane
        axes.append(axis)
        mirror_rules.append(rule)
    if axes:
        result.stack.insert(0, mirror_modifier(axes, mesh.diagonal))
        # the loosest rule any axis needed names the Mirror
        rules.insert(0, max(mirror_rules, key=[r[0] for r in MIRROR_RULES].index))
    else:
        result.rejections["MIRROR"] = ",".join(reasons)
    result.rules = rules
    return result


def _mirrors_along_step(mesh: MeshArrays, array: dict[str, Any]) -> bool:
    params = array["params"]
    step = params["relative_offset_displace" if params["use_relative_offset"] else "constant_offset_displace"]
    return not isinstance(peel_mirror(mesh, int(np.argmax(np.abs(step)))), str)


def peel_stack(mesh: MeshArrays, stack: list[dict[str, Any]]) -> Peeled:
    """The base under a given stack (a predicted one): each modifier that can be peeled off is, last
    applied first; one whose trace the mesh does not carry is dropped (named in ``rejections``),
    and modifiers that add detail (Bevel, Subdivision...) stay, applied to the mesh as it is."""
    result = Peeled(mesh)
    kept: list[dict[str, Any]] = []
    for modifier in reversed(stack):
        kind = modifier["type"]
        if kind == "ARRAY":
            array = find_array(result.base)
            found: tuple[MeshArrays, dict[str, Any]] | str = array if isinstance(array, str) else array[:2]
        elif kind == "SOLIDIFY":
            shell = find_solidify(result.base)
            found = shell if isinstance(shell, str) else shell[:2]
        elif kind == "MIRROR":
            axes = [a for a, on in enumerate(modifier["params"].get("use_axis", [])) if on]
            base, done = result.base, []
            for axis in axes:
                half = peel_mirror_any(base, axis)
                if isinstance(half, str):
                    continue
                base, plane, _ = half
                result.origin[axis] += plane
                done.append(axis)
            found = (base, mirror_modifier(done, mesh.diagonal)) if done else "not_symmetric"
        else:
            kept.insert(0, modifier)
            continue
        if isinstance(found, str):
            result.rejections[kind] = found
            continue
        result.base = found[0]
        kept.insert(0, {**found[1], "params": {**modifier.get("params", {}), **found[1]["params"]}})
    result.stack = kept
    return result


# ---- features --------------------------------------------------------------------------------------

FEATURE_NAMES = (
    *(f"mirror_{a}_{t}" for a in AXES for t in ("exact", "loose", "clean", "relaxed")),
    "parts_log",
    "largest_repeat_share",
    "array_found",
    "closed",
    "solidify_found",
    "thickness_share",
    *(f"dihedral_{k}" for k in range(DIHEDRAL_BINS)),
    "faces_log",
    "vertices_log",
    "quad_share",
    "triangle_share",
    "ngon_share",
    *(f"extent_{a}" for a in AXES),
    "size_log",
    "boundary_edge_share",
    "valence4_share",
)


def features(mesh: MeshArrays) -> np.ndarray:
    """A fixed-length float32 summary of a mesh, in FEATURE_NAMES order."""
    v = mesh.vertices
    out: list[float] = []
    for axis in range(3):
        # exact and loose: how symmetric the points are; clean: whether a Mirror could have made it
        # (faces symmetric too, none across the plane).
        # relaxed: the re-triangulated or loose Mirror rules would peel it.
        clean = not isinstance(peel_mirror(mesh, axis), str)
        relaxed = clean or not isinstance(peel_mirror_any(mesh, axis), str)
        out += [
            mirror_score(mesh, axis, MATCH_TOLERANCE),
            mirror_score(mesh, axis, 1e-2),
            float(clean),
            float(relaxed),
        ]
    parts, labels = components(mesh)
    sizes = np.bincount(labels)
    common_size = int(np.argmax(np.bincount(sizes)))
    out += [np.log1p(parts), float((sizes == common_size).sum() * common_size / len(v)) if parts > 1 else 0.0]
    out.append(float(not isinstance(find_array(mesh), str)))
    edges = edge_faces(mesh.faces)
    closed = all(len(users) == 2 for users in edges.values())
    solidify = find_solidify(mesh)
    out += [
        float(closed),
        float(not isinstance(solidify, str)),
        float(solidify[1]["params"]["thickness"] / mesh.diagonal) if not isinstance(solidify, str) else 0.0,
    ]
    normals, _, _ = face_geometry(mesh)
    pairs = np.array([users[:2] for users in edges.values() if len(users) >= 2], dtype=np.int64)
    if len(pairs):
        cosines = np.clip((normals[pairs[:, 0]] * normals[pairs[:, 1]]).sum(1), -1, 1)
        histogram = np.histogram(np.arccos(cosines), bins=DIHEDRAL_BINS, range=(0, np.pi))[0]
        out += (histogram / len(pairs)).tolist()
    else:
        out += [0.0] * DIHEDRAL_BINS
    sides = np.array([len(f) for f in mesh.faces])
    out += [
        np.log1p(len(mesh.faces)),
        np.log1p(len(v)),
        float((sides == 4).mean()),
        float((sides == 3).mean()),
        float((sides > 4).mean()),
    ]
    extent = np.ptp(v, axis=0)
    out += (extent / mesh.diagonal).tolist()
    out.append(float(np.log10(mesh.diagonal)))
    out.append(sum(1 for users in edges.values() if len(users) == 1) / max(1, len(edges)))
    valence = np.bincount(np.array([a for e in edges for a in e]), minlength=len(v))
    out.append(float((valence == 4).mean()))
    return np.asarray(out, dtype=np.float32)
