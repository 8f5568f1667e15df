"""Modifier stacks <-> slots and tokens: the modifier model's serialisation and its grammar.

A stack is read as one slot per supported type, in the canonical order TYPES (each type at most
once, the order artists use most: mirror the half, thicken, repeat, round the edges, smooth);
each present slot carries its parameters quantised to a class. ``encode`` writes the slots as a
token sequence (type token, then its parameter tokens); ``decode`` reads a sequence back, and
``from_slots`` turns classes into scene-format modifier dicts. Every class of every head maps to a
valid Blender parameter value, so whatever a model predicts decodes to a stack Blender accepts.

Lengths (thickness, bevel width, a constant array step) are quantised as shares of the mesh's
bounding-box diagonal on log grids, so one class means the same on a bolt and on a house.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

TYPES = ("MIRROR", "SOLIDIFY", "ARRAY", "BEVEL", "SUBSURF")
MIRROR_AXES = tuple(tuple(bool(mask >> a & 1) for a in range(3)) for mask in range(1, 8))
ARRAY_COUNTS = (2, 3, 4, 5, 6, 7, 8, 10, 12, 16, 24, 32, 48, 64)
ARRAY_DIRECTIONS = ("+X", "-X", "+Y", "-Y", "+Z", "-Z")
ARRAY_RELATIVE_STEPS = tuple(float(x) for x in np.round(np.geomspace(0.25, 16.0, 19), 3))
SHARE_OF_DIAGONAL = tuple(float(x) for x in np.geomspace(1e-3, 0.5, 16))
SOLIDIFY_OFFSETS = (-1.0, 0.0, 1.0)
BEVEL_SEGMENTS = (1, 2, 3, 4, 6, 8)
SUBSURF_LEVELS = (1, 2, 3)

# Parameter heads: name -> number of classes. A head is read only when its type is present.
HEADS: dict[str, int] = {
    "mirror_axes": len(MIRROR_AXES),
    "solidify_thickness": len(SHARE_OF_DIAGONAL),
    "solidify_offset": len(SOLIDIFY_OFFSETS),
    "array_count": len(ARRAY_COUNTS),
    "array_direction": len(ARRAY_DIRECTIONS),
    "array_relative": 2,
    "array_step": max(len(ARRAY_RELATIVE_STEPS), len(SHARE_OF_DIAGONAL)),
    "bevel_width": len(SHARE_OF_DIAGONAL),
    "bevel_segments": len(BEVEL_SEGMENTS),
    "subsurf_levels": len(SUBSURF_LEVELS),
}
HEAD_TYPE = {name: name.split("_")[0].upper() for name in HEADS}

# Tokens: PAD, BOS, EOS, one per type, then each head's classes.
SPECIAL = ("<pad>", "<bos>", "<eos>")
TYPE_TOKEN = {t: len(SPECIAL) + k for k, t in enumerate(TYPES)}
HEAD_OFFSET: dict[str, int] = {}
_next = len(SPECIAL) + len(TYPES)
for _name, _size in HEADS.items():
    HEAD_OFFSET[_name] = _next
    _next += _size
VOCAB_SIZE = _next
TYPE_HEADS = {t: [h for h in HEADS if HEAD_TYPE[h] == t] for t in TYPES}


class StackTokenError(ValueError):
    """A token sequence that breaks the grammar."""


@dataclass
class Slots:
    """Which types are present and, per parameter head, its class (None where the type is absent)."""

    present: dict[str, bool]
    classes: dict[str, int | None]

    def types(self) -> list[str]:
        return [t for t in TYPES if self.present[t]]


def _nearest(grid: tuple[float, ...], value: float, log: bool = True) -> int:
    values = np.asarray(grid)
    if log:
        return int(np.argmin(np.abs(np.log(values) - np.log(max(abs(value), 1e-12)))))
    return int(np.argmin(np.abs(values - value)))


def supported(stack: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The stack's modifiers of a supported type, first of each type only."""
    seen: set[str] = set()
    out = []
    for m in stack:
        if m["type"] in TYPES and m["type"] not in seen:
            seen.add(m["type"])
            out.append(m)
    return out


def canonical_types(stack: list[dict[str, Any]]) -> list[str]:
    """The ordered types a stack is compared by: every type (supported or not) in stack order."""
    return [m["type"] for m in stack]


def to_slots(stack: list[dict[str, Any]], diagonal: float) -> Slots:
    present = dict.fromkeys(TYPES, False)
    classes: dict[str, int | None] = dict.fromkeys(HEADS)
    diagonal = diagonal or 1.0
    for m in supported(stack):
        kind, p = m["type"], m.get("params", {})
        present[kind] = True
        if kind == "MIRROR":
            axes = tuple(bool(a) for a in (list(p.get("use_axis") or [True, False, False]) + [False] * 3)[:3])
            classes["mirror_axes"] = MIRROR_AXES.index(axes) if any(axes) else 0
        elif kind == "SOLIDIFY":
            classes["solidify_thickness"] = _nearest(
                SHARE_OF_DIAGONAL, float(p.get("thickness", 0.01)) / diagonal
            )
            classes["solidify_offset"] = _nearest(SOLIDIFY_OFFSETS, float(p.get("offset", -1.0)), log=False)
        elif kind == "ARRAY":
            classes["array_count"] = _nearest(ARRAY_COUNTS, float(p.get("count", 2)))
            relative = bool(p.get("use_relative_offset", True)) or not p.get("use_constant_offset")
            step = np.asarray(
                p.get("relative_offset_displace" if relative else "constant_offset_displace") or [1.0, 0, 0],
                dtype=float,
            )
            axis = int(np.argmax(np.abs(step)))
            classes["array_direction"] = 2 * axis + int(step[axis] < 0)
            classes["array_relative"] = int(relative)
            magnitude = abs(float(step[axis]))
            classes["array_step"] = (
                _nearest(ARRAY_RELATIVE_STEPS, magnitude)
                if relative
                else _nearest(SHARE_OF_DIAGONAL, magnitude / diagonal)
            )
        elif kind == "BEVEL":
            classes["bevel_width"] = _nearest(SHARE_OF_DIAGONAL, float(p.get("width", 0.1)) / diagonal)
            classes["bevel_segments"] = _nearest(BEVEL_SEGMENTS, float(p.get("segments", 1)), log=False)
        elif kind == "SUBSURF":
            classes["subsurf_levels"] = _nearest(SUBSURF_LEVELS, float(p.get("levels", 1)), log=False)
    return Slots(present, classes)


def from_slots(slots: Slots, diagonal: float) -> list[dict[str, Any]]:
    """Scene-format modifier dicts, in TYPES order; a head left None takes its first class."""
    diagonal = diagonal or 1.0
    c = {k: (v or 0) for k, v in slots.classes.items()}
    out: list[dict[str, Any]] = []
    for kind in slots.types():
        if kind == "MIRROR":
            params: dict[str, Any] = {
                "use_axis": list(MIRROR_AXES[c["mirror_axes"]]),
                "use_clip": True,
                "use_mirror_merge": True,
                "merge_threshold": float(min(1e-3, 1e-3 * diagonal)),
            }
        elif kind == "SOLIDIFY":
            params = {
                "thickness": SHARE_OF_DIAGONAL[c["solidify_thickness"]] * diagonal,
                "offset": SOLIDIFY_OFFSETS[c["solidify_offset"]],
                "use_even_offset": True,
                "use_rim": True,
            }
        elif kind == "ARRAY":
            axis, negative = divmod(c["array_direction"], 2)
            relative = bool(c["array_relative"])
            grid = ARRAY_RELATIVE_STEPS if relative else SHARE_OF_DIAGONAL
            magnitude = grid[min(c["array_step"], len(grid) - 1)] * (1.0 if relative else diagonal)
            step = [0.0, 0.0, 0.0]
            step[axis] = -magnitude if negative else magnitude
            params = {
                "fit_type": "FIXED_COUNT",
                "count": ARRAY_COUNTS[c["array_count"]],
                "use_relative_offset": relative,
                "use_constant_offset": not relative,
                "relative_offset_displace" if relative else "constant_offset_displace": step,
                "use_merge_vertices": False,
            }
        elif kind == "BEVEL":
            params = {
                "width": SHARE_OF_DIAGONAL[c["bevel_width"]] * diagonal,
                "segments": BEVEL_SEGMENTS[c["bevel_segments"]],
                "limit_method": "ANGLE",
            }
        else:
            levels = SUBSURF_LEVELS[c["subsurf_levels"]]
            params = {"levels": levels, "render_levels": levels}
        out.append(
            {"name": kind.title() if kind != "SUBSURF" else "Subdivision", "type": kind, "params": params}
        )
    return out


def encode(slots: Slots) -> list[int]:
    tokens = [SPECIAL.index("<bos>")]
    for kind in slots.types():
        tokens.append(TYPE_TOKEN[kind])
        for head in TYPE_HEADS[kind]:
            tokens.append(HEAD_OFFSET[head] + (slots.classes[head] or 0))
    return [*tokens, SPECIAL.index("<eos>")]


def decode(tokens: list[int]) -> Slots:
    """The slots of a token sequence; StackTokenError where it breaks the grammar (types out of
    order or repeated, a parameter token missing or of the wrong head)."""
    if not tokens or tokens[0] != SPECIAL.index("<bos>") or tokens[-1] != SPECIAL.index("<eos>"):
        raise StackTokenError("a stack starts with <bos> and ends with <eos>")
    present = dict.fromkeys(TYPES, False)
    classes: dict[str, int | None] = dict.fromkeys(HEADS)
    position, last = 1, -1
    by_token = {v: k for k, v in TYPE_TOKEN.items()}
    while position < len(tokens) - 1:
        kind = by_token.get(tokens[position])
        if kind is None or TYPES.index(kind) <= last:
            raise StackTokenError(
                f"token {tokens[position]} at {position}: expected a type after {TYPES[last] if last >= 0 else '<bos>'}"
            )
        last = TYPES.index(kind)
        present[kind] = True
        position += 1
        for head in TYPE_HEADS[kind]:
            value = tokens[position] - HEAD_OFFSET[head] if position < len(tokens) - 1 else -1
            if not 0 <= value < HEADS[head]:
                raise StackTokenError(f"token at {position}: expected a {head} class")
            classes[head] = value
            position += 1
    return Slots(present, classes)
