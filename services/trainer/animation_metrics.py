"""Scores of actions on a target: validity, channel error, loop closure, foot slide, and the
forward kinematics (rest pose + F-curves -> bone positions) they and the frame strips use.

Pure numpy/scipy. Forward kinematics follows Blender's bone matrices (a bone's rest frame from
head, tail and roll as Blender's vec_roll_to_mat3 builds it; pose = parent pose x rest offset x
location x rotation x scale); constraints (IK) are not solved, so an IK leg shows its FK pose
while its IK target (a foot bone) moves as keyed.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from shared.ml.animation_tokens import (
    PROPS,
    MotionLayout,
    action_range,
    bone_path,
    bone_rest_matrix,
    evaluate_fcurve,
    name_words,
)

SAMPLES = 33  # points in normalised time at which actions are compared
_ARRAY_SIZES = {
    "location": 3,
    "rotation_euler": 3,
    "rotation_quaternion": 4,
    "rotation_axis_angle": 4,
    "scale": 3,
}
_BONE_PATH = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.(\w+)$')


def invalid_curves(action: dict[str, Any], layout: MotionLayout) -> list[str]:
    """The F-curves of an action that target no channel of the target (an absent bone, an
    unknown property, an index past the property's size)."""
    bad = []
    for fcurve in action.get("fcurves", []):
        path, index = fcurve["data_path"], fcurve.get("index", 0)
        match = _BONE_PATH.match(path)
        if layout.is_rig and match:
            prop = match[2]
            ok = prop in PROPS and any(bone_path(n, prop) == path for n in layout.names)
        else:
            prop, ok = path, not layout.is_rig and path in PROPS
        if not ok or index >= _ARRAY_SIZES.get(prop, 0):
            bad.append(f"{path}[{index}]")
    return bad


def normalised_samples(action: dict[str, Any], layout: MotionLayout, count: int = SAMPLES) -> np.ndarray:
    """(count, channels) values over the action's range, evenly spread."""
    start, end = action_range(action)
    return layout.sample(action, np.linspace(start, end, count))


def channel_error(values: np.ndarray, reference: np.ndarray, cyclic: bool) -> float:
    """Mean absolute difference per channel and time (radians for rotations, rig heights or
    metres for locations); a cycle is compared at its best phase (the last sample is the first)."""
    if not cyclic:
        return float(np.abs(values - reference).mean())
    body, ref = values[:-1], reference[:-1]
    return float(min(np.abs(np.roll(body, s, axis=0) - ref).mean() for s in range(len(body))))


def motion_ratio(values: np.ndarray, references: list[np.ndarray]) -> float:
    """How much an answer moves against its references: the sum of its channels' ranges over time
    over the references' mean sum (1: as much as they move, 0: still). Channel error alone
    rewards stillness (the rest pose scores well); this tells a still answer from a right one."""
    moved = float(np.ptp(values, axis=0).sum())
    expected = float(np.mean([np.ptp(r, axis=0).sum() for r in references]))
    return moved / expected if expected > 0 else float(moved > 0)


def loop_closure(action: dict[str, Any], layout: MotionLayout) -> float:
    """How far a cycle's end is from its start, as a share of its largest channel range (0: it
    closes). An object's turn is compared modulo whole turns."""
    values = normalised_samples(action, layout, 65)
    gap = np.abs(values[-1] - values[0])
    spins = np.array([k == "obj_rot" for k in layout.kinds])
    gap[spins] = np.abs((gap[spins] + math.pi) % (2 * math.pi) - math.pi)
    span = float(np.ptp(values, axis=0).max())
    return float(gap.max() / span) if span > 1e-6 else 0.0


# ---- forward kinematics -----------------------------------------------------------------------


def pose_points(layout: MotionLayout, action: dict[str, Any], frames: np.ndarray) -> np.ndarray:
    """(frames, bones, 2, 3) armature-space heads and tails of the posed rig at ``frames``."""
    curves = {(f["data_path"], f["index"]): f for f in action.get("fcurves", [])}

    def channel(path: str, index: int, rest: float) -> np.ndarray:
        found = curves.get((path, index))
        return evaluate_fcurve(found, frames) if found else np.full(len(frames), rest)

    index = {n: i for i, n in enumerate(layout.names)}
    rest = [bone_rest_matrix(b["head"], b["tail"], b.get("roll", 0.0)) for b in layout.bones]
    poses: list[np.ndarray] = []
    out = np.zeros((len(frames), len(layout.bones), 2, 3))
    for i, bone in enumerate(layout.bones):  # the scene format lists parents before children
        prefix = bone_path(bone["name"], "")
        basis = np.tile(np.eye(4), (len(frames), 1, 1))
        if any((prefix + "rotation_quaternion", k) in curves for k in range(4)):
            wxyz = np.stack([channel(prefix + "rotation_quaternion", k, float(k == 0)) for k in range(4)], 1)
            wxyz[np.linalg.norm(wxyz, axis=1) < 1e-9] = (1, 0, 0, 0)
            rotation = Rotation.from_quat(np.roll(wxyz, -1, axis=1)).as_matrix()
        else:
            euler = np.stack([channel(prefix + "rotation_euler", k, 0.0) for k in range(3)], 1)
            rotation = Rotation.from_euler("xyz", euler).as_matrix()
        scale = np.stack([channel(prefix + "scale", k, 1.0) for k in range(3)], 1)
        basis[:, :3, :3] = rotation * scale[:, None, :]
        basis[:, :3, 3] = np.stack([channel(prefix + "location", k, 0.0) for k in range(3)], 1)
        parent = index.get(bone.get("parent") or "")
        if parent is not None and parent < i:
            pose = poses[parent] @ (np.linalg.inv(rest[parent]) @ rest[i]) @ basis
        else:
            pose = rest[i] @ basis
        poses.append(pose)
        length = float(np.linalg.norm(np.subtract(bone["tail"], bone["head"])))
        out[:, i, 0] = pose[:, :3, 3]
        out[:, i, 1] = (pose @ np.array([0.0, length, 0.0, 1.0]))[:, :3]
    return out


def foot_bones(layout: MotionLayout) -> list[int]:
    """Bones named as feet (foot, toe, ankle, heel); none on a rig without such names."""
    return [
        i
        for i, n in enumerate(layout.names)
        if any(w.startswith(("foot", "toe", "ankle", "heel")) for w in name_words(n))
    ]


def foot_slide(layout: MotionLayout, action: dict[str, Any]) -> float | None:
    """How much planted feet slip, in rig heights per frame: for each foot, over the frames its
    head is within 5% of the rig's height of its lowest, the spread (standard deviation) of its
    horizontal velocity. An in-place walk moves a planted foot back at one steady speed (a
    treadmill): 0 is a clean plant. None without foot bones."""
    feet = foot_bones(layout)
    if not feet:
        return None
    start, end = action_range(action)
    frames = np.arange(start, end + 1e-9, 1.0)
    if len(frames) < 3:
        return None
    heads = pose_points(layout, action, frames)[:, feet, 0] / layout.height
    slides = []
    for f in range(len(feet)):
        height, ground = heads[:, f, 2], heads[:, f, :2]
        velocity = np.diff(ground, axis=0)
        planted = (height[:-1] <= height.min() + 0.05) & (height[1:] <= height.min() + 0.05)
        if planted.sum() >= 2:
            slides.append(float(np.linalg.norm(velocity[planted].std(axis=0))))
    return float(np.mean(slides)) if slides else 0.0
