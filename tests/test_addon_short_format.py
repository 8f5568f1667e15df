"""The product brief's short format: converted by the add-on (standard library), checked like any
scene document, and built in real Blender."""

from __future__ import annotations

import math

import bpy  # noqa: F401  (first: the injector needs Blender)
import pytest

from addon.injector import inject_scene
from addon.short_format import from_short_format, is_short_format
from addon.validate import SceneValidationError, validate_scene
from shared.scene import Limits, parse_scene
from tests.addon_support import reset_blender

CUBE = {
    "vertices": [[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (0.0, 1.0)],
    "faces": [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]],
}


def short_chair() -> dict:
    return {
        "name": "Brief example",
        "objects": [
            {
                "name": "Seat",
                "mesh": CUBE,
                "transforms": {"location": [1, 2, 0], "rotation": [0, 0, math.pi / 2], "scale": 0.5},
                "materials": [
                    {"name": "Oak", "base_color": [0.5, 0.3, 0.1], "roughness": 0.6, "metallic": 0.0},
                    {"base_color": [0.8, 0.8, 0.8, 1.0], "roughness": 0.2, "metallic": 1.0},
                ],
                "modifiers": [
                    {"type": "MIRROR", "axis": "Y", "clipping": True},
                    {"type": "SUBSURF", "levels": 2},
                    {"type": "BEVEL", "amount": 0.02, "segments": 3},
                ],
            },
            {
                "name": "Leg",
                "mesh": CUBE,
                "materials": {
                    "name": "Oak",
                    "base_color": [0.5, 0.3, 0.1],
                    "roughness": 0.6,
                    "metallic": 0.0,
                },
            },
            {"name": "Cushion", "mesh": CUBE, "materials": [{"name": "Oak", "base_color": [1, 0, 0]}]},
        ],
    }


def test_short_format_builds_in_blender():
    reset_blender()
    doc = short_chair()
    assert is_short_format(doc)
    result = inject_scene(doc)
    assert result.warnings == []
    seat = bpy.data.objects["Seat"]
    assert tuple(seat.location) == (1.0, 2.0, 0.0) and tuple(seat.scale) == (0.5, 0.5, 0.5)
    assert seat.rotation_euler.z == pytest.approx(math.pi / 2)
    assert len(seat.data.polygons) == 6
    assert [m.name for m in seat.data.materials] == ["Oak", "SeatMaterial2"]
    bsdf = seat.data.materials["SeatMaterial2"].node_tree.nodes["Principled BSDF"]
    assert bsdf.inputs["Metallic"].default_value == 1.0
    assert bsdf.inputs["Roughness"].default_value == pytest.approx(0.2)
    oak = bpy.data.materials["Oak"].node_tree.nodes["Principled BSDF"]
    assert tuple(oak.inputs["Base Color"].default_value) == pytest.approx((0.5, 0.3, 0.1, 1.0))
    mirror, subsurf, bevel = seat.modifiers
    assert (mirror.type, tuple(mirror.use_axis), mirror.use_clip) == ("MIRROR", (False, True, False), True)
    assert (subsurf.levels, subsurf.render_levels) == (2, 2)
    assert bevel.width == pytest.approx(0.02) and bevel.segments == 3
    # The same name with the same values is one material; with other values, a second one.
    assert bpy.data.objects["Leg"].data.materials[0] == bpy.data.materials["Oak"]
    assert bpy.data.objects["Cushion"].data.materials[0].name == "Oak.001"
    reset_blender()


def test_the_converted_document_is_the_scene_format():
    converted = from_short_format(short_chair())
    scene = parse_scene(converted, Limits())  # the project's pydantic models agree
    assert [m.name for m in scene.materials] == ["Oak", "SeatMaterial2", "Oak.001"]
    assert scene.objects[0].modifiers[0].params == {"use_axis": [False, True, False], "use_clip": True}
    assert validate_scene(short_chair()) == validate_scene(converted)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (
            lambda d: d["objects"][0]["modifiers"].append({"axis": "X"}),
            "objects[0].modifiers[3]: expected an object with a type",
        ),
        (
            lambda d: d["objects"][0]["transforms"].update(rotate=[0, 0, 1]),
            "objects[0].transforms.rotate: not a field of transforms",
        ),
        (lambda d: d["objects"][0]["materials"][0].update(roughness="high"), "materials[0].pbr.roughness"),
        (
            lambda d: d["objects"][0]["mesh"]["faces"].append([0, 1, 99]),
            "objects[0].mesh.faces[6]: vertex index 99 out of range",
        ),
        (
            lambda d: d["objects"][0].update(transform={}),
            "schema_version: unknown version None; supported: 1.0 (or the short format",
        ),
    ],
)
def test_bad_short_documents_are_refused_naming_the_field(mutate, expected):
    doc = short_chair()
    mutate(doc)
    with pytest.raises(SceneValidationError) as caught:
        validate_scene(doc)
    assert any(expected in error for error in caught.value.errors), caught.value.errors
