"""The scene reader in-process on real corpus files, for details the round trip with the add-on
depends on: everything a document names is in it, nothing derived or unwritable is stored."""

from __future__ import annotations

from typing import Any

import bpy  # in CI a missing bpy fails the run: never importorskip
import pytest

from blender_worker.loader import disable_auto_exec
from blender_worker.scene_reader import ReadLimits, read_scene
from tests.conftest import CORPUS

LIMITS = ReadLimits(max_vertices=2_000_000, max_faces=2_000_000)
GLTF = CORPUS / "blend" / "gltf_blender_io"


def read(path) -> dict[str, Any]:
    if not path.exists():
        pytest.fail(f"corpus file missing: {path}")
    disable_auto_exec()
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
    return read_scene(LIMITS, saved_by_blender=True)


def walk(value: Any, path: str = ""):
    """Every (path, value) pair of a document."""
    yield path, value
    if isinstance(value, dict):
        for key, item in value.items():
            yield from walk(item, f"{path}.{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from walk(item, f"{path}[{i}]")


def test_materials_named_only_by_geometry_nodes_join_the_document():
    doc = read(GLTF / "scenes_26_material_override_by_modifiers.blend")
    set_material = {
        s["default"]
        for g in doc["node_groups"]
        for n in g["nodes"]
        if n["type"] == "GeometryNodeSetMaterial"
        for s in n["inputs"]
        if s["identifier"] == "Material"
    }
    assert set_material == {"blue", "yellow"}  # in no material slot
    assert set_material <= {m["name"] for m in doc["materials"]}


def test_texture_uv_maps_are_named():
    doc = read(GLTF / "scenes_32_uvmap_indices.blend")
    uv_maps = {
        (m["name"], key): tex.get("uv_layer")
        for m in doc["materials"]
        for key, tex in m["pbr"].get("textures", {}).items()
    }
    named = {k: v for k, v in uv_maps.items() if v is not None}
    assert named, uv_maps
    nodes = {
        n["properties"].get("uv_map")
        for m in doc["materials"]
        for n in m["node_tree"]["nodes"]
        if n["type"] == "ShaderNodeUVMap"
    }
    assert set(named.values()) <= nodes


def test_unknown_enum_values_and_derived_state_are_left_out():
    # The file stores a subsurface method this Blender has no item for; RNA reads it as "".
    doc = read(GLTF / "scenes_01_dispersion.blend")
    empty_enums = [
        p for p, v in walk(doc) if isinstance(v, str) and not v and p.endswith("subsurface_method")
    ]
    assert empty_enums == []
    doc = read(CORPUS / "blend" / "zeyu_free_blender_models" / "blend_security_camera.blend")
    profile = next(m for o in doc["objects"] for m in o.get("modifiers", []) if m["type"] == "BEVEL")[
        "params"
    ]["custom_profile"]
    assert len(profile["points"]) == 3 and "segments" not in profile
    doc = read(CORPUS / "blend" / "zeyu_free_blender_models" / "blend_telescope.blend")
    image_users = [v for p, v in walk(doc) if p.endswith(".image_user")]
    assert image_users and not [u for u in image_users if "frame_current" in u]


def test_geometry_nodes_attribute_switches_are_booleans():
    doc = read(
        CORPUS
        / "blend"
        / "quaternius"
        / "Characters_and_Animals"
        / "Knight_Character_Animated_-_Jul_2018"
        / "Sword.blend"
    )
    inputs = next(m for o in doc["objects"] for m in o.get("modifiers", []) if m["type"] == "NODES")[
        "params"
    ]["inputs"]
    switches = {k: v for k, v in inputs.items() if k.endswith("_use_attribute")}
    assert switches and all(isinstance(v, bool) for v in switches.values())
