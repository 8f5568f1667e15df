"""The add-on's standard-library validator: it refuses what the project's pydantic format refuses,
naming the same field, and caps what could exhaust Blender. No bpy needed."""

from __future__ import annotations

import copy
import json

import pytest

from addon.validate import Limits, SceneValidationError, validate_scene
from shared.scene import Limits as SharedLimits
from shared.scene import SceneValidationError as SharedValidationError
from shared.scene import parse_scene
from tests.addon_support import rich_scene, small_scene
from tests.test_scene_format import full_scene


def refused(doc, limits: Limits | None = None) -> str:
    with pytest.raises(SceneValidationError) as info:
        validate_scene(doc, limits)
    return str(info.value)


@pytest.mark.parametrize("make", [full_scene, rich_scene, small_scene])
def test_valid_documents_pass_and_get_every_default(make):
    doc = make()
    out = validate_scene(doc)
    parse_scene(doc, SharedLimits())  # the project's own validator agrees
    obj = out["objects"][0]
    assert obj["transform"]["scale"] == [1.0, 1.0, 1.0] or "scale" in doc["objects"][0].get("transform", {})
    assert {"modifiers", "constraints", "vertex_groups", "animation", "hide_viewport"} <= obj.keys()
    assert out["units"] == {"system": "METRIC", "scale_length": 1.0, "length_unit": "METERS"}
    assert validate_scene(json.dumps(doc)) == out  # text and dict give the same result


def test_small_scene_defaults_match_the_pydantic_models():
    ours = validate_scene(small_scene())
    theirs = json.loads(parse_scene(small_scene(), SharedLimits()).model_dump_json())
    # JSON turns tuples into lists on both sides; the two normalised documents are identical.
    assert ours == theirs


MUTATIONS = [
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
        lambda d: d["objects"][1]["mesh"].update(
            vertices=[[float("nan"), 0, 0]] + d["objects"][1]["mesh"]["vertices"][1:]
        ),
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
    (lambda d: d["objects"].append(copy.deepcopy(d["objects"][0])), "objects[2].name: duplicate name 'Rig'"),
    (lambda d: d["objects"][1]["mesh"].pop("faces"), "objects[1].mesh.faces: Field required"),
    (
        lambda d: d["objects"][1].update(hide_render="maybe"),
        "objects[1].hide_render: Input should be a valid boolean",
    ),
    (
        lambda d: d["objects"][1]["mesh"]["faces"][0].__setitem__(0, 1.5),
        "objects[1].mesh.faces[0][0]: Input should be a valid integer",
    ),
    (
        lambda d: d["objects"][1]["mesh"]["faces"][0].__setitem__(0, True),
        "objects[1].mesh.faces[0][0]: Input should be a valid integer",
    ),
    (lambda d: d["objects"][1].update(name=""), "objects[1].name: String should have at least 1 character"),
    (
        lambda d: d["objects"][1].update(name="x" * 256),
        "objects[1].name: String should have at most 255 characters",
    ),
    (
        lambda d: d["objects"][1]["modifiers"][0]["params"].update(width=float("nan")),
        "objects[1].modifiers[0].params.width: Input should be a finite number",
    ),
    (
        lambda d: d["objects"][1]["animation"]["drivers"][0].update(index=-1),
        "drivers[0].index: Input should be greater than or equal to 0",
    ),
    (lambda d: d.update(fps=0), "fps: Input should be greater than 0"),
    (lambda d: d.update(objects={"a": 1}), "objects: Input should be a valid list, got dict"),
]


@pytest.mark.parametrize(("mutate", "expected"), MUTATIONS)
def test_malformed_documents_are_refused_naming_the_field_like_the_format_does(mutate, expected):
    doc = full_scene()
    mutate(doc)
    assert expected in refused(doc)
    with pytest.raises((SharedValidationError, ValueError)):
        parse_scene(doc, SharedLimits())


def test_caps_refuse_oversized_documents():
    doc = full_scene()
    assert "8 vertices exceed the cap of 5" in refused(doc, Limits(max_vertices=5))
    assert "objects: 2 objects exceed the cap of 1" in refused(doc, Limits(max_objects=1))
    assert "keyframes: 2 exceed the cap of 1" in refused(doc, Limits(max_keyframes=1))
    assert "nodes: 4 exceed the cap of 3" in refused(doc, Limits(max_nodes=3))
    assert "face corners: 24 exceed the cap of 10" in refused(doc, Limits(max_corners=10))
    assert "shape key vertices: 16 exceed the cap of 8" in refused(doc, Limits(max_shape_key_vertices=8))
    assert "materials: 2 items exceed the cap of 1" in refused(doc, Limits(max_list_items=1))


def test_limits_beyond_the_shared_format():
    doc = full_scene()
    doc["objects"][1]["mesh"]["uv_layers"] = [
        {"name": f"UV{k}", "uvs": doc["objects"][1]["mesh"]["uv_layers"][0]["uvs"]} for k in range(9)
    ]
    assert "objects[1].mesh.uv_layers: 9 layers, Blender allows 8" in refused(doc)
    doc = full_scene()
    doc["objects"][0]["armature"]["bones"][1]["name"] = "root"
    assert "objects[0].armature.bones[1].name: duplicate name 'root'" in refused(doc)
    doc = full_scene()
    deep: dict = {}
    node = deep
    for _ in range(20):
        node["x"] = {}
        node = node["x"]
    doc["objects"][1]["modifiers"][0]["params"]["deep"] = deep
    assert "nested deeper than 16 levels" in refused(doc)
    doc = full_scene()
    doc["images"][0]["size"] = [100_000, 4]
    assert "images[0].size: [100000, 4] outside 0..65536 pixels" in refused(doc)


def test_a_broken_big_list_reports_a_bounded_number_of_errors():
    doc = full_scene()
    doc["objects"][1]["mesh"]["vertices"] = [["a", 0, 0]] * 10_000
    message = refused(doc)
    assert message.count("Input should be a finite number") == 20


def test_not_an_object_and_not_json():
    assert "expected a JSON object, got list" in refused([1, 2])
    assert "document: not valid JSON" in refused(b"{not json")
    assert "objects[0]: Input should be an object (Object), got str" in refused(
        {"schema_version": "1.0", "objects": ["cube"]}
    )


def test_numbers_too_large_for_a_float_are_not_finite():
    doc = full_scene()
    doc["objects"][1]["mesh"]["vertices"][0] = [10**400, 0, 0]
    assert "objects[1].mesh.vertices[0][0]: Input should be a finite number" in refused(doc)
    doc = full_scene()
    doc["objects"][1]["transform"]["scale"] = [1, 10**400, 1]
    assert "objects[1].transform.scale[1]: Input should be a finite number" in refused(doc)
