"""One Generate through every specialist: the real gateway process, the committed checkpoints of
all four models in-process, and the add-on's injector in real Blender. The product's promise in
one test: a prompt becomes a mesh with a node material, a live modifier stack and an action."""

from __future__ import annotations

import time

import bpy  # in CI a missing bpy fails the run: never importorskip
import httpx

from addon.injector import inject_scene
from tests.addon_support import reset_blender
from tools.servers import gateway_process

SPECIALISTS = ["geometry", "material", "modifier", "animation"]


def test_one_generate_fills_every_part_of_the_scene_in_blender(tmp_path):
    env = {
        "BMT_DATA_DIR": str(tmp_path / "var"),
        "BMT_INFERENCE_TIMEOUT_S": "600",  # the first call loads the text encoder
        "OMP_NUM_THREADS": "1",
    }
    with gateway_process(env) as url:
        ready = httpx.get(f"{url}/readyz", timeout=30).json()
        body = {"prompt": "a wooden chair", "specialists": SPECIALISTS, "face_budget": 60, "seed": 3}
        response = httpx.post(f"{url}/v1/generations", json=body, timeout=30)
        assert response.status_code == 202, (response.text, ready)
        deadline = time.monotonic() + 900
        while True:
            state = httpx.get(f"{url}/v1/generations/{response.json()['id']}", timeout=30).json()
            if state["status"] not in ("queued", "running") or time.monotonic() > deadline:
                break
            time.sleep(0.5)
    assert state["status"] == "succeeded", state
    assert set(state["stages"]) == set(SPECIALISTS)
    (scene,) = state["scenes"]
    (obj,) = scene["objects"]
    assert obj["mesh"]["faces"] and obj["material_slots"] and obj["animation"]["action"]

    reset_blender()
    inject_scene(scene, add_uv_maps=True)  # as the add-on's Insert does
    (blender_object,) = [o for o in bpy.data.objects if o.type == "MESH"]
    material = blender_object.material_slots[0].material
    assert material is not None and material.node_tree.nodes.get("Material Output") is not None
    assert [m.type for m in blender_object.modifiers] == [m["type"] for m in obj.get("modifiers", [])]
    action = blender_object.animation_data.action
    fcurves = [
        fc
        for layer in action.layers
        for strip in layer.strips
        for bag in strip.channelbags
        for fc in bag.fcurves
    ]
    assert fcurves and all(len(fc.keyframe_points) >= 2 for fc in fcurves)
    bpy.context.scene.frame_set(int(action.frame_range[1]))  # evaluates without an error
    assert blender_object.data.uv_layers, "generated meshes arrive with a UV map"
