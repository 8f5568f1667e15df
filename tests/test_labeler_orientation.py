"""Geometry items stand as the artist sees them: an object's world orientation (rounded to right
angles) and scale baked into its mesh, the world matrix checked against Blender's own on real
corpus files extracted by the real extractor."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from blender_worker.pool import child_environment
from services.labeler.orientation import right_angle_part, upright_mesh, world_linear
from tests.extract_support import CORPUS, REPO, extract, load_document

PARENT_INVERSE = CORPUS / "blend" / "gltf_blender_io" / "scenes_06_parent-inverse-anim.blend"
BOOKSHELF = CORPUS / "glb" / "quaternius_showcase" / "house_interior_pack" / "Bookshelf.glb"

# In bpy: every object's world matrix after opening a .blend or importing a .glb, as the extractor does.
_WORLD = """
import json, sys
import bpy
path = sys.argv[1]
if path.endswith(".glb"):
    bpy.ops.wm.read_factory_settings(use_empty=True)
    bpy.ops.import_scene.gltf(filepath=path)
else:
    bpy.ops.wm.open_mainfile(filepath=path, load_ui=False)
bpy.context.view_layer.update()
print(json.dumps({o.name: [list(r)[:3] for r in o.matrix_world.to_3x3()] for o in bpy.data.objects}))
"""


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, dict[str, Any]]:
    entries = extract([PARENT_INVERSE, BOOKSHELF], tmp_path_factory.mktemp("out"))
    assert all(e["status"] == "ok" for e in entries.values()), entries
    return {path: load_document(entries[path.name]) for path in (PARENT_INVERSE, BOOKSHELF)}


def blender_world(path: Path) -> dict[str, np.ndarray]:
    run = subprocess.run(
        [sys.executable, "-c", _WORLD, str(path)],
        cwd=REPO,
        env=child_environment(),
        check=True,
        capture_output=True,
        text=True,
    )
    return {k: np.array(v) for k, v in json.loads(run.stdout.strip().splitlines()[-1]).items()}


@pytest.mark.parametrize("path", [PARENT_INVERSE, BOOKSHELF], ids=["parent-inverse", "glb"])
def test_world_orientation_and_scale_are_blenders(documents, path):
    objects = {o["name"]: o for o in documents[path]["objects"]}
    world = blender_world(path)
    assert set(objects) <= set(world)
    for name in objects:
        np.testing.assert_allclose(world_linear(name, objects), world[name], atol=1e-5, err_msg=name)


def test_an_imported_bookshelf_stands_once_its_orientation_is_baked(documents):
    objects = {o["name"]: o for o in documents[BOOKSHELF]["objects"]}
    name, shelf = next((n, o) for n, o in objects.items() if o.get("mesh"))
    local = np.ptp(np.array(shelf["mesh"]["vertices"]), axis=0)
    standing = upright_mesh(shelf["mesh"], world_linear(name, objects))
    extent = np.ptp(np.array(standing["vertices"]), axis=0)
    # Its authored frame has y up (the importer turns the object); baked, z is its height.
    assert local.argmax() != 2 and extent.argmax() == 2
    assert sorted(extent / extent.max()) == pytest.approx(sorted(local / local.max()), abs=1e-6)


def test_placement_is_left_out_and_scale_and_mirrors_kept():
    stretch = np.diag([1.0, 2.0, 3.0])
    turned = Rotation.from_euler("z", 30, degrees=True).as_matrix()
    np.testing.assert_allclose(right_angle_part(turned @ stretch), stretch, atol=1e-12)
    lying = Rotation.from_euler("x", -90, degrees=True).as_matrix()
    np.testing.assert_allclose(right_angle_part(lying @ stretch), lying @ stretch, atol=1e-12)
    mirrored = np.diag([-1.0, 1.0, 1.0])
    np.testing.assert_allclose(right_angle_part(mirrored), mirrored, atol=1e-12)
    # A mirrored triangle keeps facing out: its winding turns with it.
    triangle = {"vertices": [[0, 0, 0], [1, 0, 0], [0, 1, 0]], "faces": [[0, 1, 2]]}
    flipped = upright_mesh(triangle, mirrored)
    assert flipped["faces"] == [[2, 1, 0]]
    v = np.array(flipped["vertices"])
    assert np.cross(v[1] - v[2], v[0] - v[2])[2] > 0  # the normal still points +z
    assert upright_mesh(triangle, np.eye(3)) == triangle
