"""Render materials on a sphere, one PNG each: the add-on's injector builds each material on a
smooth UV sphere in an empty file, the preview renderer (Cycles on the CPU) draws it.

    python -m blender_worker.render_materials materials.json out_dir [--size 128] [--samples 16]

materials.json is a list of scene-format materials; out_dir receives 0.png, 1.png...; stdout
also gets warnings.json, the injector's warnings per material (an empty list: built cleanly).
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import bpy

from addon.injector import inject_scene
from blender_worker.preview import render_preview


def sphere(rings: int = 16, segments: int = 32) -> dict:
    """A smooth UV sphere of radius 1 as a scene-format mesh."""
    vertices = [[0.0, 0.0, 1.0]]
    for r in range(1, rings):
        theta = math.pi * r / rings
        vertices += [
            [
                math.sin(theta) * math.cos(2 * math.pi * s / segments),
                math.sin(theta) * math.sin(2 * math.pi * s / segments),
                math.cos(theta),
            ]
            for s in range(segments)
        ]
    vertices.append([0.0, 0.0, -1.0])
    bottom = len(vertices) - 1

    def ring(r: int, s: int) -> int:
        return 1 + (r - 1) * segments + s % segments

    faces = [[0, ring(1, s), ring(1, s + 1)] for s in range(segments)]
    for r in range(1, rings - 1):
        faces += [[ring(r, s), ring(r + 1, s), ring(r + 1, s + 1), ring(r, s + 1)] for s in range(segments)]
    faces += [[ring(rings - 1, s + 1), ring(rings - 1, s), bottom] for s in range(segments)]
    return {"name": "Sphere", "vertices": vertices, "faces": faces, "face_smooth": [True] * len(faces)}


def render_materials(
    renders: list[dict], out_dir: Path, size: int = 128, samples: int = 16
) -> list[list[str]]:
    out_dir.mkdir(parents=True, exist_ok=True)
    warnings = []
    ball = sphere()
    for i, render in enumerate(renders):
        bpy.ops.wm.read_factory_settings(use_empty=True)
        material = dict(render["material"], name="Sample")
        mesh = {"name": "Object", **render["mesh"]} if render.get("mesh") else ball
        doc = {
            "schema_version": "1.0",
            "materials": [material],
            "objects": [{"name": "Object", "mesh": mesh, "material_slots": ["Sample"]}],
        }
        warnings.append(inject_scene(doc).warnings)
        render_preview(out_dir / f"{i}.png", size=size, samples=samples)
    return warnings


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("renders", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--samples", type=int, default=16)
    args = parser.parse_args(argv)
    out_dir = args.out_dir.resolve()
    warnings = render_materials(json.loads(args.renders.read_text()), out_dir, args.size, args.samples)
    (out_dir / "warnings.json").write_text(json.dumps(warnings))


if __name__ == "__main__":
    main()
