"""Generated actions in real Blender (bpy 5.0): the committed animation model's actions, injected by
the add-on's injector onto a corpus rig and onto a mesh object, are real F-curves on the right
channels, evaluate at a frame without errors, and pose the rig as the evaluation's forward
kinematics computes it."""

from __future__ import annotations

from pathlib import Path

import bpy
import numpy as np
import pytest
import torch

from addon.injector import inject_scene
from services.trainer.animation_metrics import pose_points
from shared.ml.animation_generator import AnimationGenerator
from shared.ml.animation_tokens import MotionLayout, evaluate_fcurve
from tests.addon_support import PYRAMID_FACES, PYRAMID_VERTICES, reset_blender
from tests.extract_support import CORPUS, extract, load_document

CHECKPOINT = Path(__file__).resolve().parents[1] / "models/animation/tiny/model.pt"
FOX = CORPUS / "blend/quaternius/Characters_and_Animals/Animals_Pack_-_Oct_2016/Red_Fox.blend"


@pytest.fixture(scope="module")
def fox_rig(tmp_path_factory: pytest.TempPathFactory) -> dict:
    entry = extract([FOX], tmp_path_factory.mktemp("fox"))["Red_Fox.blend"]
    doc = load_document(entry)
    return next(o["armature"] for o in doc["objects"] if o.get("armature"))


@pytest.fixture(scope="module")
def generated(fox_rig: dict) -> list[dict]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two threads on two busy cores spin more than they compute
    generator = AnimationGenerator(CHECKPOINT, device="cpu")
    results = generator.run_many(
        [
            {"prompt": "red fox walk animation", "object_type": "ARMATURE", "armature": fox_rig, "seed": 3},
            {"prompt": "slow spin", "object_type": "MESH", "transform": {"location": [2, 0, 1]}, "seed": 3},
        ]
    )
    torch.set_num_threads(threads)
    return results


@pytest.fixture
def injected(fox_rig: dict, generated: list[dict]):
    reset_blender()
    walk, spin = generated
    document = {
        "schema_version": "1.0",
        "objects": [
            {"name": "Fox", "type": "ARMATURE", "armature": fox_rig, "animation": walk["animation"]},
            {
                "name": "Box",
                "type": "MESH",
                "transform": {"location": [2, 0, 1]},
                "mesh": {"name": "BoxMesh", "vertices": PYRAMID_VERTICES, "faces": PYRAMID_FACES},
                "animation": spin["animation"],
            },
        ],
        "actions": [walk["action"], spin["action"]],
    }
    result = inject_scene(document)
    yield {o.name: o for o in result.objects}
    reset_blender()


def _fcurves(obj) -> dict:
    anim = obj.animation_data
    strip = anim.action.layers[0].strips[0]
    return {(fc.data_path, fc.array_index): fc for fc in strip.channelbag(anim.action_slot).fcurves}


def test_a_generated_rig_action_is_real_fcurves_on_the_rigs_pose_bones(injected, generated):
    fox = injected["Fox"]
    curves = _fcurves(fox)
    wanted = {(f["data_path"], f["index"]) for f in generated[0]["action"]["fcurves"]}
    assert set(curves) == wanted and len(wanted) >= 4 * len(fox.pose.bones)
    for (path, _index), fcurve in curves.items():
        assert not fcurve.is_empty and len(fcurve.keyframe_points) >= 2
        fox.path_resolve(path)  # raises if the channel does not exist on this rig
        assert path.startswith("pose.bones[")


def test_the_rig_evaluates_at_a_frame_as_the_evaluation_computes_it(injected, generated, fox_rig):
    fox, action = injected["Fox"], generated[0]["action"]
    start, end = action["frame_range"]
    frame = round((start + end) / 2)
    bpy.context.scene.frame_set(frame)
    layout = MotionLayout(fox_rig)
    points = pose_points(layout, action, np.array([float(frame)]))[0]
    moved = 0
    for i, name in enumerate(layout.names):
        bone = fox.pose.bones[name]
        assert np.allclose(bone.head, points[i, 0], atol=1e-4 * layout.height), name
        assert np.allclose(bone.tail, points[i, 1], atol=1e-4 * layout.height), name
        moved += not np.allclose(bone.head, fox.data.bones[name].head_local, atol=1e-3)
    assert moved  # the walk moves some bone away from its rest


def test_a_generated_object_action_moves_the_mesh_from_where_it_stands(injected, generated):
    box, action = injected["Box"], generated[1]["action"]
    curves = _fcurves(box)
    assert set(curves) == {(p, i) for p in ("location", "rotation_euler", "scale") for i in range(3)}
    start, end = action["frame_range"]
    bpy.context.scene.frame_set(round(start))
    assert tuple(box.location) == pytest.approx((2, 0, 1), abs=0.05)
    frame = round((start + end) / 2)
    bpy.context.scene.frame_set(frame)
    by_channel = {(f["data_path"], f["index"]): f for f in action["fcurves"]}
    for i in range(3):
        assert box.location[i] == pytest.approx(
            evaluate_fcurve(by_channel["location", i], [frame])[0], abs=1e-4
        )
        assert box.rotation_euler[i] == pytest.approx(
            evaluate_fcurve(by_channel["rotation_euler", i], [frame])[0], abs=1e-4
        )
