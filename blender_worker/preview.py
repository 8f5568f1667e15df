"""A small Cycles CPU render of the loaded scene: auto-framed camera, a sun and a grey world.

Runs after the document is read, because it adds a camera, a light and a world to the scene.
Cycles never needs EGL, so it works on headless machines where Workbench would abort.
"""

from __future__ import annotations

import math
from pathlib import Path

import bpy
from mathutils import Vector

RENDERED_TYPES = frozenset({"MESH", "CURVE", "SURFACE", "FONT", "META"})
VIEW_DIRECTION = Vector((1.0, -1.2, 0.8)).normalized()
LENS_MM = 50.0
SENSOR_MM = 36.0


def render_preview(out_png: Path, *, size: int, samples: int) -> bool:
    """Render to ``out_png``; False when the scene has nothing visible to frame."""
    scene = bpy.context.scene
    corners = _visible_corners(scene)
    if not corners:
        return False
    low = Vector(tuple(min(c[i] for c in corners) for i in range(3)))
    high = Vector(tuple(max(c[i] for c in corners) for i in range(3)))
    center = (low + high) / 2
    radius = max((high - low).length / 2, 1e-3)
    half_fov = math.atan(SENSOR_MM / 2 / LENS_MM)
    distance = radius / math.sin(half_fov) * 1.05

    camera_data = bpy.data.cameras.new("bmt_preview_camera")
    camera_data.lens = LENS_MM
    camera_data.sensor_width = SENSOR_MM
    camera_data.clip_start = distance / 1000
    camera_data.clip_end = distance * 10
    camera = bpy.data.objects.new("bmt_preview_camera", camera_data)
    camera.location = center + VIEW_DIRECTION * distance
    camera.rotation_euler = (-VIEW_DIRECTION).to_track_quat("-Z", "Y").to_euler()
    scene.collection.objects.link(camera)
    scene.camera = camera

    sun_data = bpy.data.lights.new("bmt_preview_sun", "SUN")
    sun_data.energy = 3.0
    sun = bpy.data.objects.new("bmt_preview_sun", sun_data)
    sun.rotation_euler = Vector((0.6, -0.4, 1.0)).normalized().to_track_quat("Z", "Y").to_euler()
    scene.collection.objects.link(sun)

    world = bpy.data.worlds.new("bmt_preview_world")
    world.color = (0.4, 0.4, 0.42)
    if world.node_tree is not None:
        background = next(n for n in world.node_tree.nodes if n.bl_idname == "ShaderNodeBackground")
        background.inputs["Color"].default_value = (0.4, 0.4, 0.42, 1.0)
    scene.world = world

    render = scene.render
    render.engine = "CYCLES"
    scene.cycles.device = "CPU"
    scene.cycles.samples = samples
    scene.cycles.use_denoising = False
    scene.cycles.use_adaptive_sampling = False
    render.resolution_x = render.resolution_y = size
    render.resolution_percentage = 100
    render.film_transparent = False
    render.use_compositing = False
    render.use_sequencer = False
    render.threads_mode = "FIXED"
    render.threads = 1  # one per worker process: the pool is the parallelism
    render.image_settings.media_type = "IMAGE"  # files saved with video output would refuse PNG
    render.image_settings.file_format = "PNG"
    render.filepath = str(out_png)
    bpy.ops.render.render(write_still=True)
    return out_png.exists()


def _visible_corners(scene: bpy.types.Scene) -> list[Vector]:
    depsgraph = bpy.context.evaluated_depsgraph_get()
    corners = []
    for obj in scene.objects:
        if obj.type not in RENDERED_TYPES or obj.hide_render:
            continue
        evaluated = obj.evaluated_get(depsgraph)
        corners.extend(evaluated.matrix_world @ Vector(c) for c in evaluated.bound_box)
    return corners
