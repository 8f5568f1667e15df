"""Modifier stacks for people to read: a stack as text and a mesh drawn in a matplotlib 3D axis,
shared by the labeler's derivation report and the modifier evaluation's picture."""

from __future__ import annotations

from typing import Any

import numpy as np

from shared.ml.modifier_structure import MeshArrays, face_geometry


def stack_text(stack: list[dict[str, Any]]) -> str:
    lines = []
    for m in stack:
        p = m["params"]
        if m["type"] == "MIRROR":
            detail = "axis " + "".join(a for a, on in zip("XYZ", p.get("use_axis", []), strict=False) if on)
        elif m["type"] == "ARRAY":
            step = (
                p.get("relative_offset_displace")
                if p.get("use_relative_offset")
                else p.get("constant_offset_displace")
            )
            kind = "relative" if p.get("use_relative_offset") else "constant"
            detail = f"count {p.get('count')}, {kind} {[round(float(s), 3) for s in step or []]}"
        elif m["type"] == "SOLIDIFY":
            detail = f"thickness {float(p.get('thickness', 0)):.4g}, offset {p.get('offset')}"
        elif m["type"] == "BEVEL":
            detail = f"width {float(p.get('width', 0)):.3g}, segments {p.get('segments')}"
        elif m["type"] == "SUBSURF":
            detail = f"levels {p.get('levels')}"
        else:
            detail = ""
        lines.append(f"{m['type']}  {detail}")
    return "\n".join(lines) or "(no modifiers)"


def draw_mesh(ax: Any, mesh: MeshArrays, title: str, frame: MeshArrays | None = None) -> None:
    """A mesh in a 3D axis, shaded by face normal, with equal axes fitted to ``frame`` (default the mesh)."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection

    normals, _, _ = face_geometry(mesh)
    shade = 0.45 + 0.5 * np.clip(normals @ np.array([0.3, -0.5, 0.8]), 0, 1)
    colours = np.column_stack([0.55 * shade, 0.7 * shade, 0.85 * shade])
    ax.add_collection3d(
        Poly3DCollection(
            [mesh.vertices[f] for f in mesh.faces], facecolors=colours, edgecolor="#1d3557", linewidths=0.2
        )
    )
    box = (frame or mesh).vertices
    centre, half = (box.min(0) + box.max(0)) / 2, np.ptp(box, axis=0).max() / 2 or 1.0
    for setter, c in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), centre, strict=True):
        setter(c - half, c + half)
    ax.view_init(elev=22, azim=-55)
    ax.set_axis_off()
    ax.set_title(title, fontsize=7)
