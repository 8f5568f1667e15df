"""The round trip through real Blender: extract(inject(scene)) gives the scene back, and a corpus file
extracted, injected and extracted again is stable. The injector (addon/) and the reader
(blender_worker/) are written independently, so this is what keeps them honest with each other."""

from __future__ import annotations

import copy
import math
from typing import Any

import orjson
import pytest

bpy = pytest.importorskip("bpy")

from addon.injector import inject_scene  # noqa: E402
from blender_worker.loader import disable_auto_exec  # noqa: E402
from blender_worker.scene_reader import ReadLimits, read_scene  # noqa: E402
from shared.scene import Limits, parse_scene  # noqa: E402
from tests.addon_support import reset_blender, rich_scene  # noqa: E402
from tests.conftest import CORPUS  # noqa: E402

LIMITS = ReadLimits(max_vertices=2_000_000, max_faces=2_000_000)
TOLERANCE = 1e-4

# What legitimately differs after a trip through Blender, each for a stated reason.
IGNORED = {
    "provenance",  # describes the source file, not the scene
    "warnings",  # about the extraction run itself
    "evaluated_mesh",  # derived data: the injector rebuilds it from the modifier stack
    "images",  # the add-on never opens paths from the network: images become sized placeholders
    "interface",  # Blender assigns its own group-socket identifiers (Socket_N); links are remapped
    "identifier",  # ... and so group-node socket identifiers follow them
}


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` does not contain ``expected`` (floats within TOLERANCE; named lists by name)."""
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{path}: expected an object, got {actual!r:.80}"]
        out = []
        for key, value in expected.items():
            if key in IGNORED:
                continue
            if key not in actual:
                out.append(f"{path}.{key}: missing")
            else:
                out += differences(value, actual[key], f"{path}.{key}")
        return out
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{path}: expected {len(expected)} items, got {len(actual) if isinstance(actual, list) else actual!r:.80}"]
        if expected and all(isinstance(e, dict) and "name" in e for e in expected + actual):
            by_name = {a["name"]: a for a in actual}
            return [d for e in expected for d in differences(e, by_name.get(e["name"]), f"{path}[{e['name']!r}]")]
        return [d for i, (e, a) in enumerate(zip(expected, actual, strict=True)) for d in differences(e, a, f"{path}[{i}]")]
    if isinstance(expected, float) or (isinstance(expected, int) and isinstance(actual, float) and not isinstance(expected, bool)):
        if not isinstance(actual, int | float) or not math.isclose(expected, actual, abs_tol=TOLERANCE, rel_tol=TOLERANCE):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        return []
    return [] if expected == actual else [f"{path}: expected {expected!r:.80}, got {actual!r:.80}"]


def extract_current() -> dict:
    # As the extractor writes it: float32 arrays serialised by orjson, then read back as JSON.
    document = orjson.loads(orjson.dumps(read_scene(LIMITS, saved_by_blender=False), option=orjson.OPT_SERIALIZE_NUMPY))
    parse_scene(document, Limits())  # what the reader writes is always a valid document
    return document


def test_extract_of_inject_gives_the_document_back():
    document = rich_scene()
    reset_blender()
    inject_scene(copy.deepcopy(document), apply_scene_settings=True)
    found = differences(document, extract_current())
    assert found == [], "\n".join(found)


@pytest.mark.parametrize("relative", [
    "blend/zeyu_free_blender_models/blend_chair.blend",
    "blend/quaternius/Characters_and_Animals/Alien_Animated_-_April_2019/Alien.blend",
    "blend/gltf_blender_io/pbr_node_glTF2_Principled.blend",
    "blend/gltf_blender_io/scenes_06_parent-inverse-anim.blend",
])
def test_corpus_file_is_stable_through_inject_and_extract(relative: str):
    path = CORPUS / relative
    if not path.exists():
        pytest.fail(f"corpus file missing: {path}")
    disable_auto_exec()
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
    first = extract_current()
    reset_blender()
    inject_scene(copy.deepcopy(first), apply_scene_settings=True)
    found = differences(first, extract_current())
    assert found == [], f"{len(found)} differences:\n" + "\n".join(found[:40])
