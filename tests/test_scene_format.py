"""The scene format: a full document validates; each kind of malformed document is refused by name."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from shared.scene import Limits, SceneValidationError, json_schema, parse_scene

REPO = Path(__file__).resolve().parents[1]


def full_scene() -> dict:
    """A small document touching every part of the format."""
    cube_vertices = [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
    faces = [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]]
    corners = sum(len(f) for f in faces)
    return {
        "schema_version": "1.0",
        "name": "Scene",
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
                            "tail": [0, 0, 2],
                            "use_connect": True,
                        },
                    ],
                },
            },
            {
                "name": "Cube",
                "parent": "Rig",
                "transform": {"location": [1, 2, 3], "rotation_euler": [0, 0, 0.5], "scale": [2, 2, 2]},
                "mesh": {
                    "name": "CubeMesh",
                    "vertices": cube_vertices,
                    "faces": faces,
                    "normals": [[0, 0, 1]] * 8,
                    "face_smooth": [False] * 6,
                    "material_indices": [0, 0, 0, 1, 1, 1],
                    "uv_layers": [{"name": "UVMap", "uvs": [[0, 0]] * corners}],
                    "shape_keys": [
                        {"name": "Basis", "vertices": cube_vertices},
                        {"name": "Tall", "vertices": cube_vertices, "relative_key": "Basis", "value": 0.3},
                    ],
                },
                "material_slots": ["Red", "Wood"],
                "modifiers": [
                    {
                        "name": "Bevel",
                        "type": "BEVEL",
                        "params": {"width": 0.1, "segments": 3, "limit_method": "ANGLE"},
                    },
                    {
                        "name": "Mirror",
                        "type": "MIRROR",
                        "params": {"use_axis": [True, False, False], "mirror_object": "Rig"},
                    },
                ],
                "constraints": [{"name": "Track", "type": "TRACK_TO", "params": {"target": "Rig"}}],
                "vertex_groups": [{"name": "root", "indices": [0, 1], "weights": [1.0, 0.5]}],
                "animation": {
                    "action": "CubeAction",
                    "drivers": [
                        {
                            "data_path": "location",
                            "index": 2,
                            "type": "SCRIPTED",
                            "expression": "var * 2",
                            "variables": [
                                {"name": "var", "targets": [{"id_name": "Rig", "data_path": "location.x"}]}
                            ],
                        }
                    ],
                    "nla_tracks": [{"name": "Track", "strips": [{"name": "s", "action": "CubeAction"}]}],
                },
            },
        ],
        "materials": [
            {"name": "Red", "source": "legacy", "pbr": {"base_color": [1, 0, 0, 1]}},
            {
                "name": "Wood",
                "pbr": {"roughness": 0.7, "textures": {"base_color": {"image": "wood.png"}}},
                "node_tree": {
                    "name": "Wood",
                    "nodes": [
                        {
                            "name": "Principled BSDF",
                            "type": "ShaderNodeBsdfPrincipled",
                            "inputs": [{"identifier": "Roughness", "default": 0.7}],
                        },
                        {"name": "Image", "type": "ShaderNodeTexImage", "image": "wood.png"},
                        {"name": "Group", "type": "ShaderNodeGroup", "node_tree": "Grain"},
                        {"name": "Material Output", "type": "ShaderNodeOutputMaterial"},
                    ],
                    "links": [
                        {
                            "from_node": "Image",
                            "from_socket": "Color",
                            "to_node": "Principled BSDF",
                            "to_socket": "Base Color",
                        },
                        {
                            "from_node": "Principled BSDF",
                            "from_socket": "BSDF",
                            "to_node": "Material Output",
                            "to_socket": "Surface",
                        },
                    ],
                },
            },
        ],
        "node_groups": [
            {
                "name": "Grain",
                "interface": [
                    {
                        "name": "Fac",
                        "identifier": "Socket_0",
                        "in_out": "OUTPUT",
                        "socket_type": "NodeSocketFloat",
                    }
                ],
            }
        ],
        "actions": [
            {
                "name": "CubeAction",
                "fcurves": [
                    {
                        "data_path": "location",
                        "index": 0,
                        "keyframes": [
                            {
                                "co": [1, 0],
                                "interpolation": "BEZIER",
                                "handle_left": [0, 0],
                                "handle_right": [2, 0],
                            },
                            {"co": [24, 3], "interpolation": "LINEAR"},
                        ],
                    }
                ],
            }
        ],
        "images": [{"name": "wood.png", "filepath": "//textures/wood.png", "missing": True}],
    }


def rejected(doc: dict, limits: Limits | None = None) -> str:
    with pytest.raises(SceneValidationError) as info:
        parse_scene(doc, limits or Limits())
    return str(info.value)


def test_full_document_validates_and_survives_json():
    scene = parse_scene(full_scene(), Limits())
    again = parse_scene(scene.model_dump_json(), Limits())
    assert again == scene
    assert again.objects[1].mesh.faces[0] == [0, 1, 3, 2]  # quads stay quads


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.update(schema_version="9.9"), "schema_version: unknown version '9.9'"),
        (lambda d: d.pop("schema_version"), "schema_version: unknown version None"),
        (
            lambda d: d["objects"][1]["mesh"]["faces"].append([0, 1, 99]),
            "objects[1].mesh.faces[6]: vertex index 99 out of range (mesh has 8 vertices)",
        ),
        (
            lambda d: d["objects"][1]["mesh"]["faces"].append([0, 1]),
            "objects[1].mesh.faces[6]: a face needs at least 3",
        ),
        (
            lambda d: d["objects"][1]["mesh"]["faces"].append([0, 1, 1]),
            "objects[1].mesh.faces[6]: repeats a vertex",
        ),
        (
            lambda d: d["objects"][1]["mesh"]["vertices"].__setitem__(0, [float("nan"), 0, 0]),
            "objects[1].mesh.vertices[0][0]: Input should be a finite number",
        ),
        (
            lambda d: d["objects"][1]["transform"].__setitem__("location", [float("inf"), 0, 0]),
            "objects[1].transform.location[0]: Input should be a finite number",
        ),
        (
            lambda d: d["objects"][1]["mesh"]["material_indices"].__setitem__(0, 5),
            "objects[1].mesh.material_indices: index 5 out of range (2 material slots)",
        ),
        (
            lambda d: d["objects"][1]["mesh"]["uv_layers"][0]["uvs"].pop(),
            "objects[1].mesh.uv_layers[0].uvs: 23 entries for 24 face corners",
        ),
        (lambda d: d["objects"][1].update(parent="Nobody"), "objects[1].parent: unknown object 'Nobody'"),
        (lambda d: d["objects"][0].update(parent="Cube"), "objects: parent cycle"),
        (
            lambda d: d["objects"][1].update(material_slots=["Red", "Steel"]),
            "objects[1].material_slots[1]: unknown material 'Steel'",
        ),
        (
            lambda d: d["materials"][1]["node_tree"]["links"][0].update(from_node="Ghost"),
            "materials[1].node_tree.links[0].from_node: unknown node 'Ghost'",
        ),
        (
            lambda d: d["materials"][1]["node_tree"]["nodes"][2].update(node_tree="Missing"),
            "materials[1].node_tree.nodes[2].node_tree: unknown node group 'Missing'",
        ),
        (
            lambda d: d["objects"][1]["animation"].update(action="Nope"),
            "objects[1].animation.action: unknown action 'Nope'",
        ),
        (
            lambda d: d["objects"][1]["vertex_groups"][0]["indices"].__setitem__(0, 8),
            "objects[1].vertex_groups[0].indices: vertex index 8 out of range",
        ),
        (lambda d: d["objects"][1].update(colour="red"), "objects[1].colour: Extra inputs are not permitted"),
        (
            lambda d: d["actions"][0]["fcurves"][0]["keyframes"][0].update(interpolation="WOBBLE"),
            "actions[0].fcurves[0].keyframes[0].interpolation: Input should be",
        ),
        (
            lambda d: d["objects"].append(copy.deepcopy(d["objects"][0])),
            "objects[2].name: duplicate name 'Rig'",
        ),
    ],
)
def test_malformed_documents_are_refused_naming_the_field(mutate, expected):
    doc = full_scene()
    mutate(doc)
    assert expected in rejected(doc)


def test_caps_refuse_oversized_documents_before_parsing():
    doc = full_scene()
    assert "8 vertices exceed the cap of 5" in rejected(doc, Limits(max_vertices=5))
    assert "objects: 2 objects exceed the cap of 1" in rejected(doc, Limits(max_objects=1))
    assert "keyframes: 2 exceed the cap of 1" in rejected(doc, Limits(max_keyframes=1))
    assert "nodes: 4 exceed the cap of 3" in rejected(doc, Limits(max_nodes=3))


def test_not_an_object_and_not_json():
    assert "expected a JSON object, got list" in rejected([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        parse_scene(b"{not json", Limits())


def test_schema_command_prints_the_committed_schema():
    out = subprocess.run(
        [sys.executable, "-m", "shared.scene", "schema"], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout
    printed = json.loads(out)
    assert printed == json_schema()
    committed = json.loads((REPO / "shared/scene/scene.schema.json").read_text())
    assert committed == printed, (
        "regenerate shared/scene/scene.schema.json with `python -m shared.scene schema`"
    )


def test_validate_command_reports_each_file(tmp_path):
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(full_scene()))
    doc = full_scene()
    doc["objects"][1]["mesh"]["faces"][0] = [0, 1, 42]
    bad.write_text(json.dumps(doc))
    run = subprocess.run(
        [sys.executable, "-m", "shared.scene", "validate", str(good), str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert run.returncode == 1
    assert "good.json: ok (2 objects)" in run.stdout
    assert "objects[1].mesh.faces[0]: vertex index 42 out of range" in run.stderr
