"""A scene object's mesh standing as the artist sees it (numpy and scipy only).

A mesh is stored in its object's local frame, and a third of the corpus's objects are authored
in a frame that is not Blender's Z-up: FBX and glTF imports turn the object a right angle about
x, and some objects are scaled unevenly (a cube made into a plank). A geometry dataset item
bakes into its vertices the object's world orientation rounded to right angles (so the bookshelf
stands, while a chair turned 30 degrees in its scene is not left turned) and its scale, mirrors
included; the translation and the turn's remainder are scene placement and are left out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.transform import Rotation

KEPT_DECIMALS = 9  # of the baked matrix: far below any mesh's detail, far above roundoff


def local_linear(transform: dict[str, Any]) -> np.ndarray:
    """The 3x3 rotation-and-scale of an object's own transform (scene format)."""
    mode = transform.get("rotation_mode", "XYZ")
    if mode in ("QUATERNION", "AXIS_ANGLE"):  # the scene format holds an axis-angle as its quaternion
        w, x, y, z = transform.get("rotation_quaternion", (1.0, 0.0, 0.0, 0.0))
        rotation = Rotation.from_quat([x, y, z, w]) if w or x or y or z else Rotation.identity()
    else:  # Blender's XYZ Euler turns about x first: scipy's extrinsic "xyz"
        rotation = Rotation.from_euler(mode.lower(), transform.get("rotation_euler", (0.0, 0.0, 0.0)))
    return rotation.as_matrix() @ np.diag(np.asarray(transform.get("scale", (1.0, 1.0, 1.0)), float))


def world_linear(name: str, objects: dict[str, dict[str, Any]]) -> np.ndarray:
    """The 3x3 part of an object's world matrix: its parents' transforms (and parent inverses)
    times its own. A parent missing from the scene ends the chain."""
    out, seen = np.eye(3), set()
    current = objects.get(name)
    while current is not None and current["name"] not in seen:
        seen.add(current["name"])
        own = local_linear(current.get("transform") or {})
        if current.get("parent_inverse"):
            own = np.asarray(current["parent_inverse"], float).reshape(4, 4)[:3, :3] @ own  # row-major
        out = own @ out
        current = objects.get(current.get("parent") or "")
    return out


def right_angle_part(linear: np.ndarray) -> np.ndarray:
    """What of ``linear`` is kept: its rotation rounded to the nearest right-angled one (a signed
    permutation) times its scale (mirrors included)."""
    u, _, vt = np.linalg.svd(linear)
    rotation = u @ vt  # the polar decomposition's orthogonal factor: linear = rotation @ stretch
    rows, cols = linear_sum_assignment(-np.abs(rotation))
    nearest = np.zeros((3, 3))
    nearest[rows, cols] = np.sign(rotation[rows, cols])
    # Rounded: the decomposition's last bits follow the machine's LAPACK kernels and thread
    # counts, and a dataset's version must not (tests/test_labeler_corpus.py).
    return np.round(nearest @ rotation.T @ linear, KEPT_DECIMALS) + 0.0


def upright_mesh(mesh: dict[str, Any], linear: np.ndarray) -> dict[str, Any]:
    """``{"vertices", "faces"}`` of a scene-format mesh with ``right_angle_part(linear)`` baked in;
    faces turned when it mirrors, so they still face out."""
    kept = right_angle_part(linear)
    if (kept == np.eye(3)).all():
        return {"vertices": mesh["vertices"], "faces": mesh["faces"]}
    points = np.asarray(mesh["vertices"], float).reshape(-1, 3)
    # Products and sums one by one in a fixed order (IEEE-exact on every CPU), not a BLAS product.
    vertices = points[:, :1] * kept[:, 0] + points[:, 1:2] * kept[:, 1] + points[:, 2:] * kept[:, 2]
    faces = mesh["faces"] if np.linalg.det(kept) > 0 else [list(reversed(f)) for f in mesh["faces"]]
    return {"vertices": [[float(c) for c in v] for v in vertices], "faces": faces}
