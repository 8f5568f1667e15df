"""Builds hostile and synthetic .blend files with bpy, in a subprocess (tests never import bpy).

    python -m tests.blend_fixtures OUT_DIR MARKER_DIR
    python -m tests.blend_fixtures --grid OUT.blend SIDE     (one SIDE x SIDE-face grid, fast)

Writes text_block.blend (a registered text block that writes MARKER_DIR/text_block.ran when run),
driver.blend (a scripted driver expression that writes MARKER_DIR/driver.ran when evaluated),
grid.blend (a 100x100 grid, 10,201 vertices), heavy_subsurf.blend (a cube under a level-11
Subdivision Surface modifier: about 25 million faces when evaluated, far more memory than a child
may use) and slow_smooth.blend (100,000 vertices smoothed 32,767 times: slow, in little memory).
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy


def _empty_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _mesh_object(name: str, vertices: list, faces: list) -> bpy.types.Object:
    """Built through bpy.data, not operators, so that nothing is evaluated while building."""
    mesh = bpy.data.meshes.new(name)
    mesh.from_pydata(vertices, [], faces)
    obj = bpy.data.objects.new(name, mesh)
    bpy.context.scene.collection.objects.link(obj)
    return obj


def _cube(name: str) -> bpy.types.Object:
    vertices = [(x, y, z) for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return _mesh_object(name, vertices, faces)


def _grid(name: str, n: int) -> bpy.types.Object:
    vertices = [(x, y, 0.0) for y in range(n + 1) for x in range(n + 1)]
    faces = [
        (y * (n + 1) + x, y * (n + 1) + x + 1, (y + 1) * (n + 1) + x + 1, (y + 1) * (n + 1) + x)
        for y in range(n)
        for x in range(n)
    ]
    return _mesh_object(name, vertices, faces)


def _save(path: Path, *extra: bpy.types.ID) -> None:
    """Write the scene without evaluating it (save_as_mainfile would run the heavy modifiers)."""
    bpy.data.libraries.write(str(path), {bpy.context.scene, *extra})


def build(out: Path, markers: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)

    _empty_scene()
    _cube("Cube")
    text = bpy.data.texts.new("payload.py")
    text.write(f"open({str(markers / 'text_block.ran')!r}, 'w').write('ran')\n")
    text.use_module = True  # Blender runs it on load when auto-execution is allowed
    _save(out / "text_block.blend", text)

    _empty_scene()
    cube = _cube("Driven")
    cube.modifiers.new("Bevel", "BEVEL")  # so that the extractor evaluates the depsgraph
    driver = cube.driver_add("location", 0).driver
    driver.type = "SCRIPTED"
    driver.expression = f"__import__('pathlib').Path({str(markers / 'driver.ran')!r}).write_text('ran') and 0"
    _save(out / "driver.blend")

    _empty_scene()
    _grid("Grid", 100)
    _save(out / "grid.blend")

    _empty_scene()
    heavy = _cube("Heavy")
    subsurf = heavy.modifiers.new("Subdivision", "SUBSURF")
    subsurf.levels = 11
    _save(out / "heavy_subsurf.blend")

    _empty_scene()
    slow = _cube("Slow")
    slow.modifiers.new("Subdivision", "SUBSURF").levels = 7
    smooth = slow.modifiers.new("Smooth", "SMOOTH")
    smooth.iterations = 32767  # seconds of work in little memory
    _save(out / "slow_smooth.blend")


def write_big_grid(path: Path, side: int) -> None:
    """One grid mesh of side x side faces with a UV map, as most real meshes carry (one more value
    pair per face corner to read), built from numpy arrays (from_pydata's Python lists of millions
    of tuples take minutes and gigabytes)."""
    import numpy as np

    _empty_scene()
    xs, ys = np.meshgrid(np.arange(side + 1, dtype=np.float32), np.arange(side + 1, dtype=np.float32))
    co = np.stack([xs.ravel(), ys.ravel(), np.zeros(xs.size, np.float32)], 1) / side
    corner = (np.arange(side)[None, :] + (side + 1) * np.arange(side)[:, None]).ravel()
    loops = np.stack([corner, corner + 1, corner + side + 2, corner + side + 1], 1).ravel()
    mesh = bpy.data.meshes.new("BigGrid")
    mesh.vertices.add(len(co))
    mesh.vertices.foreach_set("co", co.ravel())
    mesh.loops.add(len(loops))
    mesh.loops.foreach_set("vertex_index", loops.astype(np.int32))
    mesh.polygons.add(side * side)
    mesh.polygons.foreach_set("loop_start", np.arange(0, len(loops), 4, dtype=np.int32))
    mesh.update(calc_edges=True)
    mesh.uv_layers.new(name="UVMap").data.foreach_set("uv", co[loops, :2].ravel())
    obj = bpy.data.objects.new("BigGrid", mesh)
    bpy.context.scene.collection.objects.link(obj)
    _save(path)


def run_trusted(path: Path) -> None:
    """Open ``path`` as a trusting user would (auto-execution on) and evaluate it: the control case."""
    bpy.context.preferences.filepaths.use_scripts_auto_execute = True
    bpy.ops.wm.open_mainfile(filepath=str(path), use_scripts=True)
    bpy.context.evaluated_depsgraph_get().update()


if __name__ == "__main__":
    if sys.argv[1] == "--trusted":
        run_trusted(Path(sys.argv[2]))
    elif sys.argv[1] == "--grid":
        write_big_grid(Path(sys.argv[2]), int(sys.argv[3]))
    else:
        build(Path(sys.argv[1]), Path(sys.argv[2]))
