"""Closing generated parts (shared.ml.part_closing): open parts become closed, outward-facing
solids within their face limit; closed parts and tight limits keep the part as written."""

from __future__ import annotations

import numpy as np

from shared.ml.part_closing import (
    BOX_FACES,
    MIN_THICKNESS,
    close_part,
    closing_limits,
    is_closed,
    signed_volume,
)


def test_an_open_shard_becomes_its_closed_outward_facing_hull():
    rng = np.random.default_rng(0)
    vertices = rng.uniform(-0.3, 0.3, (12, 3))
    faces = [(0, 1, 2), (2, 3, 4), (5, 6, 7)]  # loose triangles, every edge on one face
    assert not is_closed(faces)
    closed_vertices, closed_faces = close_part(vertices, faces, max_faces=100)
    assert is_closed(closed_faces) and all(len(f) == 3 for f in closed_faces)
    assert signed_volume(closed_vertices, closed_faces) > 0
    # every outward normal points away from the centroid: no face is wound inwards
    centre = closed_vertices.mean(0)
    for a, b, c in closed_faces:
        normal = np.cross(closed_vertices[b] - closed_vertices[a], closed_vertices[c] - closed_vertices[a])
        assert normal @ (closed_vertices[a] - centre) > 0


def test_a_flat_part_is_thickened_into_a_slab_not_a_zero_volume_hull():
    vertices = np.array([[0, 0, 0], [0.4, 0, 0], [0.4, 0.3, 0], [0, 0.3, 0]], dtype=float)
    closed_vertices, closed_faces = close_part(vertices, [(0, 1, 2, 3)], max_faces=100)
    assert is_closed(closed_faces)
    assert np.isclose(np.ptp(closed_vertices[:, 2]), MIN_THICKNESS)
    assert signed_volume(closed_vertices, closed_faces) > 0.4 * 0.3 * MIN_THICKNESS * 0.99


def test_a_tilted_flat_part_a_line_and_a_point_close_too():
    """Flat at a tilt, qhull refused these (QH6154 'initial simplex is flat') until parts were
    thickened along their principal directions, not only the axes."""
    rng = np.random.default_rng(2)
    u, v = rng.uniform(-0.2, 0.2, (2, 9))
    plane = np.stack([u, v, 0.3 * u - 0.7 * v], axis=1)  # coplanar, no axis thin
    line = np.outer(np.linspace(-0.2, 0.2, 4), [0.3, -0.5, 0.8])
    point = np.full((3, 3), 0.1)
    for vertices in (plane, line, point):
        closed_vertices, closed_faces = close_part(vertices, [(0, 1, 2)], max_faces=100)
        assert is_closed(closed_faces) and signed_volume(closed_vertices, closed_faces) > 0
        centred = closed_vertices - closed_vertices.mean(0)
        assert np.linalg.svd(centred, compute_uv=False).min() > 0  # a solid, not a flat hull


def test_a_closed_part_is_kept_as_written():
    corners = np.array([[i & 1, i >> 1 & 1, i >> 2 & 1] for i in range(8)], dtype=float)
    vertices, faces = close_part(corners, list(BOX_FACES), max_faces=100)
    assert faces == list(BOX_FACES) and vertices is corners
    assert np.isclose(signed_volume(corners, BOX_FACES), 1.0)  # the box's faces face outwards


def test_a_closed_part_with_one_face_wound_the_other_way_is_closed_again():
    """One face wound against its neighbours renders from behind, though the part is closed and
    its volume positive."""
    corners = np.array([[i & 1, i >> 1 & 1, i >> 2 & 1] for i in range(8)], dtype=float)
    mixed = [tuple(reversed(BOX_FACES[0]))] + list(BOX_FACES[1:])
    assert is_closed(mixed) and signed_volume(corners, mixed) > 0
    vertices, faces = close_part(corners, mixed, max_faces=100)
    assert len(faces) == 12 and is_closed(faces)  # the hull: the box again, as triangles
    assert np.isclose(signed_volume(vertices, faces), 1.0)
    for a, b, c in faces:
        normal = np.cross(vertices[b] - vertices[a], vertices[c] - vertices[a])
        assert normal @ (vertices[a] - vertices.mean(0)) > 0


def test_a_closed_part_written_inside_out_is_turned_outwards():
    corners = np.array([[i & 1, i >> 1 & 1, i >> 2 & 1] for i in range(8)], dtype=float)
    inside_out = [tuple(reversed(f)) for f in BOX_FACES]
    assert np.isclose(signed_volume(corners, inside_out), -1.0)
    vertices, faces = close_part(corners, inside_out, max_faces=3)  # no face added, so any limit
    assert faces == list(BOX_FACES) and vertices is corners


def test_the_face_limit_decides_between_hull_fewer_points_box_and_the_part_as_written():
    rng = np.random.default_rng(1)
    sphere = rng.normal(size=(60, 3))
    sphere /= np.linalg.norm(sphere, axis=1, keepdims=True)  # every point on the hull
    faces = [(i, i + 1, i + 2) for i in range(0, 57, 3)]
    hull_vertices, hull_faces = close_part(sphere, faces, max_faces=1000)
    assert len(hull_vertices) == 60 and len(hull_faces) == 2 * 60 - 4
    # Over the limit: 12 of the points spread out (a hull of 20 triangles at most), nearer the
    # sphere's volume than its bounding box is.
    fewer_vertices, fewer_faces = close_part(sphere, faces, max_faces=20)
    assert (
        len(fewer_faces) <= 20 and is_closed(fewer_faces) and signed_volume(fewer_vertices, fewer_faces) > 0
    )
    assert len(fewer_vertices) == 12 and all(np.isclose(sphere, v).all(1).any() for v in fewer_vertices)
    # Points crowding a cube's corners: five of them would hold a third of it, the box all of it.
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    crowded = np.concatenate([corners + rng.uniform(-0.02, 0.02, corners.shape) for _ in range(4)])
    box_vertices, box_faces = close_part(crowded, [(0, 1, 2)], max_faces=6)
    assert box_faces == list(BOX_FACES) and is_closed(box_faces)
    assert np.allclose(box_vertices.min(0), crowded.min(0)) and np.allclose(
        box_vertices.max(0), crowded.max(0)
    )
    kept_vertices, kept_faces = close_part(sphere, faces, max_faces=5)
    assert kept_faces == faces and kept_vertices is sphere


def test_any_small_point_set_closes():
    """Parts of every rank (a point, a line, a flat, a solid) at random tilts and scales, as the
    part model writes them: each closes into an outward solid or is kept, none raises."""
    rng = np.random.default_rng(3)
    for _ in range(300):
        count, rank = int(rng.integers(3, 13)), int(rng.integers(0, 4))
        basis = np.linalg.qr(rng.normal(size=(3, 3)))[0][:rank]
        vertices = rng.uniform(-0.5, 0.5, 3) + rng.uniform(-1, 1, (count, rank)) @ basis * rng.uniform(
            1e-3, 0.5
        )
        faces = [tuple(int(i) for i in rng.choice(count, 3, replace=False)) for _ in range(count // 3)]
        closed_vertices, closed_faces = close_part(vertices, faces, max_faces=int(rng.integers(6, 40)))
        assert is_closed(closed_faces) and signed_volume(closed_vertices, closed_faces) > 0


def test_faces_the_parts_leave_unused_go_to_the_parts_over_their_limits():
    # Needs 10, 40 and 90 faces against limits of 50 each in a budget of 200: the first uses 10,
    # the second 40, leaving 150 - 50 = 100 spare of which the third lacks 40: it gets them.
    assert closing_limits([10, 40, 90], [50, 50, 50], 200) == [50, 50, 90]
    # Two parts short (by 60 and 20) of 20 spare share it in proportion: 15 and 5.
    assert closing_limits([110, 70, 20], [50, 50, 50], 140) == [65, 55, 50]
    # Nothing spare (every limit used up to the budget) or nothing short: the limits stand.
    assert closing_limits([90, 60], [50, 50], 100) == [50, 50]
    assert closing_limits([5, 6], [50, 50], 100) == [50, 50]
    # Never more than the budget in all.
    rng = np.random.default_rng(4)
    for _ in range(200):
        needs, limits = rng.integers(0, 80, 6).tolist(), rng.integers(6, 40, 6).tolist()
        budget = int(rng.integers(sum(limits), 2 * sum(limits)))
        raised = closing_limits(needs, limits, budget)
        assert all(low <= high for low, high in zip(limits, raised, strict=True))
        assert sum(min(need, high) for need, high in zip(needs, raised, strict=True)) <= budget
