"""Random mutations of a valid document through the real injector: each one is either refused or
created; none crashes, and a refused or failed one leaves Blender's data exactly as it was."""

from __future__ import annotations

import copy
import random

import bpy

from addon.injector import InjectionError, inject_scene
from addon.validate import SceneValidationError
from shared.scene import Limits, parse_scene
from tests.addon_support import data_counts, reset_blender, rich_scene

MUTATIONS_PER_RUN = 150
SEED = 20261125


def _places(node, path=()):
    """Every (container, key) pair in the document, leaves and containers alike."""
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, value in items:
        yield node, key, path + (key,)
        yield from _places(value, path + (key,))


def _typed_records(doc: dict):
    """Modifiers, constraints and nodes: the records whose type and parameters Blender judges."""
    for obj in doc["objects"]:
        yield from (("params", m) for m in obj.get("modifiers", []))
        yield from (("params", c) for c in obj.get("constraints", []))
    for tree in [m["node_tree"] for m in doc["materials"] if m.get("node_tree")] + doc["node_groups"]:
        yield from (("properties", n) for n in tree["nodes"])


def _mutate(doc: dict, rng: random.Random) -> str:
    how = rng.choice(["replace", "replace", "number", "number", "delete", "extra field", "grow", "unknown"])
    if how == "unknown":
        field, record = rng.choice(list(_typed_records(doc)))
        if rng.random() < 0.5:
            record["type"] = "NO_SUCH_TYPE"
            return f"{record['name']}: unknown type"
        record.setdefault(field, {})["no_such_param"] = rng.choice([1, "x", [1, 2], {"a": 1}, None])
        return f"{record['name']}: unknown parameter"
    container, key, path = rng.choice(list(_places(doc)))
    value = container[key]
    if how == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        container[key] = rng.randint(-2, 12) if isinstance(value, int) else rng.uniform(-10, 10)
        return f"{path} = {container[key]}"
    if how == "delete" and isinstance(container, dict):
        del container[key]
        return f"deleted {path}"
    if how == "extra field" and isinstance(container, dict):
        container["unexpected_field"] = 1
        return f"added a field beside {path}"
    if how == "grow" and isinstance(value, list) and value:
        value.append(copy.deepcopy(value[-1]) if rng.random() < 0.5 else value.pop(0))
        return f"grew or rotated {path}"
    replacements = [
        float("nan"),
        float("inf"),
        -float("inf"),
        10**12,
        -1,
        2**63,
        1e300,
        "x",
        "",
        None,
        True,
        [],
        {},
    ]
    if isinstance(value, list):
        replacements.append([value[0] if value else 0] * 200_001)  # past every per-list cap
    container[key] = new = rng.choice(replacements)
    return f"{path} = {type(new).__name__} {new if not isinstance(new, list) else len(new)}"


def test_mutated_documents_never_crash_and_refusals_change_nothing():
    rng = random.Random(SEED)
    outcomes = {"created": 0, "refused": 0, "failed and rolled back": 0}
    for _ in range(MUTATIONS_PER_RUN):
        reset_blender()
        doc = rich_scene()
        what = _mutate(doc, rng)
        before = data_counts()
        try:
            inject_scene(doc)
        except SceneValidationError:
            outcomes["refused"] += 1
            assert data_counts() == before, what
            continue
        except InjectionError:
            outcomes["failed and rolled back"] += 1
            assert data_counts() == before, what
            assert bpy.context.mode == "OBJECT", what
            continue
        outcomes["created"] += 1
        # The add-on never accepts a document the project's own format refuses.
        parse_scene(doc, Limits())
    reset_blender()
    print(outcomes)
    assert outcomes["refused"] > MUTATIONS_PER_RUN // 4
    assert outcomes["created"] > MUTATIONS_PER_RUN // 10
