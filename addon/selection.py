"""The user's selected object as a scene-format object, sent with an "Apply to selected" request
so the gateway's specialists see what they dress: its name, type, transform, material slots and
modifier types, its mesh (when small enough to send) or its bones."""

from __future__ import annotations

# The gateway refuses bodies over 64 KiB; a vertex and its share of faces take about 40 bytes.
MAX_SENT_VERTICES = 1000
DIGITS = 4  # 0.1 mm in a metre-sized object: plenty for a model that reads shapes


def object_document(obj) -> dict:
    """``obj`` as the scene format's Object record (shared/scene/models.py), JSON-ready."""
    doc: dict = {
        "name": obj.name,
        "type": obj.type,
        "transform": {
            "location": _rounded(obj.location),
            "rotation_mode": obj.rotation_mode,
            "rotation_euler": _rounded(obj.rotation_euler),
            "rotation_quaternion": _rounded(obj.rotation_quaternion),
            "scale": _rounded(obj.scale),
        },
        "modifiers": [{"name": m.name, "type": m.type} for m in obj.modifiers],
    }
    if hasattr(obj.data, "materials"):
        doc["material_slots"] = [slot.material.name if slot.material else None for slot in obj.material_slots]
    if obj.type == "MESH" and len(obj.data.vertices) <= MAX_SENT_VERTICES:
        mesh = obj.data
        doc["mesh"] = {
            "name": mesh.name,
            "vertices": [_rounded(v.co) for v in mesh.vertices],
            "faces": [list(p.vertices) for p in mesh.polygons],
        }
    elif obj.type == "ARMATURE":
        doc["armature"] = {
            "name": obj.data.name,
            "bones": [
                {
                    "name": bone.name,
                    "parent": bone.parent.name if bone.parent else None,
                    "head": _rounded(bone.head_local),
                    "tail": _rounded(bone.tail_local),
                    "use_connect": bone.use_connect,
                    "use_deform": bone.use_deform,
                }
                for bone in obj.data.bones
            ],
        }
    return doc


def _rounded(vector) -> list[float]:
    return [round(float(c), DIGITS) for c in vector]
