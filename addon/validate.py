"""Check an untrusted scene document with the standard library only, before anything is created.

The add-on cannot import the project's pydantic models (a user's Blender has neither pydantic nor
this repository), so this module re-states the scene format (shared/scene/models.py, schema 1.0)
as plain tables and re-implements the cross-field checks of shared/scene/validate.py. Messages
name the field the same way ("objects[1].mesh.faces[6]: ..."). ``validate_scene`` returns a
normalised copy with every default filled in, so the injector never guesses a missing field.
A document in the product brief's short format (short_format.py) is converted first.

It is stricter than pydantic's lax mode in one way: no coercion ("yes" is not a boolean, 1.0 is
not a face index). Documents written by the project's models (model_dump_json) always pass.
"""

from __future__ import annotations

import itertools
import json
import math
from dataclasses import dataclass

from .short_format import OBJECT_FIELDS, ShortFormatError, from_short_format, is_short_format

SUPPORTED_SCHEMA_VERSIONS = ("1.0",)
MAX_REPORTED_ERRORS = 20
NAME_MAX = 255
# Blender refuses more than 8 UV maps per mesh (MAX_MTFACE).
MAX_UV_LAYERS = 8


class SceneValidationError(ValueError):
    """A scene document that must not be used; ``errors`` lists 'field.path: problem' lines."""

    def __init__(self, errors: list[str]):
        self.errors = errors
        shown = errors[:MAX_REPORTED_ERRORS]
        more = f"\n... and {len(errors) - len(shown)} more" if len(errors) > len(shown) else ""
        super().__init__("invalid scene document:\n" + "\n".join(shown) + more)


class ValidatedScene(dict):
    """A document as validate_scene returned it: normalised, checked, safe to create."""


class _TooManyErrors(Exception):
    """Stops the walk once enough errors are collected; a broken 2M-vertex list is not 2M lines."""


@dataclass(frozen=True)
class Limits:
    # The first five match shared/scene/validate.py's defaults (BMT_SCENE_MAX_*).
    max_objects: int = 2_000
    max_vertices: int = 2_000_000
    max_faces: int = 2_000_000
    max_nodes: int = 20_000
    max_keyframes: int = 1_000_000
    # Caps the shared format leaves open but that an add-on must bound to keep Blender responsive.
    max_corners: int = 10_000_000
    max_shape_key_vertices: int = 4_000_000
    max_vertex_group_weights: int = 4_000_000
    max_list_items: int = 100_000  # any other list: materials, links, drivers, fcurves...
    max_param_depth: int = 16
    max_string: int = 65_536
    max_image_side: int = 65_536
    max_images: int = 256  # each becomes a placeholder of up to 256 KiB


# ---- the format as tables -------------------------------------------------------------------
# A spec is one of: "float" (finite), "int", "bool", "str", "name" (1..255 chars), "param" (any
# JSON value, the format's ParamValue), or a tuple: ("opt", spec), ("list", spec), ("tuple", spec,
# n), ("enum", values), ("dict", spec), ("record", record_name), ("strmax", n).
# Record fields map to (spec, default); REQUIRED marks a field without default and RECORD_DEFAULT
# a nested record built from its own defaults.

REQUIRED = object()
RECORD_DEFAULT = object()

VEC2 = ("tuple", "float", 2)
VEC3 = ("tuple", "float", 3)
VEC4 = ("tuple", "float", 4)
INTERPOLATIONS = (
    "CONSTANT",
    "LINEAR",
    "BEZIER",
    "SINE",
    "QUAD",
    "CUBIC",
    "QUART",
    "QUINT",
    "EXPO",
    "CIRC",
    "BACK",
    "BOUNCE",
    "ELASTIC",
)
HANDLE_TYPES = ("FREE", "ALIGNED", "VECTOR", "AUTO", "AUTO_CLAMPED")

RECORDS: dict[str, dict[str, tuple[object, object]]] = {
    "UVLayer": {
        "name": ("name", REQUIRED),
        "uvs": (("list", VEC2), REQUIRED),
        "active_render": ("bool", False),
    },
    "ShapeKey": {
        "name": ("name", REQUIRED),
        "vertices": (("list", VEC3), REQUIRED),
        "value": ("float", 0.0),
        "relative_key": (("opt", "str"), None),
        "slider_min": ("float", 0.0),
        "slider_max": ("float", 1.0),
        "vertex_group": (("opt", "str"), None),
        "mute": ("bool", False),
    },
    "Mesh": {
        "name": ("name", REQUIRED),
        "vertices": (("list", VEC3), REQUIRED),
        "faces": (("list", ("list", "int")), REQUIRED),
        "loose_edges": (("list", ("tuple", "int", 2)), []),
        "normals": (("opt", ("list", VEC3)), None),
        "face_smooth": (("opt", ("list", "bool")), None),
        "material_indices": (("opt", ("list", "int")), None),
        "uv_layers": (("list", ("record", "UVLayer")), []),
        "shape_keys": (("list", ("record", "ShapeKey")), []),
        "shape_key_animation": (("opt", ("record", "Animation")), None),
    },
    "SocketValue": {
        "identifier": ("name", REQUIRED),
        "name": ("str", ""),
        "type": ("str", ""),
        "default": ("param", None),
        "hidden": ("bool", False),
    },
    "Node": {
        "name": ("name", REQUIRED),
        "type": ("name", REQUIRED),
        "label": ("str", ""),
        "location": (VEC2, (0.0, 0.0)),
        "parent": (("opt", "str"), None),
        "properties": (("dict", "param"), {}),
        "inputs": (("list", ("record", "SocketValue")), []),
        "outputs": (("list", ("record", "SocketValue")), []),
        "node_tree": (("opt", "str"), None),
        "image": (("opt", "str"), None),
    },
    "Link": {
        "from_node": ("name", REQUIRED),
        "from_socket": ("name", REQUIRED),
        "to_node": ("name", REQUIRED),
        "to_socket": ("name", REQUIRED),
        "muted": ("bool", False),
    },
    "InterfaceSocket": {
        "name": ("str", REQUIRED),
        "identifier": ("name", REQUIRED),
        "in_out": (("enum", ("INPUT", "OUTPUT")), REQUIRED),
        "socket_type": ("name", REQUIRED),
        "default": ("param", None),
        "min_value": (("opt", "float"), None),
        "max_value": (("opt", "float"), None),
    },
    "NodeTree": {
        "name": ("name", REQUIRED),
        "type": ("name", "ShaderNodeTree"),
        "nodes": (("list", ("record", "Node")), []),
        "links": (("list", ("record", "Link")), []),
        "interface": (("list", ("record", "InterfaceSocket")), []),
    },
    "TextureRef": {"image": ("str", REQUIRED), "uv_layer": (("opt", "str"), None)},
    "PBRSummary": {
        "base_color": (VEC4, (0.8, 0.8, 0.8, 1.0)),
        "metallic": ("float", 0.0),
        "roughness": ("float", 0.5),
        "specular": ("float", 0.5),
        "ior": ("float", 1.5),
        "alpha": ("float", 1.0),
        "emission_color": (VEC4, (0.0, 0.0, 0.0, 1.0)),
        "emission_strength": ("float", 0.0),
        "transmission": ("float", 0.0),
        "normal_strength": ("float", 1.0),
        "textures": (("dict", ("record", "TextureRef")), {}),
    },
    "Material": {
        "name": ("name", REQUIRED),
        "pbr": (("record", "PBRSummary"), RECORD_DEFAULT),
        "node_tree": (("opt", ("record", "NodeTree")), None),
        "source": (("enum", ("nodes", "legacy", "generated")), "nodes"),
        "diffuse_color": (VEC4, (0.8, 0.8, 0.8, 1.0)),
        "blend_method": ("str", "OPAQUE"),
        "use_backface_culling": ("bool", False),
    },
    "Image": {
        "name": ("name", REQUIRED),
        "filepath": ("str", ""),
        "packed": ("bool", False),
        "missing": ("bool", False),
        "size": (("tuple", "int", 2), (0, 0)),
        "colorspace": ("str", "sRGB"),
    },
    "Modifier": {
        "name": ("name", REQUIRED),
        "type": ("name", REQUIRED),
        "show_viewport": ("bool", True),
        "show_render": ("bool", True),
        "params": (("dict", "param"), {}),
    },
    "Constraint": {
        "name": ("name", REQUIRED),
        "type": ("name", REQUIRED),
        "mute": ("bool", False),
        "influence": ("float", 1.0),
        "params": (("dict", "param"), {}),
    },
    "VertexGroup": {
        "name": ("name", REQUIRED),
        "indices": (("list", "int"), []),
        "weights": (("list", "float"), []),
    },
    "Bone": {
        "name": ("name", REQUIRED),
        "parent": (("opt", "str"), None),
        "head": (VEC3, REQUIRED),
        "tail": (VEC3, REQUIRED),
        "roll": ("float", 0.0),
        "use_connect": ("bool", False),
        "use_deform": ("bool", True),
        "constraints": (("list", ("record", "Constraint")), []),
    },
    "Armature": {"name": ("name", REQUIRED), "bones": (("list", ("record", "Bone")), [])},
    "Camera": {
        "type": (("enum", ("PERSP", "ORTHO", "PANO")), "PERSP"),
        "lens": ("float", 50.0),
        "ortho_scale": ("float", 6.0),
        "sensor_width": ("float", 36.0),
        "clip_start": ("float", 0.1),
        "clip_end": ("float", 1000.0),
    },
    "Light": {
        "type": (("enum", ("POINT", "SUN", "SPOT", "AREA")), "POINT"),
        "color": (VEC3, (1.0, 1.0, 1.0)),
        "energy": ("float", 10.0),
        "radius": ("float", 0.1),
        "spot_size": (("opt", "float"), None),
        "spot_blend": (("opt", "float"), None),
    },
    "Keyframe": {
        "co": (VEC2, REQUIRED),
        "interpolation": (("enum", INTERPOLATIONS), "BEZIER"),
        "handle_left": (("opt", VEC2), None),
        "handle_right": (("opt", VEC2), None),
        "handle_left_type": (("enum", HANDLE_TYPES), "AUTO_CLAMPED"),
        "handle_right_type": (("enum", HANDLE_TYPES), "AUTO_CLAMPED"),
        "easing": (("enum", ("AUTO", "EASE_IN", "EASE_OUT", "EASE_IN_OUT")), "AUTO"),
    },
    "FCurve": {
        "data_path": ("name", REQUIRED),
        "index": ("index", 0),
        "group": (("opt", "str"), None),
        "extrapolation": (("enum", ("CONSTANT", "LINEAR")), "CONSTANT"),
        "auto_smoothing": (("enum", ("NONE", "CONT_ACCEL")), "NONE"),
        "keyframes": (("list", ("record", "Keyframe")), []),
        "modifiers": (("list", ("dict", "param")), []),
    },
    "Action": {
        "name": ("name", REQUIRED),
        "fcurves": (("list", ("record", "FCurve")), []),
        "frame_range": (("opt", VEC2), None),
        "id_root": ("str", "OBJECT"),
    },
    "DriverTarget": {
        "id_type": ("str", "OBJECT"),
        "id_name": (("opt", "str"), None),
        "data_path": ("str", ""),
        "bone_target": ("str", ""),
        "transform_type": ("str", "LOC_X"),
        "transform_space": ("str", "WORLD_SPACE"),
        "rotation_mode": ("str", "AUTO"),
    },
    "DriverVariable": {
        "name": ("name", REQUIRED),
        "type": (
            ("enum", ("SINGLE_PROP", "TRANSFORMS", "ROTATION_DIFF", "LOC_DIFF", "CONTEXT_PROP")),
            "SINGLE_PROP",
        ),
        "targets": (("list", ("record", "DriverTarget")), []),
    },
    "Driver": {
        "data_path": ("name", REQUIRED),
        "index": ("index", 0),
        "type": (("enum", ("AVERAGE", "SUM", "SCRIPTED", "MIN", "MAX")), "SCRIPTED"),
        "expression": (("strmax", 4096), ""),
        "use_self": ("bool", False),
        "variables": (("list", ("record", "DriverVariable")), []),
        "keyframes": (("list", ("record", "Keyframe")), []),
    },
    "NLAStrip": {
        "name": ("name", REQUIRED),
        "action": (("opt", "str"), None),
        "frame_start": ("float", 1.0),
        "frame_end": ("float", 2.0),
        "action_frame_start": (("opt", "float"), None),
        "action_frame_end": (("opt", "float"), None),
        "scale": ("float", 1.0),
        "repeat": ("float", 1.0),
        "blend_type": (("enum", ("REPLACE", "COMBINE", "ADD", "SUBTRACT", "MULTIPLY")), "REPLACE"),
        "extrapolation": (("enum", ("HOLD", "HOLD_FORWARD", "NOTHING")), "HOLD"),
        "influence": (("opt", "float"), None),
        "mute": ("bool", False),
    },
    "NLATrack": {
        "name": ("name", REQUIRED),
        "mute": ("bool", False),
        "is_solo": ("bool", False),
        "strips": (("list", ("record", "NLAStrip")), []),
    },
    "Animation": {
        "action": (("opt", "str"), None),
        "drivers": (("list", ("record", "Driver")), []),
        "nla_tracks": (("list", ("record", "NLATrack")), []),
    },
    "Transform": {
        "location": (VEC3, (0.0, 0.0, 0.0)),
        "rotation_mode": ("str", "XYZ"),
        "rotation_euler": (VEC3, (0.0, 0.0, 0.0)),
        "rotation_quaternion": (VEC4, (1.0, 0.0, 0.0, 0.0)),
        "scale": (VEC3, (1.0, 1.0, 1.0)),
    },
    "Object": {
        "name": ("name", REQUIRED),
        "type": ("name", "MESH"),
        "parent": (("opt", "str"), None),
        "parent_type": (("enum", ("OBJECT", "BONE", "ARMATURE", "VERTEX", "VERTEX_3")), "OBJECT"),
        "parent_bone": (("opt", "str"), None),
        "parent_inverse": (("opt", ("tuple", "float", 16)), None),
        "transform": (("record", "Transform"), RECORD_DEFAULT),
        "mesh": (("opt", ("record", "Mesh")), None),
        "evaluated_mesh": (("opt", ("record", "Mesh")), None),
        "material_slots": (("list", ("opt", "str")), []),
        "modifiers": (("list", ("record", "Modifier")), []),
        "constraints": (("list", ("record", "Constraint")), []),
        "vertex_groups": (("list", ("record", "VertexGroup")), []),
        "armature": (("opt", ("record", "Armature")), None),
        "camera": (("opt", ("record", "Camera")), None),
        "light": (("opt", ("record", "Light")), None),
        "animation": (("opt", ("record", "Animation")), None),
        "hide_viewport": ("bool", False),
        "hide_render": ("bool", False),
        "collection": (("opt", "str"), None),
    },
    "Units": {
        "system": (("enum", ("NONE", "METRIC", "IMPERIAL")), "METRIC"),
        "scale_length": ("positive", 1.0),
        "length_unit": ("str", "METERS"),
    },
    "Provenance": {
        key: (("opt", "str"), None)
        for key in ("sha256", "source_url", "license", "attribution", "path", "blender_version")
    },
    "Scene": {
        "schema_version": ("str", "1.0"),
        "name": ("str", "Scene"),
        "units": (("record", "Units"), RECORD_DEFAULT),
        "frame_start": ("int", 1),
        "frame_end": ("int", 250),
        "frame_current": (("opt", "int"), None),
        "fps": ("positive", 24.0),
        "objects": (("list", ("record", "Object")), []),
        "materials": (("list", ("record", "Material")), []),
        "node_groups": (("list", ("record", "NodeTree")), []),
        "actions": (("list", ("record", "Action")), []),
        "images": (("list", ("record", "Image")), []),
        "libraries": (("list", "str"), []),
        "provenance": (("opt", ("record", "Provenance")), None),
        "warnings": (("list", "str"), []),
    },
}

# Lists whose length is capped by a specific limit (checked before the walk); every other list
# is capped by max_list_items.
_BIG_LISTS = {"vertices", "faces", "uvs", "normals", "face_smooth", "material_indices", "indices", "weights"}


def validate_scene(document: str | bytes | dict, limits: Limits | None = None) -> ValidatedScene:
    """Return a normalised copy of a valid document; raise SceneValidationError naming bad fields."""
    limits = limits or Limits()
    if isinstance(document, str | bytes):
        try:
            document = json.loads(document)
        except ValueError as exc:
            raise SceneValidationError([f"document: not valid JSON ({exc})"]) from None
    if not isinstance(document, dict):
        raise SceneValidationError([f"document: expected a JSON object, got {type(document).__name__}"])
    if is_short_format(document):
        try:
            document = from_short_format(document)
        except ShortFormatError as exc:
            raise SceneValidationError(exc.errors) from None
    version = document.get("schema_version")
    if version not in SUPPORTED_SCHEMA_VERSIONS:
        raise SceneValidationError(
            [
                f"schema_version: unknown version {version!r}; supported: {', '.join(SUPPORTED_SCHEMA_VERSIONS)}"
                + ("" if version else f" (or the short format: objects with {', '.join(OBJECT_FIELDS)} only)")
            ]
        )
    _check_raw_counts(document, limits)
    walker = _Walker(limits)
    try:
        scene = walker.record(document, "Scene", "")
    except _TooManyErrors:
        scene = None
    if walker.errors:
        raise SceneValidationError(walker.errors)
    errors = _Checker(scene, limits).run()
    if errors:
        raise SceneValidationError(errors)
    return ValidatedScene(scene)


def _check_raw_counts(data: dict, limits: Limits) -> None:
    """Refuse oversized documents before walking millions of values."""
    objects = data.get("objects")
    if not isinstance(objects, list):
        return
    if len(objects) > limits.max_objects:
        raise SceneValidationError(
            [f"objects: {len(objects)} objects exceed the cap of {limits.max_objects}"]
        )
    vertices = faces = 0
    for obj in objects:
        if not isinstance(obj, dict):
            continue
        for key in ("mesh", "evaluated_mesh"):
            mesh = obj.get(key)
            if isinstance(mesh, dict):
                vertices += _length(mesh.get("vertices"))
                faces += _length(mesh.get("faces"))
    if vertices > limits.max_vertices:
        raise SceneValidationError(
            [f"objects[*].mesh.vertices: {vertices} vertices exceed the cap of {limits.max_vertices}"]
        )
    if faces > limits.max_faces:
        raise SceneValidationError(
            [f"objects[*].mesh.faces: {faces} faces exceed the cap of {limits.max_faces}"]
        )


def _length(value: object) -> int:
    return len(value) if isinstance(value, list) else 0


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Walker:
    """Type-checks values against the tables and fills defaults."""

    def __init__(self, limits: Limits):
        self.limits = limits
        self.errors: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{path or 'document'}: {message}")
        if len(self.errors) >= MAX_REPORTED_ERRORS:
            raise _TooManyErrors

    def record(self, value: object, name: str, path: str) -> dict | None:
        if not isinstance(value, dict):
            self.error(path, f"Input should be an object ({name}), got {type(value).__name__}")
            return None
        fields = RECORDS[name]
        out = {}
        for key in value:
            if key not in fields:
                self.error(_join(path, str(key)), "Extra inputs are not permitted")
        for key, (spec, default) in fields.items():
            where = _join(path, key)
            if key in value:
                out[key] = self.check(value[key], spec, where, key, 0)
            elif default is REQUIRED:
                self.error(where, "Field required")
            elif default is RECORD_DEFAULT:
                out[key] = self.record({}, spec[1], where)
            else:
                out[key] = _fresh(default)
        return out

    def check(self, value: object, spec: object, path: str, key: str, depth: int) -> object:
        if spec == "float" or spec == "positive":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.error(path, f"Input should be a finite number, got {type(value).__name__}")
            elif not _finite(value):
                self.error(path, "Input should be a finite number")
            elif spec == "positive" and value <= 0:
                self.error(path, "Input should be greater than 0")
            else:
                return float(value)
            return None
        if spec == "int" or spec == "index":
            if isinstance(value, bool) or not isinstance(value, int):
                self.error(path, f"Input should be a valid integer, got {type(value).__name__}")
            elif spec == "index" and value < 0:
                self.error(path, "Input should be greater than or equal to 0")
            return value
        if spec == "bool":
            if not isinstance(value, bool):
                self.error(path, f"Input should be a valid boolean, got {type(value).__name__}")
            return value
        if spec in ("str", "name"):
            top = NAME_MAX if spec == "name" else self.limits.max_string
            if not isinstance(value, str):
                self.error(path, f"Input should be a valid string, got {type(value).__name__}")
            elif spec == "name" and not value:
                self.error(path, "String should have at least 1 character")
            elif len(value) > top:
                self.error(path, f"String should have at most {top} characters")
            return value
        if spec == "param":
            return self.param(value, path, depth)
        kind = spec[0]
        if kind == "strmax":
            if not isinstance(value, str):
                self.error(path, f"Input should be a valid string, got {type(value).__name__}")
            elif len(value) > spec[1]:
                self.error(path, f"String should have at most {spec[1]} characters")
            return value
        if kind == "opt":
            return None if value is None else self.check(value, spec[1], path, key, depth)
        if kind == "enum":
            if value not in spec[1]:
                allowed = ", ".join(repr(v) for v in spec[1])
                self.error(path, f"Input should be one of {allowed}, got {value!r:.40}")
            return value
        if kind == "record":
            return self.record(value, spec[1], path)
        if kind == "tuple":
            if not isinstance(value, list | tuple) or len(value) != spec[2]:
                self.error(path, f"Input should be a list of {spec[2]} values")
                return None
            return [self.check(v, spec[1], f"{path}[{i}]", key, depth) for i, v in enumerate(value)]
        if kind == "list":
            if not isinstance(value, list):
                self.error(path, f"Input should be a valid list, got {type(value).__name__}")
                return []
            if key not in _BIG_LISTS and len(value) > self.limits.max_list_items:
                self.error(path, f"{len(value)} items exceed the cap of {self.limits.max_list_items}")
                return []
            if spec[1] == VEC3 or spec[1] == VEC2:
                return self.vectors(value, spec[1][2], path)
            fast = _FAST_LISTS.get(spec[1])
            if fast is not None and fast(value):
                return list(value)
            return [self.check(v, spec[1], f"{path}[{i}]", key, depth) for i, v in enumerate(value)]
        if kind == "dict":
            if not isinstance(value, dict):
                self.error(path, f"Input should be a valid dictionary, got {type(value).__name__}")
                return {}
            if len(value) > self.limits.max_list_items:
                self.error(path, f"{len(value)} entries exceed the cap of {self.limits.max_list_items}")
                return {}
            return {k: self.check(v, spec[1], f"{path}.{k}", key, depth) for k, v in value.items()}
        raise AssertionError(f"unknown spec {spec!r}")

    def vectors(self, values: list, size: int, path: str) -> list:
        """The hot path (vertex and UV lists): whole-list checks in C-level builtins; only a list
        that fails them is walked item by item to name the bad entry."""
        if all(type(v) is list and len(v) == size for v in values):
            flat = list(itertools.chain.from_iterable(values))
            # A sum is finite only if every term is (an overflowing sum just takes the slow path).
            if set(map(type, flat)) <= {float, int} and _finite(sum(flat)):
                return values
        return [
            self.check(vec, ("tuple", "float", size), f"{path}[{i}]", "", 0) for i, vec in enumerate(values)
        ]

    def param(self, value: object, path: str, depth: int) -> object:
        """A ParamValue: JSON scalars, lists and string-keyed objects, finite and bounded in depth."""
        if depth > self.limits.max_param_depth:
            self.error(path, f"nested deeper than {self.limits.max_param_depth} levels")
            return None
        if value is None or isinstance(value, bool | int):
            return value
        if isinstance(value, float):
            if not _finite(value):
                self.error(path, "Input should be a finite number")
            return value
        if isinstance(value, str):
            if len(value) > self.limits.max_string:
                self.error(path, f"String should have at most {self.limits.max_string} characters")
            return value
        if isinstance(value, list):
            if len(value) > self.limits.max_list_items:
                self.error(path, f"{len(value)} items exceed the cap of {self.limits.max_list_items}")
                return []
            return [self.param(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(value)]
        if isinstance(value, dict):
            if len(value) > self.limits.max_list_items:
                self.error(path, f"{len(value)} entries exceed the cap of {self.limits.max_list_items}")
                return {}
            return {str(k): self.param(v, f"{path}.{k}", depth + 1) for k, v in value.items()}
        self.error(path, f"Input should be a JSON value, got {type(value).__name__}")
        return None


def _all_ints(values: list) -> bool:
    return all(type(v) is int for v in values)


def _finite(number: float | int) -> bool:
    """math.isfinite, with ints too large for a float counted as not finite."""
    try:
        return math.isfinite(number)
    except OverflowError:
        return False


def _all_finite_floats(values: list) -> bool:
    return all(type(v) in (float, int) and _finite(v) for v in values)


# Whole-list checks for the long lists (faces, flags, indices, weights): one pass when the list
# is well-formed; a list that fails it is walked item by item to name the bad entry.
_FAST_LISTS = {
    "int": _all_ints,
    "bool": lambda values: all(type(v) is bool for v in values),
    "float": _all_finite_floats,
    ("list", "int"): lambda faces: all(type(f) is list and _all_ints(f) for f in faces),
}


def _fresh(default: object) -> object:
    """Defaults are shared constants; hand out copies of the mutable ones."""
    if isinstance(default, list | tuple):
        return list(default)
    if isinstance(default, dict):
        return dict(default)
    return default


# ---- checks that span fields (mirrors shared/scene/validate.py's _Checker) -----------------


class _Checker:
    def __init__(self, scene: dict, limits: Limits):
        self.scene = scene
        self.limits = limits
        self.errors: list[str] = []
        self.materials = _unique_names(scene["materials"], "materials", self.errors)
        self.node_groups = _unique_names(scene["node_groups"], "node_groups", self.errors)
        self.actions = _unique_names(scene["actions"], "actions", self.errors)
        self.images = _unique_names(scene["images"], "images", self.errors)
        self.objects = _unique_names(scene["objects"], "objects", self.errors)

    def run(self) -> list[str]:
        s = self.scene
        self._caps()
        for i, obj in enumerate(s["objects"]):
            self._object(obj, f"objects[{i}]")
        self._parent_cycles()
        for i, mat in enumerate(s["materials"]):
            if mat["node_tree"] is not None:
                self._tree(mat["node_tree"], f"materials[{i}].node_tree")
            for key, tex in mat["pbr"]["textures"].items():
                if tex["image"] not in self.images:
                    self.errors.append(
                        f"materials[{i}].pbr.textures.{key}.image: unknown image {tex['image']!r}"
                    )
        for i, group in enumerate(s["node_groups"]):
            self._tree(group, f"node_groups[{i}]")
        if len(s["images"]) > self.limits.max_images:
            self.errors.append(f"images: {len(s['images'])} exceed the cap of {self.limits.max_images}")
        for i, image in enumerate(s["images"]):
            if not all(0 <= side <= self.limits.max_image_side for side in image["size"]):
                self.errors.append(
                    f"images[{i}].size: {image['size']} outside 0..{self.limits.max_image_side} pixels"
                )
        return self.errors

    def _caps(self) -> None:
        s, lim = self.scene, self.limits
        meshes = [m for o in s["objects"] for m in (o["mesh"], o["evaluated_mesh"]) if m is not None]
        trees = [m["node_tree"] for m in s["materials"] if m["node_tree"]] + list(s["node_groups"])
        keyframes = sum(len(fc["keyframes"]) for a in s["actions"] for fc in a["fcurves"])
        counts = {
            "objects": (len(s["objects"]), lim.max_objects),
            "vertices": (sum(len(m["vertices"]) for m in meshes), lim.max_vertices),
            "faces": (sum(len(m["faces"]) for m in meshes), lim.max_faces),
            "face corners": (sum(len(f) for m in meshes for f in m["faces"]), lim.max_corners),
            "shape key vertices": (
                sum(len(k["vertices"]) for m in meshes for k in m["shape_keys"]),
                lim.max_shape_key_vertices,
            ),
            "vertex group weights": (
                sum(len(g["indices"]) for o in s["objects"] for g in o["vertex_groups"]),
                lim.max_vertex_group_weights,
            ),
            "nodes": (sum(len(t["nodes"]) for t in trees), lim.max_nodes),
            "keyframes": (keyframes, lim.max_keyframes),
        }
        for what, (count, cap) in counts.items():
            if count > cap:
                self.errors.append(f"{what}: {count} exceed the cap of {cap}")

    def _object(self, obj: dict, path: str) -> None:
        if obj["parent"] is not None and obj["parent"] not in self.objects:
            self.errors.append(f"{path}.parent: unknown object {obj['parent']!r}")
        for j, slot in enumerate(obj["material_slots"]):
            if slot is not None and slot not in self.materials:
                self.errors.append(f"{path}.material_slots[{j}]: unknown material {slot!r}")
        for key in ("mesh", "evaluated_mesh"):
            if obj[key] is not None:
                self._mesh(obj[key], f"{path}.{key}", len(obj["material_slots"]))
        n_vertices = len(obj["mesh"]["vertices"]) if obj["mesh"] else 0
        for j, group in enumerate(obj["vertex_groups"]):
            gpath = f"{path}.vertex_groups[{j}]"
            if len(group["weights"]) != len(group["indices"]):
                self.errors.append(
                    f"{gpath}.weights: {len(group['weights'])} weights for {len(group['indices'])} indices"
                )
            bad = next((v for v in group["indices"] if not 0 <= v < n_vertices), None)
            if bad is not None:
                self.errors.append(
                    f"{gpath}.indices: vertex index {bad} out of range (mesh has {n_vertices} vertices)"
                )
        if obj["armature"] is not None:
            bones = _unique_names(obj["armature"]["bones"], f"{path}.armature.bones", self.errors)
            for j, bone in enumerate(obj["armature"]["bones"]):
                if bone["parent"] is not None and bone["parent"] not in bones:
                    self.errors.append(f"{path}.armature.bones[{j}].parent: unknown bone {bone['parent']!r}")
        if obj["animation"] is not None:
            self._animation(obj["animation"], f"{path}.animation")

    def _mesh(self, mesh: dict, path: str, n_slots: int) -> None:
        nv, nf = len(mesh["vertices"]), len(mesh["faces"])
        corners = 0
        for j, face in enumerate(mesh["faces"]):
            corners += len(face)
            if len(face) >= 3 and min(face) >= 0 and max(face) < nv and len(set(face)) == len(face):
                continue  # the common case, in one pass of builtins
            if len(face) < 3:
                self.errors.append(f"{path}.faces[{j}]: a face needs at least 3 vertices, got {len(face)}")
            elif any(not 0 <= v < nv for v in face):
                bad = next(v for v in face if not 0 <= v < nv)
                self.errors.append(
                    f"{path}.faces[{j}]: vertex index {bad} out of range (mesh has {nv} vertices)"
                )
            elif len(set(face)) != len(face):
                self.errors.append(f"{path}.faces[{j}]: repeats a vertex")
            if len(self.errors) > MAX_REPORTED_ERRORS:
                return
        for j, edge in enumerate(mesh["loose_edges"]):
            if not all(0 <= v < nv for v in edge) or edge[0] == edge[1]:
                self.errors.append(f"{path}.loose_edges[{j}]: invalid edge {list(edge)} for {nv} vertices")
                break
        _expect_len(self.errors, f"{path}.normals", mesh["normals"], nv, "vertices")
        _expect_len(self.errors, f"{path}.face_smooth", mesh["face_smooth"], nf, "faces")
        if mesh["material_indices"] is not None:
            _expect_len(self.errors, f"{path}.material_indices", mesh["material_indices"], nf, "faces")
            top = max(1, n_slots)
            bad = next((m for m in mesh["material_indices"] if not 0 <= m < top), None)
            if bad is not None:
                self.errors.append(
                    f"{path}.material_indices: index {bad} out of range ({n_slots} material slots)"
                )
        if len(mesh["uv_layers"]) > MAX_UV_LAYERS:
            self.errors.append(
                f"{path}.uv_layers: {len(mesh['uv_layers'])} layers, Blender allows {MAX_UV_LAYERS}"
            )
        _unique_names(mesh["uv_layers"], f"{path}.uv_layers", self.errors)
        for j, layer in enumerate(mesh["uv_layers"]):
            _expect_len(self.errors, f"{path}.uv_layers[{j}].uvs", layer["uvs"], corners, "face corners")
        keys = _unique_names(mesh["shape_keys"], f"{path}.shape_keys", self.errors)
        for j, key in enumerate(mesh["shape_keys"]):
            _expect_len(self.errors, f"{path}.shape_keys[{j}].vertices", key["vertices"], nv, "vertices")
            if key["relative_key"] is not None and key["relative_key"] not in keys:
                self.errors.append(
                    f"{path}.shape_keys[{j}].relative_key: unknown shape key {key['relative_key']!r}"
                )
        if mesh["shape_key_animation"] is not None:
            self._animation(mesh["shape_key_animation"], f"{path}.shape_key_animation")

    def _tree(self, tree: dict, path: str) -> None:
        nodes = _unique_names(tree["nodes"], f"{path}.nodes", self.errors)
        identifiers = set()
        for j, socket in enumerate(tree["interface"]):
            key = (socket["in_out"], socket["identifier"])
            if key in identifiers:
                self.errors.append(f"{path}.interface[{j}].identifier: duplicate {socket['identifier']!r}")
            identifiers.add(key)
        for j, node in enumerate(tree["nodes"]):
            if node["node_tree"] is not None and node["node_tree"] not in self.node_groups:
                self.errors.append(f"{path}.nodes[{j}].node_tree: unknown node group {node['node_tree']!r}")
            if node["image"] is not None and node["image"] not in self.images:
                self.errors.append(f"{path}.nodes[{j}].image: unknown image {node['image']!r}")
            if node["parent"] is not None and node["parent"] not in nodes:
                self.errors.append(f"{path}.nodes[{j}].parent: unknown node {node['parent']!r}")
        for j, link in enumerate(tree["links"]):
            for end in ("from_node", "to_node"):
                if link[end] not in nodes:
                    self.errors.append(f"{path}.links[{j}].{end}: unknown node {link[end]!r}")

    def _animation(self, anim: dict, path: str) -> None:
        if anim["action"] is not None and anim["action"] not in self.actions:
            self.errors.append(f"{path}.action: unknown action {anim['action']!r}")
        for t, track in enumerate(anim["nla_tracks"]):
            for k, strip in enumerate(track["strips"]):
                if strip["action"] is not None and strip["action"] not in self.actions:
                    self.errors.append(
                        f"{path}.nla_tracks[{t}].strips[{k}].action: unknown action {strip['action']!r}"
                    )

    def _parent_cycles(self) -> None:
        parents = {o["name"]: o["parent"] for o in self.scene["objects"]}
        for name in parents:
            seen = {name}
            current = parents.get(name)
            while current is not None:
                if current in seen:
                    self.errors.append(f"objects: parent cycle through {name!r}")
                    return
                seen.add(current)
                current = parents.get(current)


def _unique_names(items: list, path: str, errors: list[str]) -> set[str]:
    names: set[str] = set()
    for j, item in enumerate(items):
        if item["name"] in names:
            errors.append(f"{path}[{j}].name: duplicate name {item['name']!r}")
        names.add(item["name"])
    return names


def _expect_len(errors: list[str], path: str, values: list | None, expected: int, what: str) -> None:
    if values is not None and len(values) != expected:
        errors.append(f"{path}: {len(values)} entries for {expected} {what}")
