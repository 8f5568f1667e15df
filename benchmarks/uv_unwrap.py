"""UV maps for generated meshes: xatlas on the gateway side against Blender's Smart UV Project in
the injector, on the same meshes, in one run (issue 15's "measure and choose").

The meshes come from the geometry checkpoint, as a user gets them. For each method: time per mesh,
charts, how much of the unit square the charts cover, and area distortion (the area-weighted mean
of |log(UV area share / 3D area share)| per face: 0 when every face keeps its share of the area).
xatlas is not a project dependency: give it with PYTHONPATH (pip install --target DIR xatlas).

    python -m benchmarks.uv_unwrap [--checkpoint models/geometry/tiny/model.pt] [--count 12]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import bpy
import numpy as np

from addon.injector import inject_scene

PROMPTS = (
    "a wooden chair",
    "a round table",
    "a sword",
    "a barrel",
    "a lamp post",
    "a small house",
    "a rock",
    "a bottle",
    "a crate",
    "a tree",
    "a bench",
    "a shield",
)


def generated_meshes(checkpoint: Path, count: int, face_budget: int) -> list[dict]:
    from shared.ml.geometry_generator import GeometryGenerator

    generator = GeometryGenerator(checkpoint)
    return [
        generator.generate(PROMPTS[i % len(PROMPTS)], face_budget=face_budget, seed=i, temperature=0.8)
        for i in range(count)
    ]


def fan(faces: list[list[int]]) -> tuple[np.ndarray, list[int]]:
    """Triangles of each n-gon (a fan) and, per triangle, the n-gon it came from."""
    triangles, owner = [], []
    for f, face in enumerate(faces):
        for k in range(1, len(face) - 1):
            triangles.append((face[0], face[k], face[k + 1]))
            owner.append(f)
    return np.array(triangles, dtype=np.uint32), owner


def xatlas_corner_uvs(mesh: dict) -> tuple[list[list[float]], float]:
    """Per face corner, in face order (the scene format's layout), from xatlas's per-vertex UVs;
    and the seconds it took, conversion included."""
    import xatlas

    start = time.perf_counter()
    triangles, owner = fan(mesh["faces"])
    _, indices, uvs = xatlas.parametrize(np.asarray(mesh["vertices"], dtype=np.float32), triangles)
    corner_uv: dict[tuple[int, int], list[float]] = {}
    for t, (tri, new) in enumerate(zip(triangles, indices, strict=True)):
        for old, new_index in zip(tri, new, strict=True):
            corner_uv.setdefault((owner[t], int(old)), uvs[new_index].tolist())
    corners = [corner_uv[(f, v)] for f, face in enumerate(mesh["faces"]) for v in face]
    return corners, time.perf_counter() - start


def smart_project_corner_uvs(mesh: dict) -> tuple[list[list[float]], float]:
    """The same from Blender's unwrap of the injected mesh; the seconds of the unwrap alone."""
    bpy.ops.wm.read_factory_settings(use_empty=True)
    geometry = {"name": "M", "vertices": mesh["vertices"], "faces": mesh["faces"]}
    document = {"schema_version": "1.0", "objects": [{"name": "M", "mesh": geometry}]}
    obj = inject_scene(document).objects[0]
    start = time.perf_counter()
    smart_project(obj)
    seconds = time.perf_counter() - start
    data = [0.0] * (2 * len(obj.data.loops))
    obj.data.uv_layers.active.data.foreach_get("uv", data)
    return [data[i : i + 2] for i in range(0, len(data), 2)], seconds


def smart_project(obj) -> None:
    view_layer = bpy.context.view_layer
    view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bpy.ops.mesh.select_all(action="SELECT")
    bpy.ops.uv.smart_project(angle_limit=math.radians(66), island_margin=0.01)
    bpy.ops.object.mode_set(mode="OBJECT")


def quality(mesh: dict, corner_uvs: list[list[float]]) -> dict:
    vertices = np.asarray(mesh["vertices"], dtype=np.float64)
    area_3d, area_uv, corner = [], [], 0
    for face in mesh["faces"]:
        points = vertices[face]
        uv = np.asarray(corner_uvs[corner : corner + len(face)], dtype=np.float64)
        corner += len(face)
        fan_3d = [np.cross(points[k] - points[0], points[k + 1] - points[0]) for k in range(1, len(face) - 1)]
        fan_uv = [np.cross(uv[k] - uv[0], uv[k + 1] - uv[0]) for k in range(1, len(face) - 1)]
        area_3d.append(0.5 * np.linalg.norm(np.sum(fan_3d, axis=0)))
        area_uv.append(0.5 * abs(float(np.sum(fan_uv))))
    area_3d, area_uv = np.array(area_3d), np.array(area_uv)
    usable = (area_3d > 1e-12) & (area_uv > 1e-12)
    share_3d, share_uv = area_3d / area_3d.sum(), area_uv / max(area_uv.sum(), 1e-12)
    distortion = float(np.sum(share_3d[usable] * np.abs(np.log(share_uv[usable] / share_3d[usable]))))
    inside = all(-1e-6 <= c <= 1 + 1e-6 for uv in corner_uvs for c in uv)
    return {
        "coverage": float(area_uv.sum()),
        "distortion": distortion,
        "degenerate_uv_faces": int(np.sum((area_uv <= 1e-12) & (area_3d > 1e-12))),
        "inside_unit_square": inside,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, default=Path("models/geometry/tiny/model.pt"))
    parser.add_argument("--count", type=int, default=12)
    parser.add_argument("--face-budget", type=int, default=200)
    parser.add_argument("--out", type=Path, default=Path("var/bench/uv_unwrap.json"))
    args = parser.parse_args(argv)
    meshes = generated_meshes(args.checkpoint, args.count, args.face_budget)
    rows = {"xatlas (gateway)": [], "Smart UV Project (injector)": []}
    for mesh in meshes:
        for name, method in (
            ("xatlas (gateway)", xatlas_corner_uvs),
            ("Smart UV Project (injector)", smart_project_corner_uvs),
        ):
            uvs, seconds = method(mesh)
            rows[name].append({"ms": seconds * 1000, "faces": len(mesh["faces"]), **quality(mesh, uvs)})
    print(
        f"{len(meshes)} generated meshes, {np.mean([len(m['faces']) for m in meshes]):.0f} faces on average"
    )
    print(
        f"{'method':30} {'ms/mesh':>8} {'coverage':>9} {'distortion':>11} {'degenerate':>11} {'in [0,1]':>9}"
    )
    summary = {}
    for name, items in rows.items():
        summary[name] = {
            "ms_per_mesh": float(np.median([r["ms"] for r in items])),
            "coverage": float(np.mean([r["coverage"] for r in items])),
            "distortion": float(np.mean([r["distortion"] for r in items])),
            "degenerate_uv_faces": int(sum(r["degenerate_uv_faces"] for r in items)),
            "all_inside_unit_square": all(r["inside_unit_square"] for r in items),
        }
        s = summary[name]
        print(
            f"{name:30} {s['ms_per_mesh']:8.1f} {s['coverage']:9.3f} {s['distortion']:11.3f} "
            f"{s['degenerate_uv_faces']:11d} {str(s['all_inside_unit_square']):>9}"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
