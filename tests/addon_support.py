"""Shared by the add-on's tests: scene documents (one touches every field the injector writes)
and helpers to reset Blender and count its datablocks."""

from __future__ import annotations

import copy
import math

# A pentagon-based pyramid: one n-gon, five triangles, plus two loose vertices joined by an edge.
PENTAGON = [[math.cos(2 * math.pi * k / 5), math.sin(2 * math.pi * k / 5), 0.0] for k in range(5)]
PYRAMID_VERTICES = [*PENTAGON, [0.0, 0.0, 1.0], [2.0, 0.0, 0.0], [2.0, 0.0, 1.0]]
PYRAMID_FACES = [[4, 3, 2, 1, 0], [0, 1, 5], [1, 2, 5], [2, 3, 5], [3, 4, 5], [4, 0, 5]]
CORNERS = sum(len(f) for f in PYRAMID_FACES)


def _keys(points, **extra):
    return [{"co": list(co), **extra} for co in points]


def rich_scene() -> dict:
    """A fresh copy each call (tests mutate it), sharing nothing with the module's constants."""
    return copy.deepcopy(_rich_scene())


def _rich_scene() -> dict:
    tall = [list(v) for v in PYRAMID_VERTICES]
    tall[5] = [0.0, 0.0, 2.0]
    squash = [[x, y, z * 0.5] for x, y, z in PYRAMID_VERTICES]
    return {
        "schema_version": "1.0",
        "name": "Rich",
        "frame_start": 5,
        "frame_end": 60,
        "fps": 30.0,
        "objects": [
            {
                "name": "Rig",
                "type": "ARMATURE",
                "armature": {
                    "name": "RigData",
                    "bones": [
                        {"name": "root", "head": [0, 0, 0], "tail": [0, 0, 1]},
                        {
                            "name": "tip",
                            "parent": "root",
                            "head": [0, 0, 1],
                            "tail": [0, 0.5, 2],
                            "roll": 0.25,
                            "use_connect": True,
                            "use_deform": False,
                            "constraints": [
                                {
                                    "name": "Limit",
                                    "type": "LIMIT_ROTATION",
                                    "influence": 0.8,
                                    "params": {"use_limit_x": True, "max_x": 0.5},
                                }
                            ],
                        },
                    ],
                },
            },
            {
                "name": "Body",
                "parent": "Rig",
                "parent_inverse": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, -1, 0, 0, 0, 1],
                "transform": {
                    "location": [1, 2, 3],
                    "rotation_mode": "QUATERNION",
                    "rotation_quaternion": [0.9238795, 0.0, 0.0, 0.3826834],
                    "scale": [1, 1.5, 2],
                },
                "mesh": {
                    "name": "BodyMesh",
                    "vertices": PYRAMID_VERTICES,
                    "faces": PYRAMID_FACES,
                    "loose_edges": [[6, 7]],
                    "normals": [[0.0, 0.0, 1.0]] * len(PYRAMID_VERTICES),
                    "face_smooth": [False, True, True, True, True, True],
                    "material_indices": [0, 1, 1, 1, 1, 1],
                    "uv_layers": [
                        {"name": "UVMap", "uvs": [[k / CORNERS, 1 - k / CORNERS] for k in range(CORNERS)]},
                        {
                            "name": "Second",
                            "uvs": [[0.5, k / CORNERS] for k in range(CORNERS)],
                            "active_render": True,
                        },
                    ],
                    "shape_keys": [
                        {"name": "Basis", "vertices": PYRAMID_VERTICES},
                        {
                            "name": "Tall",
                            "vertices": tall,
                            "relative_key": "Basis",
                            "value": 0.4,
                            "slider_max": 2.0,
                            "vertex_group": "apex",
                        },
                        {"name": "Squash", "vertices": squash, "slider_min": -1.0, "mute": True},
                    ],
                    "shape_key_animation": {"action": "KeyAction"},
                },
                "material_slots": ["Wood", "Red"],
                "vertex_groups": [
                    {"name": "apex", "indices": [5], "weights": [1.0]},
                    {"name": "base", "indices": [0, 1, 2, 3, 4], "weights": [0.5, 0.5, 0.25, 0.25, 0.125]},
                ],
                "modifiers": [
                    {
                        "name": "Subdivision",
                        "type": "SUBSURF",
                        "params": {"levels": 2, "render_levels": 3, "quality": 4},
                    },
                    {
                        "name": "Bevel",
                        "type": "BEVEL",
                        "show_render": False,
                        "params": {"width": 0.05, "segments": 3, "limit_method": "ANGLE", "angle_limit": 0.6},
                    },
                    {
                        "name": "Mirror",
                        "type": "MIRROR",
                        "params": {
                            "use_axis": [True, False, True],
                            "use_bisect_axis": [False, True, False],
                            "mirror_object": "Target",
                        },
                    },
                    {
                        "name": "Array",
                        "type": "ARRAY",
                        "show_viewport": False,
                        "params": {
                            "count": 3,
                            "relative_offset_displace": [1.5, 0, 0],
                            "use_object_offset": True,
                            "offset_object": "Target",
                        },
                    },
                    {
                        "name": "Lift",
                        "type": "NODES",
                        "params": {"node_group": "Lift", "inputs": {"Input_Height": 2.5}},
                    },
                    {"name": "Bogus", "type": "NOT_A_MODIFIER", "params": {}},
                    {"name": "Displace", "type": "DISPLACE", "params": {"strength": 0.3, "no_such_param": 1}},
                ],
                "constraints": [
                    {
                        "name": "Follow",
                        "type": "COPY_LOCATION",
                        "mute": True,
                        "influence": 0.5,
                        "params": {"target": "Target", "use_y": False},
                    },
                    {
                        "name": "Aim",
                        "type": "TRACK_TO",
                        "params": {"target": "Target", "track_axis": "TRACK_NEGATIVE_Z", "up_axis": "UP_Y"},
                    },
                ],
                "animation": {
                    "action": "BodyAction",
                    "drivers": [
                        {
                            "data_path": "location",
                            "index": 1,
                            "type": "SCRIPTED",
                            "expression": "var * 2 + turn",
                            "variables": [
                                {
                                    "name": "var",
                                    "targets": [
                                        {"id_type": "OBJECT", "id_name": "Target", "data_path": "location.x"}
                                    ],
                                },
                                {
                                    "name": "turn",
                                    "type": "TRANSFORMS",
                                    "targets": [
                                        {
                                            "id_name": "Rig",
                                            "transform_type": "ROT_Z",
                                            "transform_space": "LOCAL_SPACE",
                                            "rotation_mode": "XYZ",
                                        }
                                    ],
                                },
                            ],
                            "keyframes": _keys([(0, 0), (10, 5)], interpolation="LINEAR"),
                        },
                        {
                            "data_path": "hide_render",
                            "type": "AVERAGE",
                            "variables": [
                                {
                                    "name": "v",
                                    "targets": [
                                        {"id_type": "OBJECT", "id_name": "Target", "data_path": "hide_render"}
                                    ],
                                }
                            ],
                        },
                    ],
                    "nla_tracks": [
                        {
                            "name": "Layer",
                            "mute": True,
                            "strips": [
                                {
                                    "name": "wave",
                                    "action": "Wave",
                                    "frame_start": 10,
                                    "frame_end": 30,
                                    "blend_type": "ADD",
                                    "extrapolation": "NOTHING",
                                    "influence": 0.5,
                                    "repeat": 2.0,
                                }
                            ],
                        }
                    ],
                },
            },
            {
                "name": "Target",
                "type": "EMPTY",
                "transform": {
                    "location": [3, 0, 0],
                    "rotation_mode": "ZXY",
                    "rotation_euler": [0.1, 0.2, 0.3],
                },
                "hide_render": True,
                "collection": "Generated Parts",
            },
            {
                "name": "Cam",
                "type": "CAMERA",
                "camera": {
                    "type": "ORTHO",
                    "lens": 35,
                    "ortho_scale": 8,
                    "sensor_width": 32,
                    "clip_start": 0.01,
                    "clip_end": 500,
                },
            },
            {
                "name": "Lamp",
                "type": "LIGHT",
                "light": {
                    "type": "SPOT",
                    "color": [1, 0.9, 0.8],
                    "energy": 500,
                    "radius": 0.2,
                    "spot_size": 0.8,
                    "spot_blend": 0.3,
                },
            },
            {
                "name": "Child",
                "parent": "Rig",
                "parent_type": "BONE",
                "parent_bone": "tip",
                "mesh": {
                    "name": "ChildMesh",
                    "vertices": [[0, 0, 0], [1, 0, 0], [0, 1, 0]],
                    "faces": [[0, 1, 2]],
                },
                "hide_viewport": True,
            },
        ],
        "materials": [
            {
                "name": "Red",
                "source": "generated",
                "diffuse_color": [1, 0, 0, 1],
                "blend_method": "BLEND",
                "use_backface_culling": True,
                "pbr": {
                    "base_color": [1, 0, 0, 1],
                    "metallic": 0.3,
                    "roughness": 0.2,
                    "specular": 0.6,
                    "ior": 1.45,
                    "alpha": 0.9,
                    "emission_color": [0, 0.2, 0, 1],
                    "emission_strength": 1.5,
                    "transmission": 0.1,
                    "normal_strength": 0.8,
                    "textures": {"normal": {"image": "bump.png", "uv_layer": "UVMap"}},
                },
            },
            {
                "name": "Wood",
                "pbr": {"roughness": 0.7},
                "node_tree": {
                    "name": "Wood",
                    "nodes": [
                        {"name": "Frame", "type": "NodeFrame", "label": "Inputs", "location": [-900, 300]},
                        {
                            "name": "Value",
                            "type": "ShaderNodeValue",
                            "parent": "Frame",
                            "location": [20, -40],
                            "outputs": [{"identifier": "Value", "default": 0.25}],
                        },
                        {
                            "name": "Group",
                            "type": "ShaderNodeGroup",
                            "node_tree": "Grain",
                            "location": [-700, 0],
                            "inputs": [{"identifier": "Amount_In", "default": 0.75}],
                        },
                        {
                            "name": "Ramp",
                            "type": "ShaderNodeValToRGB",
                            "location": [-500, 0],
                            "properties": {
                                "color_ramp": {
                                    "interpolation": "EASE",
                                    "elements": [
                                        {"position": 0.1, "color": [1, 0, 0, 1]},
                                        {"position": 0.6, "color": [0, 0, 1, 1]},
                                        {"position": 0.9, "color": [0, 1, 0, 1]},
                                    ],
                                }
                            },
                        },
                        {
                            "name": "Image",
                            "type": "ShaderNodeTexImage",
                            "image": "wood.png",
                            "location": [-500, -300],
                            "properties": {"interpolation": "Closest", "made_up_property": 3},
                        },
                        {
                            "name": "Mix",
                            "type": "ShaderNodeMix",
                            "location": [-250, 0],
                            "properties": {"data_type": "RGBA", "blend_type": "MULTIPLY"},
                            "inputs": [{"identifier": "Factor_Float", "default": 0.35}],
                        },
                        {
                            "name": "Principled BSDF",
                            "type": "ShaderNodeBsdfPrincipled",
                            "inputs": [
                                {"identifier": "Roughness", "default": 0.7},
                                {"identifier": "Coat Weight", "default": 0.2, "hidden": True},
                            ],
                        },
                        {"name": "Material Output", "type": "ShaderNodeOutputMaterial", "location": [300, 0]},
                        {"name": "Alien", "type": "ShaderNodeDoesNotExist"},
                    ],
                    "links": [
                        {
                            "from_node": "Group",
                            "from_socket": "Fac_Out",
                            "to_node": "Ramp",
                            "to_socket": "Fac",
                        },
                        {
                            "from_node": "Ramp",
                            "from_socket": "Color",
                            "to_node": "Mix",
                            "to_socket": "A_Color",
                        },
                        {
                            "from_node": "Image",
                            "from_socket": "Color",
                            "to_node": "Mix",
                            "to_socket": "B_Color",
                        },
                        {
                            "from_node": "Mix",
                            "from_socket": "Result_Color",
                            "to_node": "Principled BSDF",
                            "to_socket": "Base Color",
                        },
                        {
                            "from_node": "Value",
                            "from_socket": "Value",
                            "to_node": "Principled BSDF",
                            "to_socket": "Metallic",
                            "muted": True,
                        },
                        {
                            "from_node": "Principled BSDF",
                            "from_socket": "BSDF",
                            "to_node": "Material Output",
                            "to_socket": "Surface",
                        },
                        {"from_node": "Alien", "from_socket": "X", "to_node": "Mix", "to_socket": "B_Color"},
                    ],
                },
            },
        ],
        "node_groups": [
            {
                "name": "Grain",
                "interface": [
                    {
                        "name": "Amount",
                        "identifier": "Amount_In",
                        "in_out": "INPUT",
                        "socket_type": "NodeSocketFloat",
                        "default": 0.5,
                        "min_value": 0.0,
                        "max_value": 2.0,
                    },
                    {
                        "name": "Fac",
                        "identifier": "Fac_Out",
                        "in_out": "OUTPUT",
                        "socket_type": "NodeSocketFloat",
                    },
                ],
                "nodes": [
                    {"name": "Group Input", "type": "NodeGroupInput", "location": [-400, 0]},
                    {
                        "name": "Inner",
                        "type": "ShaderNodeGroup",
                        "node_tree": "Scale",
                        "inputs": [{"identifier": "Socket_0", "default": 3.0}],
                    },
                    {"name": "Group Output", "type": "NodeGroupOutput", "location": [400, 0]},
                ],
                "links": [
                    {
                        "from_node": "Group Input",
                        "from_socket": "Amount_In",
                        "to_node": "Inner",
                        "to_socket": "Socket_0",
                    },
                    {
                        "from_node": "Inner",
                        "from_socket": "Socket_1",
                        "to_node": "Group Output",
                        "to_socket": "Fac_Out",
                    },
                ],
            },
            {
                "name": "Scale",
                "interface": [
                    {
                        "name": "In",
                        "identifier": "Socket_0",
                        "in_out": "INPUT",
                        "socket_type": "NodeSocketFloat",
                    },
                    {
                        "name": "Out",
                        "identifier": "Socket_1",
                        "in_out": "OUTPUT",
                        "socket_type": "NodeSocketFloat",
                    },
                ],
                "nodes": [
                    {"name": "Group Input", "type": "NodeGroupInput"},
                    {
                        "name": "Multiply",
                        "type": "ShaderNodeMath",
                        "properties": {"operation": "MULTIPLY", "use_clamp": True},
                        "inputs": [{"identifier": "Value_001", "default": 0.5}],
                    },
                    {"name": "Group Output", "type": "NodeGroupOutput"},
                ],
                "links": [
                    {
                        "from_node": "Group Input",
                        "from_socket": "Socket_0",
                        "to_node": "Multiply",
                        "to_socket": "Value",
                    },
                    {
                        "from_node": "Multiply",
                        "from_socket": "Value",
                        "to_node": "Group Output",
                        "to_socket": "Socket_1",
                    },
                ],
            },
            {
                "name": "Lift",
                "type": "GeometryNodeTree",
                "interface": [
                    {
                        "name": "Geometry",
                        "identifier": "Input_Geometry",
                        "in_out": "INPUT",
                        "socket_type": "NodeSocketGeometry",
                    },
                    {
                        "name": "Height",
                        "identifier": "Input_Height",
                        "in_out": "INPUT",
                        "socket_type": "NodeSocketFloat",
                        "default": 1.0,
                    },
                    {
                        "name": "Geometry",
                        "identifier": "Output_Geometry",
                        "in_out": "OUTPUT",
                        "socket_type": "NodeSocketGeometry",
                    },
                ],
                "nodes": [
                    {"name": "Group Input", "type": "NodeGroupInput"},
                    {"name": "Transform", "type": "GeometryNodeTransform"},
                    {"name": "Group Output", "type": "NodeGroupOutput"},
                ],
                "links": [
                    {
                        "from_node": "Group Input",
                        "from_socket": "Input_Geometry",
                        "to_node": "Transform",
                        "to_socket": "Geometry",
                    },
                    {
                        "from_node": "Group Input",
                        "from_socket": "Input_Height",
                        "to_node": "Transform",
                        "to_socket": "Scale",
                    },
                    {
                        "from_node": "Transform",
                        "from_socket": "Geometry",
                        "to_node": "Group Output",
                        "to_socket": "Output_Geometry",
                    },
                ],
            },
        ],
        "actions": [
            {
                "name": "BodyAction",
                "frame_range": [1, 48],
                "fcurves": [
                    {
                        "data_path": "location",
                        "index": 0,
                        "group": "Object Transforms",
                        "extrapolation": "LINEAR",
                        "auto_smoothing": "CONT_ACCEL",
                        "keyframes": [
                            {
                                "co": [1, 0],
                                "handle_left": [-4, -1],
                                "handle_right": [6, 1],
                                "handle_left_type": "FREE",
                                "handle_right_type": "FREE",
                            },
                            {
                                "co": [24, 3],
                                "interpolation": "BACK",
                                "easing": "EASE_IN",
                                "handle_left": [18, 3],
                                "handle_right": [30, 3],
                                "handle_left_type": "ALIGNED",
                                "handle_right_type": "ALIGNED",
                            },
                            {"co": [48, 1], "interpolation": "CONSTANT"},
                        ],
                        "modifiers": [{"type": "NOISE", "strength": 0.5, "scale": 2.0}],
                    },
                    {
                        "data_path": "rotation_quaternion",
                        "index": 3,
                        "keyframes": _keys([(1, 0.0), (48, 0.38)], interpolation="LINEAR"),
                    },
                ],
            },
            {
                "name": "Wave",
                "fcurves": [{"data_path": "scale", "index": 2, "keyframes": _keys([(1, 1.0), (11, 1.5)])}],
            },
            {
                "name": "KeyAction",
                "id_root": "KEY",
                "fcurves": [
                    {
                        "data_path": 'key_blocks["Squash"].value',
                        "keyframes": _keys([(1, 0.0), (20, 1.0)], interpolation="SINE", easing="EASE_IN_OUT"),
                    }
                ],
            },
        ],
        "images": [
            {"name": "wood.png", "filepath": "//textures/wood.png", "size": [64, 32], "missing": True},
            {"name": "bump.png", "size": [16, 16], "colorspace": "Non-Color"},
        ],
    }


def small_scene(name: str = "Box", at: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> dict:
    """One cube with a PBR material: what a gateway would plausibly return."""
    vertices = [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (0.0, 1.0)]
    faces = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    return {
        "schema_version": "1.0",
        "objects": [
            {
                "name": name,
                "transform": {"location": list(at)},
                "mesh": {"name": f"{name}Mesh", "vertices": vertices, "faces": faces},
                "material_slots": [f"{name}Paint"],
                "modifiers": [{"name": "Bevel", "type": "BEVEL", "params": {"width": 0.08, "segments": 2}}],
            }
        ],
        "materials": [
            {"name": f"{name}Paint", "pbr": {"base_color": [0.8, 0.3, 0.1, 1.0], "roughness": 0.35}}
        ],
    }


# Every bpy.data collection the injector can add to (texts: it must never add one).
DATA_KINDS = (
    "objects",
    "meshes",
    "materials",
    "node_groups",
    "images",
    "actions",
    "armatures",
    "cameras",
    "lights",
    "collections",
    "shape_keys",
    "texts",
)


def data_counts() -> dict[str, int]:
    import bpy

    counts = {kind: len(getattr(bpy.data, kind)) for kind in DATA_KINDS}
    scene = bpy.context.scene
    counts["scene objects"] = len(scene.collection.objects)
    counts["scene child collections"] = len(scene.collection.children)
    return counts


def reset_blender() -> None:
    """An empty factory scene, so each test starts from the same file."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
