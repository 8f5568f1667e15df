"""Mirror symmetry of a polygon mesh: a closed mesh cut at a plane and joined to its reflection
stays closed and outward-facing, and is one that Blender's Mirror modifier rebuilds from a half
(the modifier specialist's own detector finds it)."""

from __future__ import annotations

import numpy as np
import pytest

from shared.ml.mesh_symmetry import mirrored_half, reflected
from shared.ml.modifier_structure import MeshArrays, peel_mirror
from shared.ml.part_closing import convex_hull, is_closed, is_consistently_wound, signed_volume

CUBE = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
CUBE_FACES = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]


def is_own_reflection(vertices: np.ndarray, plane: float) -> bool:
    image = vertices.copy()
    image[:, 0] = 2 * plane - image[:, 0]
    return sorted(map(tuple, np.round(image, 9).tolist())) == sorted(
        map(tuple, np.round(vertices, 9).tolist())
    )


def test_a_cube_cut_off_centre_becomes_a_symmetric_closed_box_of_quads():
    vertices, faces = mirrored_half(CUBE, CUBE_FACES, 0.3)
    assert np.allclose(vertices.min(0), [0, 0, 0]) and np.allclose(vertices.max(0), [0.6, 1, 1])
    assert all(len(f) == 4 for f in faces) and len(faces) == 10  # two boxes' worth, less the cut's two
    assert is_closed(faces) and is_consistently_wound(faces)
    assert np.isclose(signed_volume(vertices, faces), 0.6)
    assert is_own_reflection(vertices, 0.3)


@pytest.mark.parametrize("seed", range(40))
def test_any_closed_hull_made_symmetric_is_closed_outward_and_peels_as_a_mirror(seed):
    rng = np.random.default_rng(seed)
    vertices, triangles = convex_hull(rng.normal(size=(30, 3)) * [1, 0.5, 2] + [rng.normal() * 0.3, 0, 0])
    faces = [tuple(f) for f in triangles]
    plane = float(rng.uniform(vertices[:, 0].min() + 0.1, vertices[:, 0].max() - 0.1))
    out, out_faces = mirrored_half(vertices, faces, plane)
    assert is_closed(out_faces) and is_consistently_wound(out_faces) and signed_volume(out, out_faces) > 0
    assert is_own_reflection(out, plane)
    side = out[:, 0] - plane
    assert all(side[list(f)].max() <= 0 or side[list(f)].min() >= 0 for f in out_faces)  # none across
    found = peel_mirror(MeshArrays(out - [plane, 0, 0], [list(f) for f in out_faces]).welded(), 0)
    assert not isinstance(found, str), found  # the strict rule: points and faces mirror, none across
    assert len(found[0].faces) == len(out_faces) // 2


def test_a_mesh_wholly_beyond_the_plane_leaves_nothing_and_an_empty_one_stays_empty():
    assert mirrored_half(CUBE + [2, 0, 0], CUBE_FACES, 1.0)[1] == []
    assert mirrored_half(np.zeros((0, 3)), [], 0.0)[1] == []


def test_a_reflection_faces_outward_still():
    vertices, faces = reflected(CUBE, CUBE_FACES, 2.0)
    assert np.allclose(vertices[:, 0].min(), 3.0) and np.isclose(signed_volume(vertices, faces), 1.0)
