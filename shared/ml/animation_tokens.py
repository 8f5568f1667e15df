"""Blender actions as tokens: a lossless serialisation, and the motion layout the model writes.

Pure Python + numpy/scipy (no torch, no bpy): the trainer, the evaluation, the benchmark and the
serving code all load it.

Lossless action tokens (``encode_action`` / ``decode_action``)
    An action's F-curves, on a grid: frames in steps of FRAME_STEP, values in steps of VALUE_STEP,
    handles as offsets from their key on the same grids. ``quantize_action`` puts an action on the
    grid; ``decode_action(encode_action(a)) == quantize_action(a)`` for every action (tested on
    every action of the corpus)::

        sequence := BOS range curve* EOS
        range    := NO_RANGE | RANGE int int
        curve    := CURVE target INDEX_i group EXTRAP_e SMOOTH_s mods key* END_CURVE
        target   := TARGET_OBJECT PROP_p | TARGET_BONE int PROP_p | TARGET_PATH int
        group    := GROUP_NONE | GROUP_BONE | GROUP_OBJECT | GROUP_TABLE int
        mods     := MODS_NONE | MODS_TABLE int
        key      := KEY int int style handle handle      (frame and value: deltas from the last key)
        style    := STYLE_SAME | INTERP_i HL_TYPE_h HR_TYPE_h EASE_e
        handle   := HANDLE_NONE | HANDLE int int
        int      := DIGIT_MORE_d* DIGIT_LAST_d           (zigzag, base 64, low digits first)

    Bones are referred to by their index in the target rig's bone order, so the same tokens drive
    any rig with those bones. What no token spells (the action's name, a data path outside the
    transforms of an object or a pose bone, an F-curve group that is neither its bone nor
    "Object Transforms", F-curve modifiers) goes into the side table of strings that
    ``encode_action`` returns beside the tokens and ``decode_action`` takes back.

Motion layout (``MotionLayout``, ``MotionGrammar``) -- what the model writes
    A rig's channels: per bone (rig order) a rotation as the 3 components of the log of its pose
    quaternion (radians, rest = 0), plus a location (3 components in rig heights) for bones that
    move freely (roots and constraint targets: IK feet, poles), both in the armature's axes (a
    pose bone's own axes turn with its rest orientation and roll, which differ from rig to rig;
    in the armature's, "swing the thigh forward" is the same numbers on every upright rig); an
    object's channels: location
    offset (metres), rotation offset (radians) and scale factor. A motion is a header (LOOP or
    ONCE, a duration bin) and then, channel by channel (rig order), the value bins of its KEYS keys
    evenly spread over the duration: a channel's curve is written in one run, so its next key
    follows its last, and later channels see the curves of the earlier ones::

        motion := BOS (LOOP | ONCE) DURATION_d (BIN_v){channels * KEYS} EOS

    ``MotionLayout.to_action`` turns a motion into a scene-format action on the rig's real
    channels (pose.bones["name"].rotation_quaternion / .location, or an object's transforms);
    a LOOP's last key is its first (object spins: the first plus whole turns), so cycles close.
"""

from __future__ import annotations

import json
import math
import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.spatial.transform import Rotation

from shared.scene.models import Action

PAD, BOS, EOS = 0, 1, 2
FRAME_STEP = 1 / 64
VALUE_STEP = 1 / 4096
DIGIT_BASE = 64

PROPS = ("location", "rotation_euler", "rotation_quaternion", "rotation_axis_angle", "scale")
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
EASINGS = ("AUTO", "EASE_IN", "EASE_OUT", "EASE_IN_OUT")
EXTRAPOLATIONS = ("CONSTANT", "LINEAR")
SMOOTHINGS = ("NONE", "CONT_ACCEL")
MAX_INDEX = 32
OBJECT_GROUP = "Object Transforms"


class AnimationTokenError(ValueError):
    """An action that cannot be serialised, or a token sequence that breaks the grammar."""


class _Names:
    """Token ids by name, in a fixed order."""

    def __init__(self, names: Iterable[str]):
        self.names = list(names)
        self.ids = {n: i for i, n in enumerate(self.names)}

    def __getitem__(self, name: str) -> int:
        return self.ids[name]

    def __len__(self) -> int:
        return len(self.names)


ACTION_TOKENS = _Names(
    [
        "PAD",
        "BOS",
        "EOS",
        "NO_RANGE",
        "RANGE",
        "CURVE",
        "END_CURVE",
        "TARGET_OBJECT",
        "TARGET_BONE",
        "TARGET_PATH",
        *(f"PROP_{p}" for p in PROPS),
        *(f"INDEX_{i}" for i in range(MAX_INDEX)),
        "GROUP_NONE",
        "GROUP_BONE",
        "GROUP_OBJECT",
        "GROUP_TABLE",
        *(f"EXTRAP_{e}" for e in EXTRAPOLATIONS),
        *(f"SMOOTH_{s}" for s in SMOOTHINGS),
        "MODS_NONE",
        "MODS_TABLE",
        "KEY",
        "STYLE_SAME",
        *(f"INTERP_{i}" for i in INTERPOLATIONS),
        *(f"HL_TYPE_{h}" for h in HANDLE_TYPES),
        *(f"HR_TYPE_{h}" for h in HANDLE_TYPES),
        *(f"EASE_{e}" for e in EASINGS),
        "HANDLE_NONE",
        "HANDLE",
        *(f"DIGIT_MORE_{d}" for d in range(DIGIT_BASE)),
        *(f"DIGIT_LAST_{d}" for d in range(DIGIT_BASE)),
    ]
)
_DIGIT_MORE, _DIGIT_LAST = ACTION_TOKENS["DIGIT_MORE_0"], ACTION_TOKENS["DIGIT_LAST_0"]
_BONE_PATH = re.compile(r'^pose\.bones\["((?:[^"\\]|\\.)*)"\]\.(\w+)$')


def bone_path(bone: str, prop: str) -> str:
    """The RNA path of a pose bone's property, with the name escaped as Blender writes it."""
    escaped = bone.replace("\\", "\\\\").replace('"', '\\"')
    return f'pose.bones["{escaped}"].{prop}'


def _frame(x: float) -> int:
    return round(x / FRAME_STEP)


def _value(x: float) -> int:
    return round(x / VALUE_STEP)


def quantize_action(action: dict[str, Any]) -> dict[str, Any]:
    """The action (a scene-format dict, defaults filled) on the token grid: frames and values
    rounded, each handle its key's grid point plus its rounded offset."""
    doc = Action.model_validate(action).model_dump(mode="json")
    if doc["frame_range"] is not None:
        doc["frame_range"] = [_frame(f) * FRAME_STEP for f in doc["frame_range"]]
    for fcurve in doc["fcurves"]:
        for key in fcurve["keyframes"]:
            frame, value = key["co"]
            co = (_frame(frame), _value(value))
            key["co"] = [co[0] * FRAME_STEP, co[1] * VALUE_STEP]
            for side in ("handle_left", "handle_right"):
                if key[side] is not None:
                    dx, dy = _frame(key[side][0] - frame), _value(key[side][1] - value)
                    key[side] = [(co[0] + dx) * FRAME_STEP, (co[1] + dy) * VALUE_STEP]
    return doc


def _int_tokens(n: int) -> list[int]:
    z = 2 * n if n >= 0 else -2 * n - 1  # zigzag: small magnitudes of either sign, few digits
    out = []
    while z >= DIGIT_BASE:
        out.append(_DIGIT_MORE + z % DIGIT_BASE)
        z //= DIGIT_BASE
    return [*out, _DIGIT_LAST + z]


def _style(key: dict) -> tuple[str, str, str, str]:
    return key["interpolation"], key["handle_left_type"], key["handle_right_type"], key["easing"]


def encode_action(action: dict[str, Any], bones: Sequence[str] = ()) -> tuple[list[int], list[str]]:
    """(tokens, side table of strings) of an action for a target whose bones are ``bones``."""
    doc = quantize_action(action)
    t = ACTION_TOKENS
    table = [doc["name"], doc["id_root"]]

    def string(text: str) -> list[int]:
        if text not in table:
            table.append(text)
        return _int_tokens(table.index(text))

    bone_index = {b: i for i, b in enumerate(bones)}
    out = [BOS]
    if doc["frame_range"] is None:
        out.append(t["NO_RANGE"])
    else:
        out += [t["RANGE"], *_int_tokens(_frame(doc["frame_range"][0]))]
        out += _int_tokens(_frame(doc["frame_range"][1]))
    for fcurve in doc["fcurves"]:
        out.append(t["CURVE"])
        path, bone = fcurve["data_path"], None
        match = _BONE_PATH.match(path)
        if path in PROPS:
            out += [t["TARGET_OBJECT"], t[f"PROP_{path}"]]
        elif (
            match
            and match[2] in PROPS
            and (name := match[1].replace('\\"', '"').replace("\\\\", "\\")) in bone_index
            and bone_path(name, match[2]) == path
        ):
            bone = name
            out += [t["TARGET_BONE"], *_int_tokens(bone_index[name]), t[f"PROP_{match[2]}"]]
        else:
            out += [t["TARGET_PATH"], *string(path)]
        if fcurve["index"] >= MAX_INDEX:
            raise AnimationTokenError(f"{path}[{fcurve['index']}]: array index above {MAX_INDEX - 1}")
        out.append(t[f"INDEX_{fcurve['index']}"])
        group = fcurve["group"]
        if group is None:
            out.append(t["GROUP_NONE"])
        elif bone is not None and group == bone:
            out.append(t["GROUP_BONE"])
        elif group == OBJECT_GROUP:
            out.append(t["GROUP_OBJECT"])
        else:
            out += [t["GROUP_TABLE"], *string(group)]
        out += [t[f"EXTRAP_{fcurve['extrapolation']}"], t[f"SMOOTH_{fcurve['auto_smoothing']}"]]
        if fcurve["modifiers"]:
            out += [t["MODS_TABLE"], *string(json.dumps(fcurve["modifiers"], sort_keys=True))]
        else:
            out.append(t["MODS_NONE"])
        last_co, last_style = (0, 0), None
        for key in fcurve["keyframes"]:
            co = (_frame(key["co"][0]), _value(key["co"][1]))
            out += [t["KEY"], *_int_tokens(co[0] - last_co[0]), *_int_tokens(co[1] - last_co[1])]
            if _style(key) == last_style:
                out.append(t["STYLE_SAME"])
            else:
                interpolation, left, right, easing = _style(key)
                out += [t[f"INTERP_{interpolation}"], t[f"HL_TYPE_{left}"], t[f"HR_TYPE_{right}"]]
                out.append(t[f"EASE_{easing}"])
            for side in ("handle_left", "handle_right"):
                if key[side] is None:
                    out.append(t["HANDLE_NONE"])
                else:
                    out += [t["HANDLE"], *_int_tokens(_frame(key[side][0]) - co[0])]
                    out += _int_tokens(_value(key[side][1]) - co[1])
            last_co, last_style = co, _style(key)
        out.append(t["END_CURVE"])
    out.append(EOS)
    return out, table


class _Reader:
    def __init__(self, tokens: Sequence[int]):
        self.tokens, self.at = list(tokens), 0

    def next(self) -> str:
        if self.at >= len(self.tokens):
            raise AnimationTokenError("the token sequence ends inside an action")
        token = self.tokens[self.at]
        self.at += 1
        if not 0 <= token < len(ACTION_TOKENS):
            raise AnimationTokenError(f"token {token} is outside the vocabulary")
        return ACTION_TOKENS.names[token]

    def expect(self, prefix: str) -> str:
        """The next token's name after ``prefix`` (e.g. "INTERP_" -> "BEZIER")."""
        name = self.next()
        if not name.startswith(prefix):
            raise AnimationTokenError(f"expected {prefix}... at token {self.at - 1}, got {name}")
        return name[len(prefix) :]

    def integer(self) -> int:
        z, scale = 0, 1
        while True:
            name = self.next()
            if not name.startswith("DIGIT_"):
                raise AnimationTokenError(f"expected a digit at token {self.at - 1}, got {name}")
            z += int(name.rsplit("_", 1)[1]) * scale
            scale *= DIGIT_BASE
            if name.startswith("DIGIT_LAST_"):
                return z // 2 if z % 2 == 0 else -(z + 1) // 2


def decode_action(tokens: Sequence[int], table: Sequence[str], bones: Sequence[str] = ()) -> dict[str, Any]:
    """The scene-format action dict of ``encode_action``'s tokens and side table."""
    r = _Reader(tokens)

    def lookup(index: int, what: str) -> str:
        if not 0 <= index < len(table):
            raise AnimationTokenError(f"{what} {index} is not in the side table ({len(table)} strings)")
        return table[index]

    if r.next() != "BOS":
        raise AnimationTokenError("an action starts with BOS")
    doc: dict[str, Any] = {"name": lookup(0, "name"), "id_root": lookup(1, "id_root"), "fcurves": []}
    head = r.next()
    if head == "RANGE":
        doc["frame_range"] = [r.integer() * FRAME_STEP, r.integer() * FRAME_STEP]
    elif head == "NO_RANGE":
        doc["frame_range"] = None
    else:
        raise AnimationTokenError(f"expected RANGE or NO_RANGE, got {head}")
    while (name := r.next()) == "CURVE":
        target, bone = r.expect("TARGET_"), None
        if target == "OBJECT":
            path = r.expect("PROP_")
        elif target == "BONE":
            index = r.integer()
            if not 0 <= index < len(bones):
                raise AnimationTokenError(f"bone {index} is not in the rig ({len(bones)} bones)")
            bone = bones[index]
            path = bone_path(bone, r.expect("PROP_"))
        else:
            path = lookup(r.integer(), "data path")
        fcurve: dict[str, Any] = {"data_path": path, "index": int(r.expect("INDEX_"))}
        group = r.expect("GROUP_")
        if group == "BONE" and bone is None:
            raise AnimationTokenError("GROUP_BONE on a curve that targets no bone")
        fcurve["group"] = {"NONE": None, "BONE": bone, "OBJECT": OBJECT_GROUP}.get(group)
        if group == "TABLE":
            fcurve["group"] = lookup(r.integer(), "group")
        fcurve["extrapolation"] = r.expect("EXTRAP_")
        fcurve["auto_smoothing"] = r.expect("SMOOTH_")
        mods = r.expect("MODS_")
        fcurve["modifiers"] = json.loads(lookup(r.integer(), "modifiers")) if mods == "TABLE" else []
        fcurve["keyframes"] = keys = []
        co, style = (0, 0), None
        while (name := r.next()) == "KEY":
            co = (co[0] + r.integer(), co[1] + r.integer())
            first = r.next()
            if first == "STYLE_SAME":
                if style is None:
                    raise AnimationTokenError("STYLE_SAME on a curve's first key")
            elif first.startswith("INTERP_"):
                style = (first[7:], r.expect("HL_TYPE_"), r.expect("HR_TYPE_"), r.expect("EASE_"))
            else:
                raise AnimationTokenError(f"expected a key style, got {first}")
            key: dict[str, Any] = {"co": [co[0] * FRAME_STEP, co[1] * VALUE_STEP]}
            key.update(
                zip(("interpolation", "handle_left_type", "handle_right_type", "easing"), style, strict=True)
            )
            for side in ("handle_left", "handle_right"):
                kind = r.expect("HANDLE")
                if kind == "_NONE":
                    key[side] = None
                elif kind == "":
                    dx, dy = r.integer(), r.integer()
                    key[side] = [(co[0] + dx) * FRAME_STEP, (co[1] + dy) * VALUE_STEP]
                else:
                    raise AnimationTokenError(f"expected a handle, got HANDLE{kind}")
            keys.append(key)
        if name != "END_CURVE":
            raise AnimationTokenError(f"expected KEY or END_CURVE, got {name}")
        doc["fcurves"].append(fcurve)
    if name != "EOS":
        raise AnimationTokenError(f"expected CURVE or EOS, got {name}")
    if r.at != len(r.tokens):
        raise AnimationTokenError(f"{len(r.tokens) - r.at} tokens after EOS")
    return Action.model_validate(doc).model_dump(mode="json")


# ---- F-curve evaluation -------------------------------------------------------------------------


def _bezier_segment(p0, p1, p2, p3, frames: np.ndarray) -> np.ndarray:
    """Values at ``frames`` of the cubic Bezier (p0, p1, p2, p3) (each (frame, value)), its handles'
    frames clamped into the segment as Blender corrects them, solved for frame by bisection."""
    x0, x3 = p0[0], p3[0]
    x1, x2 = min(max(p1[0], x0), x3), min(max(p2[0], x0), x3)
    lo, hi = np.zeros_like(frames), np.ones_like(frames)
    for _ in range(30):
        mid = (lo + hi) / 2
        u = 1 - mid
        x = u**3 * x0 + 3 * u * u * mid * x1 + 3 * u * mid * mid * x2 + mid**3 * x3
        below = x < frames
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    s = (lo + hi) / 2
    u = 1 - s
    return u**3 * p0[1] + 3 * u * u * s * p1[1] + 3 * u * s * s * p2[1] + s**3 * p3[1]


def evaluate_fcurve(fcurve: dict[str, Any], frames: Sequence[float] | np.ndarray) -> np.ndarray:
    """The curve's values at ``frames``: CONSTANT, LINEAR and BEZIER segments as Blender draws
    them; the easing interpolations (SINE, BOUNCE...) are taken as LINEAR. Extrapolation CONSTANT or
    LINEAR (along the end segment's slope or handle)."""
    frames = np.asarray(frames, dtype=np.float64)
    keys = sorted(fcurve.get("keyframes") or [], key=lambda k: k["co"][0])
    if not keys:
        return np.zeros_like(frames)
    xs = np.array([k["co"][0] for k in keys])
    ys = np.array([k["co"][1] for k in keys])
    out = np.empty_like(frames)
    linear = fcurve.get("extrapolation", "CONSTANT") == "LINEAR"
    before, after = frames <= xs[0], frames >= xs[-1]
    out[before], out[after] = ys[0], ys[-1]
    if linear and len(keys) > 1:
        for mask, a, b in ((before, 0, 1), (after, -2, -1)):
            slope = (ys[b] - ys[a]) / max(xs[b] - xs[a], 1e-9)
            out[mask] += (frames[mask] - xs[a if a == 0 else b]) * slope
    segment = np.searchsorted(xs, frames, side="right") - 1
    for i in range(len(keys) - 1):
        mask = (segment == i) & ~before & ~after
        if not mask.any():
            continue
        key, nxt = keys[i], keys[i + 1]
        interpolation = key.get("interpolation", "BEZIER")
        f = frames[mask]
        if interpolation == "CONSTANT":
            out[mask] = ys[i]
        elif interpolation == "BEZIER" and key.get("handle_right") and nxt.get("handle_left"):
            out[mask] = _bezier_segment(key["co"], key["handle_right"], nxt["handle_left"], nxt["co"], f)
        else:
            t = (f - xs[i]) / max(xs[i + 1] - xs[i], 1e-9)
            out[mask] = ys[i] + t * (ys[i + 1] - ys[i])
    return out


# ---- rigs and the motion layout -----------------------------------------------------------------

KEYS = 9  # keys of a motion, evenly spread over its duration
VALUE_BINS = 256
MU = 16.0  # mu-law companding: fine bins near rest, coarse ones for large excursions
DURATION_BINS = np.unique(np.round(np.geomspace(4, 240, 32))).astype(int)
# Channel kinds: range of the value (in its unit) that the bins cover.
KIND_RANGE = {
    "rot": math.pi,  # a pose bone's rotation: log of its quaternion, radians
    "loc": 2.0,  # a pose bone's location, rig heights
    "obj_loc": 4.0,  # an object's location offset, metres
    "obj_rot": 4 * math.pi,  # an object's Euler rotation offset, radians (two turns)
    "obj_scale": 1.0,  # an object's scale factor minus one
}
KINDS = tuple(KIND_RANGE)
MOTION_TOKENS = _Names(
    ["PAD", "BOS", "EOS", "LOOP", "ONCE"]
    + [f"DURATION_{d}" for d in DURATION_BINS]
    + [f"BIN_{v}" for v in range(VALUE_BINS)]
)
_LOOP, _ONCE = MOTION_TOKENS["LOOP"], MOTION_TOKENS["ONCE"]
_DURATION0, _BIN0 = MOTION_TOKENS[f"DURATION_{DURATION_BINS[0]}"], MOTION_TOKENS["BIN_0"]
_WORDS = {
    "leg": ("leg", "thigh", "shin", "knee", "calf"),
    "foot": ("foot", "toe", "ankle", "heel"),
    "arm": ("arm", "shoulder", "elbow", "forearm", "clavicle"),
    "hand": ("hand", "palm", "finger", "wrist", "thumb"),
    "spine": ("spine", "torso", "chest", "abdomen", "body", "hips", "hip", "pelvis", "belly"),
    "head": ("head", "neck", "jaw", "ear", "eye", "mouth"),
    "tail": ("tail",),
    "wing": ("wing", "feather"),
    "fin": ("fin", "fish"),
    "control": ("ik", "pole", "target", "control", "ctrl"),
    "root": ("root", "master", "armature"),
}
BONE_FEATURES = 16 + len(_WORDS) + 3


def name_words(name: str) -> list[str]:
    """Lower-case words of a bone name: "UpperArm.L" -> ["upper", "arm", "l"]."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name)
    return [w for w in re.split(r"[^a-zA-Z]+", spaced.lower()) if w]


def bone_side(name: str, head_x: float) -> float:
    """+1 left, -1 right, 0 centre: from the name (.L, _R, Left...) or else the side of the head."""
    words = name_words(name)
    if words and words[-1] in ("l", "left") or "left" in words:
        return 1.0
    if words and words[-1] in ("r", "right") or "right" in words:
        return -1.0
    return float(np.sign(round(head_x, 3)))


def motion_label(text: str) -> str | None:
    """The motion a prompt or an action name asks for (walk, run, spin...), or None."""
    words = " ".join(name_words(text))
    for label, stems in MOTION_WORDS.items():
        if any(re.search(rf"\b{stem}", words) for stem in stems):
            return label
    return None


MOTION_WORDS = {
    "walk": ("walk",),
    "run": ("run", "sprint", "gallop", "jog"),
    "idle": ("idle", "breath", "stand"),
    "attack": ("attack", "punch", "kick", "slash", "bite", "hit", "shoot", "sword", "strike"),
    "jump": ("jump", "hop", "leap"),
    "death": ("death", "die", "dead", "dying", "fall"),
    "wave": ("wave", "waving", "greet"),
    "swim": ("swim",),
    "fly": ("fly", "flap", "flying"),
    "spin": ("spin", "rotat", "turn", "twirl"),
    "bounce": ("bounc",),
    "hover": ("hover", "float", "bob"),
    "sway": ("sway", "wobbl", "rock", "swing"),
    "open": ("open", "close", "door", "lid"),
}
CYCLIC_MOTIONS = {"walk", "run", "idle", "swim", "fly", "spin", "bounce", "hover", "sway"}


def bone_rest_matrix(head, tail, roll: float) -> np.ndarray:
    """A bone's 4x4 rest matrix in armature space, as Blender's vec_roll_to_mat3 makes it."""
    vector = np.asarray(tail, dtype=np.float64) - np.asarray(head, dtype=np.float64)
    norm = np.linalg.norm(vector)
    x, y, z = vector / norm if norm > 1e-12 else (0.0, 1.0, 0.0)
    theta, theta_alt = 1 + y, x * x + z * z
    if theta > 6.1e-3 or theta_alt > 2.5e-4**2:
        if theta <= 6.1e-3:
            theta = theta_alt * 0.5 + theta_alt * theta_alt * 0.125
        columns = [
            [1 - x * x / theta, -x, -x * z / theta],
            [x, y, z],
            [-x * z / theta, -z, 1 - z * z / theta],
        ]
        b = np.array(columns).T  # Blender's matrices are column-major
    else:
        b = np.diag([-1.0, -1.0, 1.0])
    out = np.eye(4)
    out[:3, :3] = Rotation.from_rotvec(np.array([x, y, z]) * roll).as_matrix() @ b
    out[:3, 3] = head
    return out


def _compand(x: np.ndarray, limit: np.ndarray) -> np.ndarray:
    y = np.clip(x / limit, -1, 1)
    return np.sign(y) * np.log1p(MU * np.abs(y)) / math.log1p(MU)


def value_bins(values: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """Bin indices (0 .. VALUE_BINS-1) of (..., C) values, column c in units of kinds[c]."""
    limits = np.array([KIND_RANGE[k] for k in kinds])
    y = _compand(np.asarray(values, dtype=np.float64), limits)
    return np.clip(np.round((y + 1) / 2 * (VALUE_BINS - 1)), 0, VALUE_BINS - 1).astype(np.int64)


def bin_values(bins: np.ndarray, kinds: Sequence[str]) -> np.ndarray:
    """The values at the centres of ``value_bins``' bins."""
    limits = np.array([KIND_RANGE[k] for k in kinds])
    y = np.asarray(bins, dtype=np.float64) / (VALUE_BINS - 1) * 2 - 1
    return np.sign(y) * np.expm1(np.abs(y) * math.log1p(MU)) / MU * limits


def duration_bin(frames: float) -> int:
    return int(np.abs(np.log(DURATION_BINS) - math.log(max(frames, 1.0))).argmin())


@dataclass
class Motion:
    """What the model writes: LOOP or not, a duration in frames, values (KEYS, channels)."""

    loop: bool
    duration: float
    values: np.ndarray


@dataclass(frozen=True)
class Channel:
    group: int  # the bone's index in rig order (0 for an object)
    kind: str  # one of KINDS
    axis: int


class MotionLayout:
    """The channels a motion has on one target: a rig's bones (rig order) or an object."""

    def __init__(self, armature: dict[str, Any] | None = None):
        bones = list((armature or {}).get("bones") or [])
        self.bones = bones
        self.names = [b["name"] for b in bones]
        if len(set(self.names)) != len(self.names):
            raise AnimationTokenError("the rig has two bones of the same name")
        if bones:
            points = np.array([b["head"] for b in bones] + [b["tail"] for b in bones], dtype=np.float64)
            self.centre = (points.max(0) + points.min(0)) / 2
            self.height = max(float(np.ptp(points, axis=0).max()), 1e-3)
            self.mobile = self._mobile_bones()
            self.channels = [
                Channel(i, kind, axis)
                for i in range(len(bones))
                for kind in (("rot", "loc") if i in self.mobile else ("rot",))
                for axis in range(3)
            ]
            # Per (rotation or location) triple of channels, its bone's rest axes in the armature.
            rest = [bone_rest_matrix(b["head"], b["tail"], b.get("roll", 0.0))[:3, :3] for b in bones]
            self.triple_axes = np.stack([rest[c.group] for c in self.channels[::3]])
        else:
            self.centre, self.height, self.mobile = np.zeros(3), 1.0, set()
            self.channels = [Channel(0, k, a) for k in ("obj_loc", "obj_rot", "obj_scale") for a in range(3)]
        self.kinds = [c.kind for c in self.channels]

    @property
    def is_rig(self) -> bool:
        return bool(self.bones)

    def _mobile_bones(self) -> set[int]:
        """Bones that translate: roots, unconnected children of roots, and constraint targets."""
        index = {n: i for i, n in enumerate(self.names)}
        mobile = set()
        for i, bone in enumerate(self.bones):
            parent = bone.get("parent")
            root = parent is None or parent not in index
            if root or not bone.get("use_connect") and self.bones[index[parent]].get("parent") is None:
                mobile.add(i)
            for constraint in bone.get("constraints") or []:
                for key in ("subtarget", "pole_subtarget"):
                    target = (constraint.get("params") or {}).get(key)
                    if isinstance(target, str) and target in index:
                        mobile.add(index[target])
        return mobile

    def depths(self) -> list[int]:
        index = {n: i for i, n in enumerate(self.names)}
        out = []
        for bone in self.bones:
            depth, parent = 0, bone.get("parent")
            while parent in index and depth < len(self.bones):
                depth, parent = depth + 1, self.bones[index[parent]].get("parent")
            out.append(depth)
        return out

    def features(self) -> np.ndarray:
        """(groups, BONE_FEATURES) float32: what the model knows of each bone (an object: zeros
        but its flag), so that its output fits the rig it is given."""
        if not self.bones:
            out = np.zeros((1, BONE_FEATURES), np.float32)
            out[0, -1] = 1.0
            return out
        index = {n: i for i, n in enumerate(self.names)}
        depths = self.depths()
        children = [0] * len(self.bones)
        for bone in self.bones:
            if bone.get("parent") in index:
                children[index[bone["parent"]]] += 1
        n = len(self.bones)
        rows = []
        for i, bone in enumerate(self.bones):
            head = (np.array(bone["head"]) - self.centre) / self.height
            tail = (np.array(bone["tail"]) - self.centre) / self.height
            vector = tail - head
            length = float(np.linalg.norm(vector))
            parent = index.get(bone.get("parent") or "", -1)
            words = set(name_words(bone["name"]))
            flags = [
                float(any(w.startswith(s) or s in w for w in words for s in stems))
                for stems in _WORDS.values()
            ]
            rows.append(
                [
                    depths[i] / 8,
                    float(parent < 0),
                    float(bool(bone.get("use_connect"))),
                    children[i] / 4,
                    (parent + 1) / n,
                    (i + 1) / n,
                    *head,
                    *tail,
                    length,
                    math.sin(bone.get("roll", 0.0)),
                    math.cos(bone.get("roll", 0.0)),
                    bone_side(bone["name"], float(bone["head"][0])),
                    *flags,
                    float(i in self.mobile),
                    float(bool(bone.get("constraints"))),
                    0.0,
                ]
            )
        return np.array(rows, np.float32)

    # -- from an action to a motion and back ----------------------------------------------------

    def sample(self, action: dict[str, Any], frames: np.ndarray) -> np.ndarray:
        """(len(frames), channels) values of an action on this layout's channels: absent curves
        stay at rest; bone rotations from quaternion or Euler (XYZ) curves."""
        curves = {(f["data_path"], f["index"]): f for f in action.get("fcurves", [])}

        def curve(path: str, index: int, rest: float) -> np.ndarray:
            found = curves.get((path, index))
            return evaluate_fcurve(found, frames) if found else np.full(len(frames), rest)

        def rotation(prefix: str) -> np.ndarray:
            """(F, 4) scalar-last quaternions from quaternion curves, or Euler curves, or rest."""
            if any((prefix + "rotation_quaternion", i) in curves for i in range(4)):
                wxyz = np.stack(
                    [curve(prefix + "rotation_quaternion", i, float(i == 0)) for i in range(4)], 1
                )
                wxyz[np.linalg.norm(wxyz, axis=1) < 1e-9] = (1, 0, 0, 0)
                return np.roll(wxyz, -1, axis=1)
            euler = np.stack([curve(prefix + "rotation_euler", i, 0.0) for i in range(3)], 1)
            return Rotation.from_euler("xyz", euler).as_quat()

        out = np.zeros((len(frames), len(self.channels)))
        if not self.bones:
            location = np.stack([curve("location", i, 0.0) for i in range(3)], 1)
            if any(("rotation_euler", i) in curves for i in range(3)):
                euler = np.stack([curve("rotation_euler", i, 0.0) for i in range(3)], 1)
            else:
                with warnings.catch_warnings():  # gimbal lock: any of the equivalent angles will do
                    warnings.simplefilter("ignore", UserWarning)
                    euler = Rotation.from_quat(rotation("")).as_euler("xyz")
                euler = np.unwrap(euler, axis=0)
            scale = np.stack([curve("scale", i, 1.0) for i in range(3)], 1)
            base_scale = np.where(np.abs(scale[0]) < 1e-6, 1.0, scale[0])
            return np.concatenate([location - location[0], euler - euler[0], scale / base_scale - 1], 1)
        logs = {}
        for c, channel in enumerate(self.channels):
            prefix = bone_path(self.names[channel.group], "")
            if channel.kind == "rot":
                if channel.group not in logs:
                    logs[channel.group] = Rotation.from_quat(rotation(prefix)).as_rotvec()
                out[:, c] = logs[channel.group][:, channel.axis]
            else:
                out[:, c] = curve(prefix + "location", channel.axis, 0.0) / self.height
        return out

    def armature_axes(self, values: np.ndarray, inverse: bool = False) -> np.ndarray:
        """(..., channels) bone values (``sample``'s, in each bone's own axes) in the armature's
        axes, as the model writes them; ``inverse``: back. An object's values are returned as they are."""
        if not self.bones:
            return values
        triples = np.asarray(values, dtype=np.float64).reshape(*np.shape(values)[:-1], -1, 3)
        # A bone-axes vector v is R v in the armature's (R: the bone's rest axes); rows: v R^T.
        turned = np.einsum(
            "...tj,tij->...ti" if not inverse else "...tj,tji->...ti", triples, self.triple_axes
        )
        return turned.reshape(np.shape(values))

    def motion_values(self, action: dict[str, Any], frames: np.ndarray) -> np.ndarray:
        """(len(frames), channels) values of an action as the model writes them."""
        return self.armature_axes(self.sample(action, frames))

    def motion_from_action(self, action: dict[str, Any], loop: bool | None = None) -> Motion:
        """The action as a motion: KEYS samples over its frame range (or its keys' extent);
        ``loop`` None: a loop when its first and last poses agree."""
        start, end = action_range(action)
        duration = max(end - start, 1.0)
        frames = start + np.linspace(0, duration, KEYS)
        values = self.motion_values(action, frames)
        if loop is None:
            limits = np.array([KIND_RANGE[k] for k in self.kinds])
            loop = bool(np.abs(values[-1] - values[0]).max(initial=0) <= 0.02 * limits.max())
        return Motion(loop, duration, values)

    def encode(self, motion: Motion) -> list[int]:
        bins = value_bins(motion.values, self.kinds)
        return [
            BOS,
            _LOOP if motion.loop else _ONCE,
            _DURATION0 + duration_bin(motion.duration),
            *(_BIN0 + bins.T.reshape(-1)).tolist(),
            EOS,
        ]

    def sequence_length(self) -> int:
        return 4 + KEYS * len(self.channels)

    def decode(self, tokens: Sequence[int]) -> Motion:
        grammar = MotionGrammar(self)
        for token in tokens[1:]:
            grammar.feed(token)
        return grammar.motion()

    def to_action(
        self,
        motion: Motion,
        name: str = "Action",
        frame_start: float = 1.0,
        base: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """A scene-format action with real F-curves on this layout's channels. ``base``: the
        object's transform (location, rotation_euler, scale) that an object motion moves from."""
        values = self.armature_axes(np.array(motion.values, dtype=np.float64), inverse=True)
        if not self.bones:  # an object's motion starts where the object stands
            values[:, :6] -= values[0, :6]
            values[:, 6:] = (1 + values[:, 6:]) / np.maximum(1 + values[0, 6:], 1e-3) - 1
        if motion.loop:  # a cycle ends where it began (a spin: whole turns further on)
            turns = np.zeros(values.shape[1])
            spins = np.array([k == "obj_rot" for k in self.kinds])
            turns[spins] = np.round((values[-1, spins] - values[0, spins]) / (2 * math.pi)) * 2 * math.pi
            values[-1] = values[0] + turns
        frames = frame_start + np.round(np.linspace(0, motion.duration, KEYS), 3)
        curves: list[tuple[str, int, str | None, np.ndarray]] = []
        if not self.bones:
            base = base or {}
            location = np.array(base.get("location", (0, 0, 0)), dtype=np.float64)
            euler = np.array(base.get("rotation_euler", (0, 0, 0)), dtype=np.float64)
            scale = np.array(base.get("scale", (1, 1, 1)), dtype=np.float64)
            blocks = (location + values[:, 0:3], euler + values[:, 3:6], scale * (1 + values[:, 6:9]))
            for prop, block in zip(("location", "rotation_euler", "scale"), blocks, strict=True):
                curves += [(prop, i, OBJECT_GROUP, block[:, i]) for i in range(3)]
        else:
            for group, bone in enumerate(self.names):
                columns = [c for c, ch in enumerate(self.channels) if ch.group == group]
                rot = [c for c in columns if self.channels[c].kind == "rot"]
                quat = np.roll(Rotation.from_rotvec(values[:, rot]).as_quat(), 1, axis=1)  # wxyz
                for k in range(1, len(quat)):  # the shorter way between keys
                    if np.dot(quat[k], quat[k - 1]) < 0:
                        quat[k] = -quat[k]
                if motion.loop:
                    quat[-1] = quat[0]
                curves += [(bone_path(bone, "rotation_quaternion"), i, bone, quat[:, i]) for i in range(4)]
                loc = [c for c in columns if self.channels[c].kind == "loc"]
                if loc and np.abs(values[:, loc]).max() > 1e-4:
                    block = values[:, loc] * self.height
                    curves += [(bone_path(bone, "location"), i, bone, block[:, i]) for i in range(3)]
        fcurves = [
            {
                "data_path": path,
                "index": index,
                "group": group,
                "keyframes": keyframes(frames, column, motion.loop),
            }
            for path, index, group, column in curves
        ]
        end = float(frames[-1])
        return {
            "name": name,
            "fcurves": fcurves,
            "frame_range": [float(frame_start), end],
            "id_root": "OBJECT",
        }


def action_range(action: dict[str, Any]) -> tuple[float, float]:
    """(start, end) frames: the action's frame range, else the extent of its keys."""
    if action.get("frame_range"):
        start, end = action["frame_range"]
        if end > start:
            return float(start), float(end)
    frames = [k["co"][0] for f in action.get("fcurves", []) for k in f.get("keyframes", [])]
    return (float(min(frames)), float(max(frames))) if frames else (0.0, 1.0)


def keyframes(frames: np.ndarray, values: np.ndarray, loop: bool) -> list[dict[str, Any]]:
    """Bezier keys with explicit ALIGNED handles a third of the way to each neighbour: the slope
    through the neighbours, flat at a turning point; a loop's ends share one slope, a one-shot's
    are flat. Explicit handles keep what Blender draws equal to what evaluate_fcurve computes."""
    n = len(frames)
    slopes = np.zeros(n)
    for i in range(1, n - 1):
        before, after = values[i] - values[i - 1], values[i + 1] - values[i]
        if before * after > 0:
            slopes[i] = (values[i + 1] - values[i - 1]) / (frames[i + 1] - frames[i - 1])
    if loop and n > 2:
        slopes[0] = slopes[-1] = ((values[1] - values[0]) + (values[-1] - values[-2])) / (
            frames[1] - frames[0] + frames[-1] - frames[-2]
        )
    out = []
    for i in range(n):
        left = (frames[i] - frames[i - 1]) / 3 if i > 0 else (frames[1] - frames[0]) / 3
        right = (frames[i + 1] - frames[i]) / 3 if i < n - 1 else left
        out.append(
            {
                "co": [round(float(frames[i]), 4), round(float(values[i]), 6)],
                "interpolation": "BEZIER",
                "handle_left": [
                    round(float(frames[i] - left), 4),
                    round(float(values[i] - slopes[i] * left), 6),
                ],
                "handle_right": [
                    round(float(frames[i] + right), 4),
                    round(float(values[i] + slopes[i] * right), 6),
                ],
                "handle_left_type": "ALIGNED",
                "handle_right_type": "ALIGNED",
            }
        )
    return out


class MotionGrammar:
    """Decoder of motion tokens for one layout: ``allowed_mask`` says what may come next (a
    header, then exactly channels x KEYS value bins, then EOS), ``feed`` takes a token. ``loop``
    True or False fixes the header's LOOP or ONCE (a prompt that asks for a cycle gets one).
    What may come at a position never depends on the tokens before it: ``position_masks`` gives
    every position's mask at once, for a decoder to look up by step."""

    def __init__(self, layout: MotionLayout, loop: bool | None = None):
        self.layout = layout
        self.tokens: list[int] = []
        self.length = layout.sequence_length() - 1  # after BOS
        self.done = False
        masks = np.zeros((4, len(MOTION_TOKENS)), dtype=bool)
        masks[0, [_LOOP, _ONCE] if loop is None else [_LOOP if loop else _ONCE]] = True
        masks[1, _DURATION0 : _DURATION0 + len(DURATION_BINS)] = True
        masks[2, _BIN0 : _BIN0 + VALUE_BINS] = True
        masks[3, EOS] = True
        kinds = np.minimum(np.arange(self.length), 2)  # which mask after each count of tokens
        kinds[-1] = 3
        self._masks, self._kinds = masks, kinds

    def position_masks(self) -> np.ndarray:
        """(positions after BOS, vocabulary) bool: row k is ``allowed_mask`` after k tokens."""
        return self._masks[self._kinds]

    def allowed_mask(self) -> np.ndarray:
        if self.done:
            return np.zeros(len(MOTION_TOKENS), dtype=bool)
        return self._masks[self._kinds[len(self.tokens)]]

    def feed(self, token: int) -> None:
        if not self.allowed_mask()[token]:
            raise AnimationTokenError(f"token {token} is not allowed at position {len(self.tokens) + 1}")
        self.tokens.append(token)
        self.done = token == EOS

    def motion(self) -> Motion:
        if not self.done:
            raise AnimationTokenError("the motion is not finished")
        bins = np.array(self.tokens[2:-1]) - _BIN0
        values = bin_values(bins.reshape(len(self.layout.channels), KEYS).T, self.layout.kinds)
        duration = float(DURATION_BINS[self.tokens[1] - _DURATION0])
        return Motion(self.tokens[0] == _LOOP, duration, values)
