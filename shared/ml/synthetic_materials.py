"""Procedural colour-word materials with captions, for the material trainer.

The corpus's captions name a colour by the labeller's nearest palette hue, so "blue" there covers
sky blues as much as the palette's blue, and the corpus has almost no glass or emissive
materials. These materials teach each word the colour it names in shared.colour_names (jittered
in OKLab), "glass" a transmitting and "glowing" an emitting Principled BSDF, on nouns that the
material evaluation's colour-word prompts never use (chair, sword, barrel, car, house, lamp), so
that no evaluation prompt is a training prompt. Each is a material dataset item (the fields the
trainer reads, captions in the labeller's shapes), so it becomes a graph at the grid and tokens
exactly as a corpus material does.
"""

from __future__ import annotations

import numpy as np

from shared.colour_names import MATERIAL_COLOURS, NAMED_COLOURS, PALETTE
from shared.ml.material_tokens import canonical_graph, linear_to_oklab, oklab_to_linear, summarise

KINDS = (*PALETTE, *MATERIAL_COLOURS, "glass", "glowing")
# The words a prompt uses for each kind.
WORDS: dict[str, tuple[str, ...]] = {
    **{word: (word,) for word in PALETTE},
    "gold": ("gold", "golden"),
    "silver": ("silver",),
    "wooden": ("wooden", "wood"),
    "glass": ("glass",),
    "glowing": ("glowing", "emissive", "neon"),
}
# Words of the material's own name (the second caption, "blue paint material"); never a word above.
NAME_WORDS: dict[str, tuple[str, ...]] = {
    "colour": ("paint", "plastic", "fabric", "main", "base", "body", "painted"),
    "gold": ("metal", "trim", "leaf"),
    "silver": ("metal", "chrome", "trim"),
    "wooden": ("planks", "oak", "pine", "timber"),
    "glass": ("window", "pane", "crystal"),
    "glowing": ("light", "glow", "tube", "bulb"),
}
# Hues a "glowing" material without a colour word takes (black or grey light is no light).
GLOW_HUES = ("white", "red", "orange", "yellow", "green", "teal", "blue", "purple", "pink")
NOUNS: tuple[tuple[str, str], ...] = (
    ("table", "furniture"),
    ("stool", "furniture"),
    ("bench", "furniture"),
    ("shelf", "furniture"),
    ("cabinet", "furniture"),
    ("sofa", "furniture"),
    ("bed", "furniture"),
    ("axe", "weapon"),
    ("spear", "weapon"),
    ("shield", "weapon"),
    ("hammer", "weapon"),
    ("crate", "container"),
    ("box", "container"),
    ("vase", "container"),
    ("bucket", "container"),
    ("bottle", "container"),
    ("truck", "vehicle"),
    ("bus", "vehicle"),
    ("boat", "vehicle"),
    ("bicycle", "vehicle"),
    ("tower", "building"),
    ("barn", "building"),
    ("cottage", "building"),
    ("castle", "building"),
    ("lantern", "lighting"),
    ("candle", "lighting"),
    ("torch", "lighting"),
    ("chandelier", "lighting"),
    ("ball", "prop"),
    ("statue", "prop"),
    ("sign", "prop"),
    ("coin", "prop"),
    ("cube", "primitive"),
    ("sphere", "primitive"),
    ("cylinder", "primitive"),
    ("tree", "plant"),
    ("flower", "plant"),
    ("robot", "character"),
    ("fish", "animal"),
    ("bird", "animal"),
    ("rock", "terrain"),
    ("shovel", "tool"),
    ("wrench", "tool"),
    ("apple", "food"),
    ("cake", "food"),
    ("phone", "electronics"),
    ("monitor", "electronics"),
)


def jittered(rgb, rng: np.random.Generator) -> list[float]:
    """A colour near ``rgb`` (linear): lightness and, for a hue, its chroma moved a little in OKLab."""
    lab = linear_to_oklab(rgb)
    spread = [0.02, 0.01, 0.01] if np.hypot(lab[1], lab[2]) > 0.03 else [0.02, 0.003, 0.003]
    return np.clip(oklab_to_linear(lab + rng.normal(0.0, spread)), 0.0, 1.0).round(6).tolist()


def _finish(metallic: float, roughness: float, emits: bool, transmits: bool) -> list[str]:
    """The labeller's finish words (services/labeler/dataset.py material_captions) for these values."""
    return [
        word
        for word, on in (
            ("metallic", metallic > 0.5),
            ("glossy", roughness < 0.25),
            ("rough", roughness > 0.75),
            ("emissive", emits),
            ("transparent", transmits),
        )
        if on
    ]


def synthetic_material(kind: str, index: int, rng: np.random.Generator) -> dict:
    """A material dataset item of one procedural material of ``kind`` (an entry of KINDS)."""
    if kind not in KINDS:
        raise ValueError(f"unknown synthetic material {kind!r}; known: {', '.join(KINDS)}")
    noun, category = NOUNS[int(rng.integers(len(NOUNS)))]
    word = str(rng.choice(WORDS[kind]))
    metallic, transmission, emission, roughness = 0.0, 0.0, 0.0, 0.5
    words = [word]
    if kind in ("gold", "silver"):
        colour, metallic, roughness = jittered(NAMED_COLOURS[kind], rng), 1.0, rng.uniform(0.2, 0.4)
    elif kind in NAMED_COLOURS:
        colour = jittered(NAMED_COLOURS[kind], rng)
        # Mostly Blender's default 0.5, as in the corpus; glossy or rough only with the word.
        draw = rng.random()
        roughness = rng.uniform(0.0, 0.2) if draw < 0.125 else rng.uniform(0.8, 1.0) if draw < 0.25 else 0.5
    else:
        hue = str(rng.choice(list(PALETTE) if kind == "glass" else GLOW_HUES))
        named = rng.random() < 0.5  # "green glass", "glowing blue"; else the word alone
        colour = jittered(PALETTE[hue if named or kind == "glowing" else "white"], rng)
        if named:
            words = [hue, word] if kind == "glass" else [word, hue]
        if kind == "glass":
            transmission, roughness = 1.0, rng.uniform(0.0, 0.1)
        else:
            emission = float(rng.uniform(1.0, 10.0))
    finish = _finish(metallic, roughness, emission > 0, transmission > 0)
    if kind in ("glass", "glowing") and rng.random() < 0.5:
        finish = []  # these words say the finish themselves ("metallic" stays: the labeller says it)
    head = " ".join(dict.fromkeys([*finish, *words]))
    names = NAME_WORDS[kind if kind in NAME_WORDS else "colour"]
    name = str(rng.choice(names))
    inputs = [
        {"identifier": "Base Color", "type": "RGBA", "default": [*colour, 1.0]},
        {"identifier": "Metallic", "type": "VALUE", "default": metallic},
        {"identifier": "Roughness", "type": "VALUE", "default": round(float(roughness), 6)},
        {"identifier": "Transmission Weight", "type": "VALUE", "default": transmission},
    ]
    if emission:
        inputs += [
            {"identifier": "Emission Color", "type": "RGBA", "default": [*colour, 1.0]},
            {"identifier": "Emission Strength", "type": "VALUE", "default": round(emission, 6)},
        ]
    tree = {
        "name": name.title(),
        "nodes": [
            {"name": "Principled BSDF", "type": "ShaderNodeBsdfPrincipled", "inputs": inputs},
            {"name": "Material Output", "type": "ShaderNodeOutputMaterial", "inputs": []},
        ],
        "links": [
            {
                "from_node": "Principled BSDF",
                "from_socket": "BSDF",
                "to_node": "Material Output",
                "to_socket": "Surface",
            }
        ],
    }
    return {
        "id": f"synthetic-{index}",
        "kind": kind,
        "asset_sha256": "synthetic",
        "object": f"synthetic {index}",  # one object each: every material is its object's only slot
        "category": category,
        "material": name.title(),
        "captions": [f"{head} material", f"{head} {name} material", f"{head} material for a {noun}"],
        "pbr": summarise(canonical_graph({"node_tree": tree})),
        "node_tree": tree,
        "node_groups": [],
        "source": "synthetic",
    }


def synthetic_materials(count: int, seed: int = 0) -> list[dict]:
    """``count`` items, the kinds in turn (each kind a ``count / len(KINDS)`` share)."""
    rng = np.random.default_rng(seed)
    return [synthetic_material(KINDS[i % len(KINDS)], i, rng) for i in range(count)]
