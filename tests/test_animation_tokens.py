"""Animation tokens: lossless at the grid on the corpus's animated files (extracted by the real
extractor), the motion layout on a rig's bones, and the grammar that decodes what the model writes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from services.trainer.animation_metrics import (
    channel_error,
    invalid_curves,
    loop_closure,
    motion_ratio,
    normalised_samples,
)
from shared.ml.animation_tokens import (
    ACTION_TOKENS,
    BOS,
    EOS,
    KEYS,
    MOTION_TOKENS,
    AnimationTokenError,
    Motion,
    MotionGrammar,
    MotionLayout,
    bin_values,
    decode_action,
    encode_action,
    evaluate_fcurve,
    keyframes,
    motion_label,
    quantize_action,
    value_bins,
)
from shared.ml.synthetic_motions import MOTIONS, synthetic_motion
from tests.extract_support import CORPUS, extract, load_document

ANIMATED = [
    "blend/quaternius/Characters_and_Animals/Goblin_Animated_Patreon_Exclusive/Goblin.blend",
    "blend/quaternius/Characters_and_Animals/Animals_Pack_-_Oct_2016/Red_Fox.blend",
    "blend/gltf_blender_io/scenes_00_looping_animation.blend",
    "blend/gltf_blender_io/scenes_03_all_animations.blend",
    "blend/gltf_blender_io/scenes_07_nla-anim.blend",
]


@pytest.fixture(scope="module")
def documents(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    entries = extract([CORPUS / p for p in ANIMATED], tmp_path_factory.mktemp("animated"))
    assert all(e["status"] == "ok" for e in entries.values()), entries
    return [load_document(e) for e in entries.values()]


def _rig(documents: list[dict], name: str) -> dict:
    return next(o["armature"] for d in documents for o in d["objects"] if o["name"] == name)


def test_every_action_of_the_animated_corpus_files_is_lossless_at_the_grid(documents):
    count = 0
    for doc in documents:
        bones = [b["name"] for o in doc["objects"] if o.get("armature") for b in o["armature"]["bones"]]
        for action in doc["actions"]:
            tokens, table = encode_action(action, bones)
            assert decode_action(tokens, table, bones) == quantize_action(action), action["name"]
            assert (
                any(ACTION_TOKENS.names[t] == "TARGET_BONE" for t in tokens)
                or not bones
                or action["name"]
                in (
                    "CubeAction",
                    "SuzanneAction",
                )
            )
            count += 1
    assert count >= 12  # the Goblin's eight, the fox's, the glTF scenes'


def test_quantisation_moves_values_by_at_most_half_a_step(documents):
    action = next(a for d in documents for a in d["actions"] if a["name"] == "Goblin_Walk")
    quantized = quantize_action(action)
    for raw, q in zip(action["fcurves"], quantized["fcurves"], strict=True):
        for k, kq in zip(raw["keyframes"], q["keyframes"], strict=True):
            assert abs(k["co"][1] - kq["co"][1]) <= 1 / 8192 + 1e-12


def test_what_no_token_spells_goes_to_the_side_table():
    action = {
        "name": "Odd",
        "id_root": "KEY",
        "fcurves": [
            {
                "data_path": 'key_blocks["Smile"].value',
                "group": "Faces",
                "modifiers": [{"type": "CYCLES"}],
                "keyframes": [
                    {"co": [1, 0]},
                    {"co": [10.5, 1], "interpolation": "LINEAR", "handle_left": None},
                ],
            },
            {"data_path": 'pose.bones["Missing"].location', "index": 2, "keyframes": [{"co": [0, 2]}]},
        ],
    }
    tokens, table = encode_action(action, ["Arm"])
    assert table[:2] == ["Odd", "KEY"] and 'key_blocks["Smile"].value' in table and "Faces" in table
    assert decode_action(tokens, table, ["Arm"]) == quantize_action(action)


@pytest.mark.parametrize(
    ("cut", "message"),
    [
        (lambda t: t[:-1], "ends inside"),
        (lambda t: [t[0] + 1, *t[1:]], "starts with BOS"),
        (lambda t: [*t, EOS], "after EOS"),
        (lambda t: [*t[:3], 9999, *t[4:]], "outside the vocabulary"),
    ],
)
def test_broken_token_sequences_fail_clearly(cut, message):
    action = {
        "name": "A",
        "fcurves": [{"data_path": "location", "keyframes": [{"co": [1, 0]}, {"co": [5, 1]}]}],
    }
    tokens, table = encode_action(action)
    with pytest.raises(AnimationTokenError, match=message):
        decode_action(cut(tokens), table)


def test_a_bone_index_outside_the_rig_fails_clearly():
    action = {
        "name": "A",
        "fcurves": [{"data_path": 'pose.bones["b"].location', "keyframes": [{"co": [1, 0]}]}],
    }
    tokens, table = encode_action(action, ["a", "b"])
    with pytest.raises(AnimationTokenError, match="not in the rig"):
        decode_action(tokens, table, ["a"])


def test_fcurve_evaluation_follows_bezier_handles_and_extrapolation():
    linear = {
        "keyframes": [{"co": [0, 0], "interpolation": "LINEAR"}, {"co": [10, 5]}],
        "extrapolation": "LINEAR",
    }
    assert evaluate_fcurve(linear, [-2, 0, 4, 10, 12]).tolist() == pytest.approx([-1, 0, 2, 5, 6])
    flat_handles = {
        "keyframes": [
            {"co": [0, 0], "handle_left": [-3, 0], "handle_right": [3, 0]},
            {"co": [9, 1], "handle_left": [6, 1], "handle_right": [12, 1]},
        ]
    }
    values = evaluate_fcurve(flat_handles, [0, 1, 4.5, 8, 9, 20])
    assert (
        values[2] == pytest.approx(0.5) and values[5] == 1 and 0 < values[1] < 1 / 9
    )  # an ease in, then out
    assert (
        evaluate_fcurve({"keyframes": [{"co": [0, 2], "interpolation": "CONSTANT"}, {"co": [4, 3]}]}, [3.9])[
            0
        ]
        == 2
    )


def test_a_rigs_layout_follows_its_bones(documents):
    layout = MotionLayout(_rig(documents, "GoblinArmature"))
    mobile = {layout.names[i] for i in layout.mobile}
    # Roots, unconnected children of the root, and the IK legs' targets and poles translate.
    assert mobile == {"Bone", "Foot.L", "Body", "PoleTarget.L", "Foot.R", "PoleTarget.R"}
    assert len(layout.channels) == 3 * len(layout.names) + 3 * len(mobile)
    features = layout.features()
    assert features.shape == (27, features.shape[1]) and np.isfinite(features).all()
    left, right = layout.names.index("UpperArm.L"), layout.names.index("UpperArm.R")
    assert features[left, 15] == 1 and features[right, 15] == -1  # sides from the names


def test_a_real_walk_resampled_onto_its_rig_and_written_back_keeps_its_shape(documents):
    layout = MotionLayout(_rig(documents, "GoblinArmature"))
    walk = next(a for d in documents for a in d["actions"] if a["name"] == "Goblin_Walk")
    motion = layout.motion_from_action(walk)
    assert motion.loop and motion.duration == 30
    written = layout.to_action(motion, "Walk")
    assert invalid_curves(written, layout) == []
    assert loop_closure(written, layout) == 0
    # Nine keys keep a walk's pose curves to within a few degrees on average.
    error = channel_error(normalised_samples(written, layout), normalised_samples(walk, layout), cyclic=True)
    assert error < 0.05
    # It moves as much as the walk it came from; a still answer does not move, a doubled one twice.
    reference = normalised_samples(walk, layout)
    assert motion_ratio(normalised_samples(written, layout), [reference]) == pytest.approx(1.0, abs=0.1)
    assert motion_ratio(np.zeros_like(reference), [reference]) == 0.0
    assert motion_ratio(2 * reference, [reference, reference]) == pytest.approx(2.0)
    again = layout.motion_from_action(written)
    assert np.abs(again.values - motion.values).max() < 1e-5


def test_motion_tokens_decode_to_the_binned_motion_and_the_grammar_allows_only_that(documents):
    layout = MotionLayout(_rig(documents, "GoblinArmature"))
    values = np.random.default_rng(0).normal(0, 0.3, (KEYS, len(layout.channels)))
    motion = Motion(False, 30.0, values)
    tokens = layout.encode(motion)
    assert len(tokens) == layout.sequence_length() and tokens[0] == BOS and tokens[-1] == EOS
    decoded = layout.decode(tokens)
    assert decoded.values == pytest.approx(bin_values(value_bins(values, layout.kinds), layout.kinds))
    assert np.abs(decoded.values - values).max() < 0.05
    grammar = MotionGrammar(layout)
    with pytest.raises(AnimationTokenError, match="not allowed"):
        grammar.feed(EOS)  # the header comes first
    for t in tokens[1:-1]:
        assert grammar.allowed_mask()[t] and not grammar.allowed_mask()[EOS]
        grammar.feed(t)
    assert np.flatnonzero(grammar.allowed_mask()).tolist() == [EOS]


@pytest.mark.parametrize("loop", [None, True, False])
def test_position_masks_are_what_the_grammar_allows_at_each_step(documents, loop):
    """Decoding looks each step's mask up in position_masks instead of asking the grammar."""
    layout = MotionLayout(_rig(documents, "GoblinArmature"))
    grammar = MotionGrammar(layout, loop)
    masks = grammar.position_masks()
    assert masks.shape == (layout.sequence_length() - 1, len(MOTION_TOKENS))
    values = np.random.default_rng(0).normal(0, 0.3, (KEYS, len(layout.channels)))
    for step, t in enumerate(layout.encode(Motion(bool(loop), 30.0, values))[1:]):
        assert np.array_equal(masks[step], grammar.allowed_mask())
        grammar.feed(t)
    assert grammar.done


@pytest.mark.parametrize("kind", MOTIONS)
def test_synthetic_object_motions_become_valid_actions_from_the_objects_placement(kind):
    prompts, motion = synthetic_motion(kind, np.random.default_rng(1))
    assert all(motion_label(p) == kind for p in prompts)
    layout = MotionLayout(None)
    action = layout.to_action(
        motion, kind, base={"location": (1, 2, 3), "rotation_euler": (0, 0, 0), "scale": (1, 1, 1)}
    )
    assert invalid_curves(action, layout) == []
    location = [f for f in action["fcurves"] if f["data_path"] == "location"]
    assert [f["keyframes"][0]["co"][1] for f in location] == pytest.approx([1, 2, 3])
    if motion.loop:
        assert loop_closure(action, layout) == pytest.approx(0, abs=1e-6)
    if kind == "spin":
        turn = [f for f in action["fcurves"] if f["data_path"] == "rotation_euler"]
        assert max(abs(f["keyframes"][-1]["co"][1]) for f in turn) == pytest.approx(2 * math.pi, abs=1e-4)


def test_loop_keys_share_one_slope_at_their_ends():
    keys = keyframes(np.linspace(1, 25, KEYS), np.sin(np.linspace(0, 2 * math.pi, KEYS)), loop=True)
    first, last = keys[0], keys[-1]
    slope = lambda k: (k["handle_right"][1] - k["co"][1]) / (k["handle_right"][0] - k["co"][0])  # noqa: E731
    assert slope(first) == pytest.approx(slope(last)) and slope(first) > 0


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Goblin_Walk", "walk"),
        ("Fish_Armature|Swimming_Fast", "swim"),
        ("slow spin", "spin"),
        ("CubeAction", None),
    ],
)
def test_motion_labels_from_names_and_prompts(text, label):
    assert motion_label(text) == label


def test_a_pose_is_the_same_numbers_on_rigs_whose_bones_differ_only_in_roll():
    """The model writes bone rotations in the armature's axes: a thigh swung forward by 0.5 rad
    about the armature's x is (0.5, 0, 0) whatever the bone's roll, and written back it poses
    both rigs alike (forward kinematics as Blender's, tested against bpy in test_animation_blender)."""
    from services.trainer.animation_metrics import pose_points

    def rig(roll: float) -> MotionLayout:
        return MotionLayout(
            {
                "bones": [
                    {"name": "Thigh", "head": [0, 0, 1], "tail": [0, 0, 0.5], "roll": roll, "parent": None}
                ]
            }
        )

    swing = np.array([0.5, 0.0, 0.0])
    frames = np.array([1.0, 11.0])
    posed = []
    for roll in (0.0, 1.2):
        layout = rig(roll)
        in_bone_axes = layout.triple_axes[0].T @ swing
        quat = np.roll(Rotation.from_rotvec([np.zeros(3), in_bone_axes]).as_quat(), 1, axis=1)
        action = {
            "name": "Swing",
            "frame_range": [1.0, 11.0],
            "fcurves": [
                {
                    "data_path": 'pose.bones["Thigh"].rotation_quaternion',
                    "index": i,
                    "keyframes": [
                        {"co": [float(f), float(q[i])], "interpolation": "LINEAR"}
                        for f, q in zip(frames, quat, strict=True)
                    ],
                }
                for i in range(4)
            ],
        }
        values = layout.motion_values(action, frames)
        np.testing.assert_allclose(values[:, :3], [np.zeros(3), swing], atol=1e-9)
        written = layout.to_action(Motion(False, 10.0, np.repeat(values[1:], KEYS, axis=0)), "Swing")
        posed.append(pose_points(layout, written, np.array([1.0]))[0])
    np.testing.assert_allclose(posed[0], posed[1], atol=1e-6)  # keys are written on a grid
    # Turned 0.5 rad about +x, the downward thigh's tail (0.5 below its head) swings to +y.
    assert posed[0][0, 1, 1] == pytest.approx(0.5 * math.sin(0.5), abs=1e-6)
