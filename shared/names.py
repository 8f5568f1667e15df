"""Turning Blender and file names into words: ``Smooth_Male_Casual.001`` -> ``male casual``."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

# Blender names new objects after the primitive they started from (Cube.003, Cylinder.001): in
# a modelled asset that says how a part began, not what it is.
PRIMITIVE_WORDS = frozenset(
    {"cube", "cylinder", "sphere", "icosphere", "uv", "circle", "cone", "torus", "plane"}
)

# Words that say how a thing was modelled or saved, never what it is.
NOISE_WORDS = PRIMITIVE_WORDS | frozenset(
    {
        "blend",
        "mesh",
        "object",
        "obj",
        "low",
        "lowpoly",
        "poly",
        "final",
        "smooth",
        "flatshaded",
        "flat",
        "shaded",
        "geo",
        "geometry",
        "model",
        "copy",
        "new",
        "untitled",
        "default",
        "material",
        "mat",
        "materials",
        "export",
        "fbx",
        "glb",
        "gltf",
        "v",
        "ver",
        "version",
        "lod",
        "lod0",
        "the",
        "and",
        "of",
    }
)

# camelCase / PascalCase boundaries, a capital after a digit ("Potion5HalfFull"), and separators.
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=\d)(?=[A-Z])")
# Trailing numbering on a word ("Table2", "Wheels4"), but not a model name like "P90" or "M4".
_TRAILING_NUMBER = re.compile(r"^([a-z]{3,})\d+$")
_SEPARATORS = re.compile(r"[\s_\-.,/\\()\[\]{}:;+&#|'\"]+")
_NUMBER = re.compile(r"^\d+$")
_MONTHS = frozenset(
    [
        "jan",
        "feb",
        "mar",
        "march",
        "apr",
        "april",
        "may",
        "jun",
        "june",
        "jul",
        "july",
        "aug",
        "sept",
        "sep",
        "oct",
        "nov",
        "dec",
    ]
)


# What Blender users call a default object, in words a sentence encoder knows.
_BLENDER_NAMES = {"suzanne": ["monkey", "head"]}


def words(name: str | None, primitives: bool = False) -> list[str]:
    """Lower-case words of a name, with numbering (.001, _02), version tags and noise words dropped;
    with ``primitives``, primitive names (cube, cone) are kept as what the object is."""
    if not name:
        return []
    noise = NOISE_WORDS - PRIMITIVE_WORDS if primitives else NOISE_WORDS
    out = []
    for chunk in _SEPARATORS.split(name):
        for word in _CAMEL.split(chunk):
            word = _TRAILING_NUMBER.sub(r"\1", word.lower())
            if not word or _NUMBER.match(word) or word in noise or len(word) == 1:
                continue
            out.extend(_BLENDER_NAMES.get(word, [word]))
    return out


def phrase(name: str | None, primitives: bool = False) -> str:
    """The words of a name joined by spaces ('' when nothing is left)."""
    return " ".join(words(name, primitives))


def is_test_fixture(source_path: str | None) -> bool:
    """Whether a file comes from a test suite (a tests/ folder), whose file names say what a scene
    tests ("25_drivers_disable_viewport"), not what it shows."""
    return any(part.lower() in {"test", "tests"} for part in PurePosixPath(source_path or "").parts[:-1])


def pack_phrase(pack: str | None) -> str:
    """A pack name without its release date or volume: 'Furniture Pack - March 2019' -> 'furniture pack'."""
    kept = [w for w in words(pack) if w not in _MONTHS and w not in {"vol", "pack", "patreon", "exclusive"}]
    return " ".join(kept)


def path_parts(corpus_path: str | None, source_path: str | None) -> dict[str, str]:
    """Category, pack and asset name read from a corpus path when the asset row has no metadata.

    ``blend/quaternius/<Category>/<Pack>/<Asset>.blend`` and ``<folder>/<Pack>/<Asset>.ext`` both work.
    """
    path = PurePosixPath(corpus_path or source_path or "")
    parts = path.parts
    asset = path.stem
    pack = parts[-2] if len(parts) >= 2 else ""
    category = parts[-3] if len(parts) >= 3 else ""
    if category in {"blend", "glb", "fbx"}:  # <format>/<pack>/<asset>: no category level
        category = ""
    return {"category": category.replace("_", " "), "pack": pack.replace("_", " "), "asset_name": asset}
