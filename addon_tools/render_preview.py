"""Render a scene document to a PNG with Cycles on the CPU, through the add-on's own injector.

    python -m addon_tools.render_preview scene.json preview.png [--size 256] [--samples 16]

The scene goes into an empty file; a camera framing all mesh objects (a document's own cameras
are kept but not used), a sun and a grey world are added around it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import bpy
from mathutils import Vector

from addon.injector import inject_scene


def render(document: dict, out: Path, size: int = 256, samples: int = 16) -> list[str]:
    """Inject ``document`` into an empty file and render it; return the injector's warnings."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    scene = bpy.context.scene
    result = inject_scene(document, collection=scene.collection)
    bpy.context.view_layer.update()
    low, high = _bounds(result.objects)
    _add_lights_and_world(scene)
    scene.camera = _add_camera(scene, low, high)
    settings = scene.render
    settings.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    settings.resolution_x = settings.resolution_y = size
    settings.resolution_percentage = 100
    settings.image_settings.file_format = "PNG"
    settings.filepath = str(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    bpy.ops.render.render(write_still=True)
    return result.warnings


def _bounds(objects) -> tuple[Vector, Vector]:
    """World-space box around the evaluated meshes (modifiers applied)."""
    depsgraph = bpy.context.evaluated_depsgraph_get()
    corners = [
        obj.matrix_world @ Vector(corner)
        for obj in objects
        if obj.type == "MESH"
        for corner in obj.evaluated_get(depsgraph).bound_box
    ]
    if not corners:
        return Vector((-1, -1, -1)), Vector((1, 1, 1))
    low = Vector(min(c[i] for c in corners) for i in range(3))
    high = Vector(max(c[i] for c in corners) for i in range(3))
    return low, high


def _add_camera(scene, low: Vector, high: Vector):
    center = (low + high) / 2
    radius = max((high - low).length / 2, 0.1)
    camera = bpy.data.objects.new("Preview Camera", bpy.data.cameras.new("Preview Camera"))
    scene.collection.objects.link(camera)
    fov = camera.data.angle
    distance = radius / math.sin(fov / 2) * 1.05
    direction = Vector((1.0, -1.2, 0.8)).normalized()
    camera.location = center + direction * distance
    camera.rotation_euler = (-direction).to_track_quat("-Z", "Y").to_euler()
    camera.data.clip_end = distance * 4
    return camera


def _add_lights_and_world(scene) -> None:
    sun = bpy.data.objects.new("Preview Sun", bpy.data.lights.new("Preview Sun", "SUN"))
    sun.data.energy = 3.0
    sun.rotation_euler = (math.radians(40), math.radians(10), math.radians(30))
    scene.collection.objects.link(sun)
    world = bpy.data.worlds.new("Preview World")
    world.color = (0.35, 0.35, 0.38)
    if bpy.app.version < (5, 0, 0):
        world.use_nodes = True
    background = next(n for n in world.node_tree.nodes if n.bl_idname == "ShaderNodeBackground")
    background.inputs["Color"].default_value = (0.35, 0.35, 0.38, 1.0)
    background.inputs["Strength"].default_value = 0.8
    scene.world = world


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scene", type=Path, help="scene document (JSON)")
    parser.add_argument("out", type=Path, help="PNG to write")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    warnings = render(json.loads(args.scene.read_text()), args.out.resolve(), args.size, args.samples)
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(args.out)


if __name__ == "__main__":
    main()
