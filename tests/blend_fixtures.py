"""Builds hostile and synthetic .blend files with bpy, in a subprocess (tests never import bpy).

    python -m tests.blend_fixtures OUT_DIR MARKER_DIR

Writes text_block.blend (a registered text block that writes MARKER_DIR/text_block.ran when run),
driver.blend (a scripted driver expression that writes MARKER_DIR/driver.ran when evaluated),
grid.blend (a 100x100 grid, 10,000 vertices) and heavy_subsurf.blend (a cube under a level-11
Subdivision Surface modifier: about 25 million faces when evaluated).
"""

from __future__ import annotations

import sys
from pathlib import Path

import bpy


def _empty_scene() -> None:
    bpy.ops.wm.read_factory_settings(use_empty=True)


def _cube(name: str) -> bpy.types.Object:
    bpy.ops.mesh.primitive_cube_add()
    obj = bpy.context.active_object
    obj.name = name
    return obj


def build(out: Path, markers: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)

    _empty_scene()
    _cube("Cube")
    text = bpy.data.texts.new("payload.py")
    text.write(f"open({str(markers / 'text_block.ran')!r}, 'w').write('ran')\n")
    text.use_module = True  # Blender runs it on load when auto-execution is allowed
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "text_block.blend"))

    _empty_scene()
    cube = _cube("Driven")
    cube.modifiers.new("Bevel", "BEVEL")  # so that the extractor evaluates the depsgraph
    driver = cube.driver_add("location", 0).driver
    driver.type = "SCRIPTED"
    driver.expression = f"__import__('pathlib').Path({str(markers / 'driver.ran')!r}).write_text('ran') and 0"
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "driver.blend"))

    _empty_scene()
    bpy.ops.mesh.primitive_grid_add(x_subdivisions=100, y_subdivisions=100)
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "grid.blend"))

    _empty_scene()
    heavy = _cube("Heavy")
    subsurf = heavy.modifiers.new("Subdivision", "SUBSURF")
    subsurf.levels = 11
    bpy.ops.wm.save_as_mainfile(filepath=str(out / "heavy_subsurf.blend"))


def run_trusted(path: Path) -> None:
    """Open ``path`` as a trusting user would (auto-execution on) and evaluate it: the control case."""
    bpy.context.preferences.filepaths.use_scripts_auto_execute = True
    bpy.ops.wm.open_mainfile(filepath=str(path), use_scripts=True)
    bpy.context.evaluated_depsgraph_get().update()


if __name__ == "__main__":
    if sys.argv[1] == "--trusted":
        run_trusted(Path(sys.argv[2]))
    else:
        build(Path(sys.argv[1]), Path(sys.argv[2]))
