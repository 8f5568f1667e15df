"""Counts and per-object rows derived from a scene document (plain dicts; no bpy)."""

from __future__ import annotations

from typing import Any

import numpy as np


def document_counts(doc: dict[str, Any]) -> dict[str, int]:
    """What a document captured, for summaries, coverage and the Extraction row's stats."""
    objects = doc["objects"]
    meshes = [o["mesh"] for o in objects if o.get("mesh")]
    animations = [o["animation"] for o in objects if o.get("animation")]
    animations += [m["shape_key_animation"] for m in meshes if m.get("shape_key_animation")]
    return {
        "objects": len(objects),
        "mesh_objects": len(meshes),
        "vertices": sum(len(m["vertices"]) for m in meshes),
        "faces": sum(len(m["faces"]) for m in meshes),
        "evaluated_meshes": sum(1 for o in objects if o.get("evaluated_mesh")),
        "materials": len(doc["materials"]),
        "node_materials": sum(1 for m in doc["materials"] if m.get("node_tree")),
        "legacy_materials": sum(1 for m in doc["materials"] if m.get("source") == "legacy"),
        "node_groups": len(doc["node_groups"]),
        "modifiers": sum(len(o.get("modifiers", ())) for o in objects),
        "constraints": sum(len(o.get("constraints", ())) for o in objects),
        "armatures": sum(1 for o in objects if o.get("armature")),
        "shape_keys": sum(len(m.get("shape_keys", ())) for m in meshes),
        "actions": len(doc["actions"]),
        "fcurves": sum(len(a["fcurves"]) for a in doc["actions"]),
        "keyframes": sum(len(fc["keyframes"]) for a in doc["actions"] for fc in a["fcurves"]),
        "drivers": sum(len(a.get("drivers", ())) for a in animations),
        "nla_strips": sum(len(t["strips"]) for a in animations for t in a.get("nla_tracks", ())),
        "images": len(doc["images"]),
        "missing_images": sum(1 for i in doc["images"] if i.get("missing")),
        "warnings": len(doc["warnings"]),
    }


def object_rows(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """One SceneObject row per object: sizes and an object-space bounding box of its geometry."""
    animated_actions = {a["name"] for a in doc["actions"] if any(fc["keyframes"] for fc in a["fcurves"])}
    rows = []
    for obj in doc["objects"]:
        mesh = obj.get("evaluated_mesh") or obj.get("mesh")
        row: dict[str, Any] = {
            "name": obj["name"],
            "type": obj.get("type", "MESH"),
            "vertex_count": len(mesh["vertices"]) if mesh else 0,
            "face_count": len(mesh["faces"]) if mesh else 0,
            "triangle_count": sum(len(f) - 2 for f in mesh["faces"]) if mesh else 0,
            "material_count": sum(1 for s in obj.get("material_slots", ()) if s is not None),
            "modifier_count": len(obj.get("modifiers", ())),
            "has_animation": _has_animation(obj, animated_actions),
            "bbox_min": None,
            "bbox_max": None,
        }
        if mesh and len(mesh["vertices"]):
            vertices = np.asarray(mesh["vertices"], dtype=np.float64)
            row["bbox_min"] = vertices.min(axis=0).tolist()
            row["bbox_max"] = vertices.max(axis=0).tolist()
        rows.append(row)
    return rows


def _has_animation(obj: dict[str, Any], animated_actions: set[str]) -> bool:
    anims = [obj.get("animation")]
    if obj.get("mesh"):
        anims.append(obj["mesh"].get("shape_key_animation"))
    for anim in filter(None, anims):
        if anim.get("action") in animated_actions or anim.get("drivers"):
            return True
        strips = (s for t in anim.get("nla_tracks", ()) for s in t["strips"])
        if any(s.get("action") in animated_actions for s in strips):
            return True
    return False
