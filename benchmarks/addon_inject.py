"""How long the add-on holds Blender's UI thread to create a result, by mesh size.

Prints one table: for grids of quads with a UV map, the stdlib validation (done in the job's
background thread), the injection of an already validated document (the UI thread's share), and
as the baseline measured in the same run, a bare Mesh.from_pydata of the same faces.
"""

from __future__ import annotations

import time

import bpy
from tqdm import tqdm

from addon.injector import inject_scene
from addon.validate import validate_scene

SIDES = (32, 100, 316, 447)  # about 1k, 10k, 100k and 200k faces (the panel's face budget cap)


def grid_scene(side: int) -> dict:
    row = side + 1
    vertices = [[float(x), float(y), 0.0] for y in range(row) for x in range(row)]
    faces = [
        [y * row + x, y * row + x + 1, (y + 1) * row + x + 1, (y + 1) * row + x]
        for y in range(side)
        for x in range(side)
    ]
    return {
        "schema_version": "1.0",
        "objects": [
            {
                "name": "Grid",
                "mesh": {
                    "name": "Grid",
                    "vertices": vertices,
                    "faces": faces,
                    "face_smooth": [True] * len(faces),
                    "uv_layers": [{"name": "UVMap", "uvs": [[0.5, 0.5]] * (4 * len(faces))}],
                },
                "modifiers": [{"name": "Bevel", "type": "BEVEL", "params": {"width": 0.1}}],
            }
        ],
    }


def timed(action, *args):
    """(result, seconds) of one call."""
    start = time.perf_counter()
    result = action(*args)
    return result, time.perf_counter() - start


def main() -> None:
    rows = []
    for side in tqdm(SIDES, desc="mesh sizes"):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        doc = grid_scene(side)
        mesh = doc["objects"][0]["mesh"]
        validated, validate_s = timed(validate_scene, doc)
        _, inject_s = timed(inject_scene, validated)
        _, baseline_s = timed(bpy.data.meshes.new("raw").from_pydata, mesh["vertices"], [], mesh["faces"])
        rows.append((side * side, validate_s, inject_s, baseline_s))
    print(
        f"{'faces':>8} | {'validate (thread) s':>19} | {'inject (UI) s':>13} | {'from_pydata s':>13} | inject/baseline"
    )
    for faces, validate_s, inject_s, baseline_s in rows:
        print(
            f"{faces:>8} | {validate_s:>19.3f} | {inject_s:>13.3f} | {baseline_s:>13.3f} | {inject_s / baseline_s:>6.1f}x"
        )


if __name__ == "__main__":
    main()
