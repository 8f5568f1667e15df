"""The product brief's short scene format, converted to the scene format (schema 1.0).

Standard library only. A short document has no ``schema_version``; each object names its own
mesh, transforms, materials and modifiers in a few plain fields:

    {"objects": [{"name": "Chair",
                  "mesh": {"vertices": [[0, 0, 0], ...], "faces": [[0, 1, 2, 3], ...]},
                  "transforms": {"location": [0, 0, 0], "rotation": [0, 0, 1.57], "scale": 1.0},
                  "materials": [{"name": "Oak", "base_color": [0.5, 0.3, 0.1], "roughness": 0.6,
                                 "metallic": 0.0}],
                  "modifiers": [{"type": "MIRROR", "axis": "Y", "clipping": true},
                                {"type": "SUBSURF", "levels": 2}]}]}

- ``transforms``: location, rotation (Euler XYZ in radians, as Blender stores it), scale (three
  numbers or one for all axes); each optional.
- ``materials``: one per material slot; base_color as RGB or RGBA (0..1, linear), roughness,
  metallic, and any other field of the scene format's PBR summary (emission_color, alpha...).
- ``modifiers``: ``type`` is Blender's modifier type; the other keys are the modifier's Blender
  property names, plus these shorthands: MIRROR ``axis`` ("X", "XY"... or a list), ``clipping``,
  ``bisect``; SUBSURF ``levels`` also sets the render levels unless given; ARRAY ``offset``
  (relative, three numbers); BEVEL ``amount`` for width.
"""

from __future__ import annotations

SCENE_FIELDS = ("name", "objects", "warnings")
OBJECT_FIELDS = ("name", "type", "mesh", "transforms", "materials", "modifiers")
AXES = "XYZ"


class ShortFormatError(ValueError):
    """The short document cannot be converted; ``errors`` lists 'field.path: problem' lines."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        super().__init__("invalid short scene document:\n" + "\n".join(errors))


def is_short_format(document: object) -> bool:
    """No schema version, and only the short format's fields (a scene-format document that lost
    its version is not one: it is refused for the missing version)."""
    if not isinstance(document, dict) or "schema_version" in document:
        return False
    objects = document.get("objects")
    return (
        isinstance(objects, list)
        and set(document) <= set(SCENE_FIELDS)
        and all(isinstance(obj, dict) and set(obj) <= set(OBJECT_FIELDS) for obj in objects)
    )


def from_short_format(document: dict) -> dict:
    """The scene-format document for a short one (see is_short_format); the result still goes
    through validate_scene, which checks the values."""
    errors: list[str] = []
    scene: dict = {"schema_version": "1.0", "objects": [], "materials": []}
    if "name" in document:
        scene["name"] = document["name"]
    if "warnings" in document:
        scene["warnings"] = document["warnings"]
    materials: dict[str, dict] = {}  # name -> scene material, shared when two objects name the same
    for i, obj in enumerate(document["objects"]):
        scene["objects"].append(_object(obj, i, materials, errors))
    if errors:
        raise ShortFormatError(errors)
    scene["materials"] = list(materials.values())
    return scene


def _object(obj: dict, index: int, materials: dict[str, dict], errors: list[str]) -> dict:
    path = f"objects[{index}]"
    name = obj.get("name") if isinstance(obj.get("name"), str) and obj.get("name") else f"Object{index + 1}"
    out: dict = {"name": name, "type": obj.get("type", "MESH" if "mesh" in obj else "EMPTY")}
    mesh = obj.get("mesh")
    if mesh is not None:
        if isinstance(mesh, dict):
            out["mesh"] = {"name": f"{name}Mesh", **mesh}
        else:
            errors.append(f"{path}.mesh: expected an object with vertices and faces")
    transforms = obj.get("transforms", {})
    if isinstance(transforms, dict):
        out["transform"] = _transform(transforms, f"{path}.transforms", errors)
    else:
        errors.append(f"{path}.transforms: expected an object with location, rotation, scale")
    slots = []
    for j, material in enumerate(_list(obj, "materials", path, errors)):
        if isinstance(material, dict):
            slots.append(_material(material, name, j, materials))
        else:
            errors.append(f"{path}.materials[{j}]: expected an object (base_color, roughness, metallic)")
    if slots:
        out["material_slots"] = slots
    modifiers = []
    for j, modifier in enumerate(_list(obj, "modifiers", path, errors)):
        if isinstance(modifier, dict) and isinstance(modifier.get("type"), str):
            modifiers.append(_modifier(modifier, [m["name"] for m in modifiers]))
        else:
            errors.append(f"{path}.modifiers[{j}]: expected an object with a type, e.g. MIRROR")
    if modifiers:
        out["modifiers"] = modifiers
    return out


def _list(obj: dict, key: str, path: str, errors: list[str]) -> list:
    value = obj.get(key, [])
    if isinstance(value, dict):  # one material or modifier written without the list around it
        return [value]
    if not isinstance(value, list):
        errors.append(f"{path}.{key}: expected a list")
        return []
    return value


def _transform(transforms: dict, path: str, errors: list[str]) -> dict:
    out = {}
    for key in sorted(set(transforms) - {"location", "rotation", "scale"}):
        errors.append(f"{path}.{key}: not a field of transforms (location, rotation, scale)")
    if "location" in transforms:
        out["location"] = transforms["location"]
    if "rotation" in transforms:
        out["rotation_euler"] = transforms["rotation"]
    scale = transforms.get("scale")
    if isinstance(scale, int | float) and not isinstance(scale, bool):
        out["scale"] = [scale, scale, scale]
    elif scale is not None:
        out["scale"] = scale
    return out


def _material(material: dict, object_name: str, index: int, materials: dict[str, dict]) -> str:
    pbr = {key: value for key, value in material.items() if key != "name"}
    color = pbr.get("base_color")
    if isinstance(color, list) and len(color) == 3:
        pbr["base_color"] = [*color, 1.0]
    name = material.get("name") if isinstance(material.get("name"), str) and material.get("name") else None
    name = name or f"{object_name}Material{index + 1 if index else ''}"
    base, n = name, 1
    while name in materials and materials[name]["pbr"] != pbr:  # same name, other values: a new one
        name, n = f"{base}.{n:03d}", n + 1
    materials.setdefault(
        name,
        {
            "name": name,
            "source": "generated",
            "pbr": pbr,
            **({"diffuse_color": pbr["base_color"]} if "base_color" in pbr else {}),
        },
    )
    return name


def _modifier(modifier: dict, taken: list[str]) -> dict:
    kind = modifier["type"].upper()
    params = {key: value for key, value in modifier.items() if key not in ("type", "name")}
    if kind == "MIRROR":
        for short, blender in (("axis", "use_axis"), ("bisect", "use_bisect_axis")):
            if short in params:
                params[blender] = _axes(params.pop(short))
        if "clipping" in params:
            params["use_clip"] = params.pop("clipping")
    elif kind == "SUBSURF" and "levels" in params:
        params.setdefault("render_levels", params["levels"])
    elif kind == "ARRAY" and "offset" in params:
        params["relative_offset_displace"] = params.pop("offset")
    elif kind == "BEVEL" and "amount" in params:
        params["width"] = params.pop("amount")
    name = modifier.get("name") if isinstance(modifier.get("name"), str) else kind.title().replace("_", " ")
    base, n = name, 1
    while name in taken:
        name, n = f"{base}.{n:03d}", n + 1
    return {"name": name, "type": kind, "params": params}


def _axes(value: object) -> object:
    """'Y', 'XZ' or ['X', 'Z'] -> [False, True, False]...; anything else is left for the validator."""
    if isinstance(value, str):
        value = list(value.upper())
    if isinstance(value, list) and value and all(isinstance(a, str) and a.upper() in AXES for a in value):
        return [axis in {a.upper() for a in value} for axis in AXES]
    return value
