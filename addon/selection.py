"""The user's selected object as scene data, sent with an "Apply to selected" request
(POST /v1/apply) so the gateway's specialists see what they dress: its name, type, transform and
its mesh or its bones."""

from __future__ import annotations

# The gateway refuses bodies over 64 KiB; a vertex and its share of faces take about 40 bytes.
MAX_SENT_VERTICES = 1000
APPLY_TYPES = ("MESH", "ARMATURE")  # what the gateway's /v1/apply takes
DIGITS = 4  # 0.1 mm in a metre-sized object: plenty for a model that reads shapes


def object_document(obj) -> dict:
    """``obj`` as the gateway's TargetObject: the scene format's Object record
    (shared/scene/models.py) with what the specialists read, JSON-ready."""
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
    }
    if obj.type == "MESH":
        mesh = obj.data
        doc["mesh"] = {
            "vertices": [_rounded(v.co) for v in mesh.vertices],
            "faces": [list(p.vertices) for p in mesh.polygons],
        }
    elif obj.type == "ARMATURE":
        doc["armature"] = {"name": obj.data.name, "bones": [_bone(obj, bone) for bone in obj.data.bones]}
    return doc


def _bone(obj, bone) -> dict:
    """A bone as the extractor writes it: the animation specialist writes rotations in the
    armature's axes and turns them into each bone's by its rest frame (head, tail and roll), and
    moves the bones that constraints aim at (IK targets and poles)."""
    _, roll = type(bone).AxisRollFromMatrix(bone.matrix_local.to_3x3())
    doc = {
        "name": bone.name,
        "parent": bone.parent.name if bone.parent else None,
        "head": _rounded(bone.head_local),
        "tail": _rounded(bone.tail_local),
        "roll": round(roll, DIGITS + 2),
        "use_connect": bone.use_connect,
        "use_deform": bone.use_deform,
    }
    pose_bone = obj.pose.bones.get(bone.name) if obj.pose else None
    constraints = [
        {
            "name": c.name or c.type,
            "type": c.type,
            "params": {k: getattr(c, k) for k in ("subtarget", "pole_subtarget") if getattr(c, k, "")},
        }
        for c in (pose_bone.constraints if pose_bone else ())
    ]
    if constraints:
        doc["constraints"] = constraints
    return doc


def apply_target(obj) -> dict:
    """The ``object`` of a POST /v1/apply body: ``object_document``, once the gateway can take it.

    Raises ValueError, worded for the user, for an object the gateway could not take: another
    type, a mesh too large to send or without faces (the specialists read it), a rig without bones.
    """
    if obj.type not in APPLY_TYPES:
        raise ValueError(
            f"{obj.name} is a {obj.type.lower()} object: Apply to Selected works on a mesh or an armature."
        )
    if obj.type == "MESH":
        count = len(obj.data.vertices)
        if count > MAX_SENT_VERTICES:
            raise ValueError(
                f"{obj.name} has {count} vertices: Apply to Selected sends the mesh to the gateway, "
                f"which takes up to {MAX_SENT_VERTICES}. Decimate a copy, or select a simpler object."
            )
        if not len(obj.data.polygons):
            raise ValueError(f"{obj.name} has no faces: Apply to Selected needs a mesh with faces.")
    elif not len(obj.data.bones):
        raise ValueError(f"{obj.name} has no bones to animate.")
    return object_document(obj)


def _rounded(vector) -> list[float]:
    return [round(float(c), DIGITS) for c in vector]
