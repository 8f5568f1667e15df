"""The colours that words name, in linear RGB (the scene format's base colours are linear, as in
Blender). One table for the labeller (which names a material's colour in its captions), the
material model's synthetic colour-word materials and the material evaluation's colour-word targets.
"""

from __future__ import annotations

# The labeller names a colour by the nearest of these hues (services/labeler/attributes.py).
PALETTE: dict[str, tuple[float, float, float]] = {
    "black": (0.01, 0.01, 0.01),
    "white": (0.9, 0.9, 0.9),
    "grey": (0.2, 0.2, 0.2),
    "red": (0.7, 0.03, 0.02),
    "orange": (0.8, 0.25, 0.02),
    "yellow": (0.85, 0.7, 0.05),
    "green": (0.1, 0.5, 0.05),
    "teal": (0.02, 0.4, 0.35),
    "blue": (0.03, 0.15, 0.7),
    "purple": (0.3, 0.05, 0.6),
    "pink": (0.85, 0.25, 0.4),
    "brown": (0.25, 0.1, 0.03),
    "beige": (0.6, 0.45, 0.28),
}

# Words that name a material and with it a colour: gold and silver are the measured base colours
# of the metals (metallic 1) that physically based renderers use; wooden is a mid wood brown.
MATERIAL_COLOURS: dict[str, tuple[float, float, float]] = {
    "gold": (1.0, 0.766, 0.336),
    "silver": (0.972, 0.96, 0.915),
    "wooden": (0.3, 0.15, 0.06),
}

NAMED_COLOURS: dict[str, tuple[float, float, float]] = {**PALETTE, **MATERIAL_COLOURS}
