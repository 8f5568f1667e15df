"""Procedural object motions with captions: spin, bounce, hover, sway and open.

The corpus animates few plain objects (mostly glTF test scenes named CubeAction), so the motions
a user asks of an object are made here, as the geometry model has synthetic primitives. Each is
a Motion on the object layout (location offset, rotation offset, scale factor - 1).
"""

from __future__ import annotations

import math

import numpy as np

from shared.ml.animation_tokens import KEYS, Motion

NOUNS = (
    "cube",
    "coin",
    "crate",
    "gem",
    "ball",
    "platform",
    "lamp",
    "sign",
    "barrel",
    "chest",
    "door",
    "box",
    "star",
    "key",
    "ring",
    "drone",
    "balloon",
    "flag",
    "plant",
    "boat",
)
MOTIONS = ("spin", "bounce", "hover", "sway", "open")


def _pace(duration: float) -> str:
    return "slow " if duration >= 80 else "fast " if duration <= 30 else ""


def synthetic_motion(kind: str, rng: np.random.Generator) -> tuple[list[str], Motion]:
    """(prompts, motion) of one procedural object motion of ``kind``."""
    t = np.linspace(0, 1, KEYS)
    values = np.zeros((KEYS, 9))
    noun = str(rng.choice(NOUNS))
    axis = int(rng.choice([2, 2, 2, 0, 1]))
    if kind == "spin":
        duration = float(rng.integers(20, 160))
        direction = float(rng.choice([1, -1]))
        values[:, 3 + axis] = direction * 2 * math.pi * t
        words = ["spin", "spinning", "rotate", "turntable spin"]
        loop = True
    elif kind == "bounce":
        duration = float(rng.integers(12, 60))
        height = rng.uniform(0.3, 2.0)
        values[:, 2] = height * np.sin(math.pi * t)
        squash = rng.uniform(0.0, 0.2)
        values[:, 8] = -squash * np.cos(math.pi * t) ** 8  # flattened where it meets the ground
        words = ["bounce", "bouncing", "bounce up and down", "bouncy"]
        loop = True
    elif kind == "hover":
        duration = float(rng.integers(40, 160))
        values[:, 2] = rng.uniform(0.05, 0.4) * np.sin(2 * math.pi * t)
        values[:, 5] = rng.uniform(0.0, 0.2) * np.sin(2 * math.pi * t)
        words = ["hover", "hovering", "float", "bob up and down"]
        loop = True
    elif kind == "sway":
        duration = float(rng.integers(30, 140))
        values[:, 3 + int(rng.integers(2))] = math.radians(rng.uniform(4, 25)) * np.sin(2 * math.pi * t)
        words = ["sway", "swaying", "rock back and forth", "wobble"]
        loop = True
    elif kind == "open":
        duration = float(rng.integers(12, 60))
        hinge = 2 if noun == "door" else 0
        angle = math.radians(rng.uniform(60, 110)) * float(rng.choice([1, -1]))
        values[:, 3 + hinge] = angle * (3 * t**2 - 2 * t**3)
        words = ["open", "opening", "open up", "open the lid"]
        loop = False
    else:
        raise ValueError(f"unknown synthetic motion {kind!r}; known: {', '.join(MOTIONS)}")
    word = str(rng.choice(words))
    pace = _pace(duration)
    prompts = [f"{pace}{word}", f"{noun} {pace}{word}", f"{pace}{word} animation", f"{noun} {word} animation"]
    return prompts, Motion(loop, duration, values)


def synthetic_motions(count: int, seed: int = 0) -> list[tuple[list[str], Motion]]:
    rng = np.random.default_rng(seed)
    return [synthetic_motion(MOTIONS[i % len(MOTIONS)], rng) for i in range(count)]
