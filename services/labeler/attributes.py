"""Attributes read from the data (not the names) and the captions built from them."""

from __future__ import annotations

import colorsys
from collections import Counter
from typing import Any

from shared.colour_names import PALETTE

SIZE_CLASSES = ((0.1, "tiny"), (0.5, "small"), (2.0, "medium"), (10.0, "large"), (float("inf"), "huge"))


def colour_name(rgba: list[float] | tuple[float, ...]) -> str:
    """Nearest palette name, compared in a perceptual-ish space (gamma-encoded HSV)."""
    rgb = [max(0.0, min(1.0, c)) ** (1 / 2.2) for c in rgba[:3]]
    h, s, v = colorsys.rgb_to_hsv(*rgb)
    if v < 0.12:
        return "black"
    if s < 0.12:
        return "white" if v > 0.8 else "grey"

    def distance(ref: tuple[float, float, float]) -> float:
        rh, rs, rv = colorsys.rgb_to_hsv(*[c ** (1 / 2.2) for c in ref])
        dh = min(abs(h - rh), 1 - abs(h - rh))
        return 4 * dh * dh + (s - rs) ** 2 + (v - rv) ** 2 if rs > 0.12 else 9.0

    return min(PALETTE, key=lambda n: distance(PALETTE[n]))


def dominant_colours(obj: dict[str, Any], materials: dict[str, dict[str, Any]], limit: int = 2) -> list[str]:
    """Colour words of the object's materials, weighted by how many faces use each slot."""
    mesh = obj.get("evaluated_mesh") or obj.get("mesh") or {}
    slots = obj.get("material_slots") or []
    indices = mesh.get("material_indices") or [0] * len(mesh.get("faces") or [])
    weights: Counter[str] = Counter()
    for slot, faces in Counter(indices).items():
        name = slots[slot] if 0 <= slot < len(slots) else None
        material = materials.get(name) if name else None
        if material is None:
            continue
        pbr = material.get("pbr") or {}
        textured = "base_color" in (pbr.get("textures") or {})
        if not textured:
            weights[
                colour_name(pbr.get("base_color") or material.get("diffuse_color") or (0.8, 0.8, 0.8))
            ] += faces
    total = sum(weights.values())
    # Deterministic order: by share, then by name.
    ranked = sorted(weights.items(), key=lambda kv: (-kv[1], kv[0]))
    return [name for name, n in ranked[:limit] if total and n / total >= 0.15]


def size_class(diagonal: float) -> str:
    return next(name for bound, name in SIZE_CLASSES if diagonal < bound)


def captions(
    noun: str,
    category: str,
    *,
    colours: list[str],
    size: str | None,
    low_poly: bool,
    animated: bool,
    symmetric: bool,
    modifiers: list[str],
) -> list[str]:
    """A few phrasings, from the bare noun to one with every attribute, all lower case."""
    noun = noun or category
    colour = " and ".join(colours)
    style = "low-poly" if low_poly else "detailed"
    out = [noun, f"a {style} {noun}"]
    described = " ".join(w for w in (size, colour, noun) if w)
    out.append(f"a {described}, {category}")
    extras = [w for w, on in (("animated", animated), ("symmetric", symmetric)) if on]
    if extras:
        out.append(f"{' '.join(extras)} {style} {noun}")
    if modifiers:
        out.append(f"{noun} built with {', '.join(m.lower().replace('_', ' ') for m in modifiers)} modifiers")
    out.append(f"3d model of a {noun} ({category})")
    return list(dict.fromkeys(out))  # unique, first phrasing first
