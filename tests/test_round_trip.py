"""The round trip through real Blender: extract(inject(scene)) gives the scene back, and a corpus file
extracted, injected and extracted again is stable. The injector (addon/) and the reader
(blender_worker/) are written independently, so this is what keeps them honest with each other."""

from __future__ import annotations

import copy
import math
import re
from collections import Counter
from typing import Any

import bpy  # in CI a missing bpy fails the run: never importorskip
import orjson
import pytest

from addon.injector import PLACEHOLDER_MAX_SIDE, inject_scene
from blender_worker.loader import disable_auto_exec
from blender_worker.scene_reader import ReadLimits, read_scene
from shared.scene import Limits, parse_scene
from tests.addon_support import reset_blender, rich_scene
from tests.conftest import CORPUS

LIMITS = ReadLimits(max_vertices=2_000_000, max_faces=2_000_000)
TOLERANCE = 1e-4
# Blender keeps custom normals per face corner, the format per vertex: custom normals set from the
# document's vertex normals read back as their corner average, a few thousandths away.
NORMAL_TOLERANCE = 5e-3

# What legitimately differs after a trip through Blender, each for a stated reason.
IGNORED = {
    "provenance",  # describes the source file, not the scene
    "warnings",  # about the extraction run itself
    "libraries",  # linked libraries are recorded, never followed: the injector links nothing
}
GROUP_IO_NODES = ("NodeGroupInput", "NodeGroupOutput")
# Beside each geometry-nodes input, the modifier keeps whether it reads an attribute, and which.
NODE_INPUT_SUFFIXES = ("", "_use_attribute", "_attribute_name")
# The parts of rich_scene() the injector must refuse (reported, skipped, never fatal).
REFUSED = [
    ("materials", 1, "node_tree", "nodes", 4, "properties", "made_up_property"),
    ("materials", 1, "node_tree", "nodes", 8),  # an unknown node type...
    ("materials", 1, "node_tree", "links", 6),  # ... and the link to it
    ("objects", 1, "modifiers", 5),  # an unknown modifier type
    ("objects", 1, "modifiers", 6, "params", "no_such_param"),
]


def differences(expected: Any, actual: Any, path: str = "") -> list[str]:
    """Where ``actual`` does not contain ``expected`` (floats within TOLERANCE; named lists by name,
    sockets by identifier)."""
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
        if not isinstance(actual, list):
            return [f"{path}: expected {len(expected)} items, got {actual!r:.80}"]
        key = _list_key(expected, actual)
        # A node's sockets come from its type: a document lists only those it sets.
        sockets = path.endswith((".inputs", ".outputs")) and key == "identifier"
        if len(actual) != len(expected) and not (sockets and len(actual) > len(expected)):
            return [f"{path}: expected {len(expected)} items, got {len(actual)}"]
        if key is not None:
            by_key = {a[key]: a for a in actual}
            return [
                d
                for e in expected
                for d in (
                    differences(e, by_key[e[key]], f"{path}[{e[key]!r}]")
                    if e[key] in by_key
                    else [f"{path}[{e[key]!r}]: missing"]
                )
            ]
        return [
            d
            for i, (e, a) in enumerate(zip(expected, actual, strict=True))
            for d in differences(e, a, f"{path}[{i}]")
        ]
    if isinstance(expected, float) or (
        isinstance(expected, int) and isinstance(actual, float) and not isinstance(expected, bool)
    ):
        tolerance = NORMAL_TOLERANCE if ".normals[" in path else TOLERANCE
        if not isinstance(actual, int | float) or not math.isclose(
            expected, actual, abs_tol=tolerance, rel_tol=TOLERANCE
        ):
            return [f"{path}: expected {expected!r}, got {actual!r}"]
        return []
    same = expected == actual and isinstance(expected, bool) == isinstance(actual, bool)  # 0 is not False
    return [] if same else [f"{path}: expected {expected!r:.80}, got {actual!r:.80}"]


def _list_key(*lists: list) -> str | None:
    """Sockets are told apart by identifier (names repeat: a Math node has three "Value" inputs),
    other records by name; None where neither is unique (then items are compared in order)."""
    for key in ("identifier", "name"):
        if all(items and all(isinstance(i, dict) and key in i for i in items) for items in lists):
            unique = all(len({i[key] for i in items}) == len(items) for items in lists)
            return key if unique else None
    return None


def round_trip_differences(expected: dict, actual: dict) -> list[str]:
    return differences(with_evaluated_sizes(as_reextracted(expected, actual)), with_evaluated_sizes(actual))


def with_evaluated_sizes(document: dict) -> dict:
    """Evaluated meshes as their sizes. Modifiers number their output after the mesh's edge order,
    which the format does not store (from_pydata makes its own), and deforming ones follow the
    current frame: what the stack determines regardless is the vertex count and the faces by size."""
    document = copy.deepcopy(document)
    for obj in document.get("objects", []):
        mesh = obj.get("evaluated_mesh")
        if mesh is not None:
            sizes = Counter(len(face) for face in mesh["faces"])
            obj["evaluated_mesh"] = {
                "vertex_count": len(mesh["vertices"]),
                "faces_by_size": sorted(sizes.items()),
            }
    return document


def as_reextracted(expected: dict, actual: dict) -> dict:
    """``expected`` with what Blender itself changes on the way, each change for a stated reason."""
    expected = copy.deepcopy(expected)
    rename_interface_identifiers(expected, actual)
    for image in expected.get("images", []):
        # The add-on never opens a path from the network: an image becomes a generated placeholder
        # of the same name and colour space, its side capped (the source path and size are kept as
        # custom properties, which the format does not read).
        for key in ("filepath", "packed", "missing"):
            image.pop(key, None)
        if not 0 < max(image.get("size", (0, 0))) <= PLACEHOLDER_MAX_SIDE:
            image.pop("size", None)
    for material in expected.get("materials", []):
        if material.get("node_tree") is None:
            # The injector builds a Principled node tree from the PBR summary, so the material
            # comes back as a node material: its PBR summary is what must survive, not its source.
            material.pop("source", None)
    keep_copies_of_shared_meshes(expected, actual)
    for obj in expected.get("objects", []):
        for group in obj.get("vertex_groups", []):
            # Blender's API keeps weights within [0, 1]; a few old files hold some just outside.
            group["weights"] = [min(1.0, max(0.0, w)) for w in group["weights"]]
        for bone, made in _bone_pairs((obj.get("armature") or {}).get("bones", []), actual, obj["name"]):
            # A roll of -pi and one of pi are the same bone; Blender reads either back.
            if abs(abs(bone.get("roll", 0.0)) - math.pi) < TOLERANCE:
                bone["roll"] = made.get("roll", bone["roll"])
        mesh = obj.get("mesh")
        if mesh and mesh.get("normals") is not None:
            # A loose vertex has no face corner to hold a custom normal: Blender gives it its own
            # (the direction from the origin).
            used = {v for face in mesh["faces"] for v in face}
            for v, co in enumerate(mesh["vertices"]):
                if v not in used:
                    length = math.hypot(*co)
                    mesh["normals"][v] = [c / length if length else 0.0 for c in co]
    return expected


def keep_copies_of_shared_meshes(expected: dict, actual: dict) -> None:
    """The format stores a mesh inline on each object, so a mesh several objects share comes back
    as one copy each, which Blender names "Name.001", "Name.002"... taking the names of other
    meshes of that family too (their data is still compared)."""
    objects = [o for o in expected.get("objects", []) if o.get("mesh")]
    uses = Counter(o["mesh"]["name"] for o in objects)
    shared_families = {_name_family(name) for name, count in uses.items() if count > 1}
    found = {o["name"]: o for o in actual.get("objects", [])}
    for obj in objects:
        family = _name_family(obj["mesh"]["name"])
        made = (found.get(obj["name"]) or {}).get("mesh") or {}
        if family in shared_families and _name_family(made.get("name", "")) == family:
            obj["mesh"]["name"] = made["name"]


def _name_family(name: str) -> str:
    return re.sub(r"\.\d{3}$", "", name)


def _bone_pairs(bones: list[dict], actual: dict, object_name: str) -> list[tuple[dict, dict]]:
    made_object = next((o for o in actual.get("objects", []) if o["name"] == object_name), {})
    made = {b["name"]: b for b in (made_object.get("armature") or {}).get("bones", [])}
    return [(bone, made[bone["name"]]) for bone in bones if bone["name"] in made]


def rename_interface_identifiers(expected: dict, actual: dict) -> None:
    """Blender names every new group socket itself ("Socket_N"; its identifier is read-only), so
    the injected groups' identifiers differ from the document's. Rename them consistently in
    ``expected``: the interface, the group's input/output nodes and their links, the group nodes
    using it and their links, and geometry-nodes modifier inputs. Blender lists outputs before
    inputs but keeps the order within each, so the renaming pairs the n-th input with the n-th
    input and the n-th output with the n-th output (their names and types are still compared)."""
    actual_groups = {g["name"]: g for g in actual.get("node_groups", [])}
    renames: dict[str, dict[str, str]] = {}
    for group in expected.get("node_groups", []):
        made = actual_groups.get(group["name"], {}).get("interface", [])
        ours = group.get("interface", [])
        pairs = [
            (e["identifier"], a["identifier"])
            for side in ("INPUT", "OUTPUT")
            for e, a in zip(_side(ours, side), _side(made, side), strict=False)
        ]
        if len(pairs) == len(ours) == len(made):
            rename = renames[group["name"]] = dict(pairs)
            assert len(set(rename.values())) == len(ours), f"Blender repeated an identifier: {rename}"
            for socket in ours:
                socket["identifier"] = rename[socket["identifier"]]
    trees = [(g, g["name"]) for g in expected.get("node_groups", [])]
    trees += [(m["node_tree"], None) for m in expected.get("materials", []) if m.get("node_tree")]
    for tree, own_group in trees:
        renamed_nodes = {}
        for node in tree.get("nodes", []):
            group = own_group if node["type"] in GROUP_IO_NODES else node.get("node_tree")
            if group in renames:
                renamed_nodes[node["name"]] = renames[group]
                for socket in node.get("inputs", []) + node.get("outputs", []):
                    socket["identifier"] = renames[group].get(socket["identifier"], socket["identifier"])
        for link in tree.get("links", []):
            for node_key, socket_key in (("from_node", "from_socket"), ("to_node", "to_socket")):
                rename = renamed_nodes.get(link[node_key], {})
                link[socket_key] = rename.get(link[socket_key], link[socket_key])
    for obj in expected.get("objects", []):
        for modifier in obj.get("modifiers", []):
            params = modifier.get("params", {})
            rename = renames.get(params.get("node_group"), {})
            if modifier["type"] == "NODES" and "inputs" in params:
                params["inputs"] = {
                    _renamed_input(key, rename): value for key, value in params["inputs"].items()
                }


def _side(interface: list[dict], in_out: str) -> list[dict]:
    return [socket for socket in interface if socket["in_out"] == in_out]


def _renamed_input(key: str, rename: dict[str, str]) -> str:
    for suffix in NODE_INPUT_SUFFIXES:
        base = key[: len(key) - len(suffix)]
        if key.endswith(suffix) and base in rename:
            return rename[base] + suffix
    return key


def extract_current() -> dict:
    # As the extractor writes it: float32 arrays serialised by orjson, then read back as JSON.
    document = orjson.loads(
        orjson.dumps(read_scene(LIMITS, saved_by_blender=False), option=orjson.OPT_SERIALIZE_NUMPY)
    )
    parse_scene(document, Limits())  # what the reader writes is always a valid document
    return document


def _path_text(path: tuple) -> str:
    return "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in path).lstrip(".")


def _without(document: dict, paths: list[tuple]) -> dict:
    """``document`` less the parts at ``paths`` (list items removed from the last, so indices hold)."""
    document = copy.deepcopy(document)
    for path in sorted(paths, reverse=True):
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        del parent[path[-1]]
    return document


def test_extract_of_inject_gives_the_document_back():
    document = rich_scene()
    reset_blender()
    result = inject_scene(copy.deepcopy(document), apply_scene_settings=True)
    # The deliberately invalid parts are reported and skipped, so they do not come back.
    reported = [warning.split(":")[0] for warning in result.warnings]
    expected_reports = [_path_text(path) for path in REFUSED]
    assert len(reported) == len(REFUSED), result.warnings
    for text in expected_reports:
        assert any(r == text or r.startswith(f"{text}.") for r in reported), (text, result.warnings)
    actual = extract_current()
    found = round_trip_differences(_without(document, REFUSED), actual)
    assert found == [], "\n".join(found)


@pytest.mark.parametrize(
    "relative",
    [
        "blend/zeyu_free_blender_models/blend_chair.blend",
        "blend/zeyu_free_blender_models/blend_sink.blend",  # Bevel, Boolean, Solidify
        "blend/zeyu_free_blender_models/blend_security_camera.blend",  # a Bevel custom profile
        "blend/quaternius/Characters_and_Animals/Alien_Animated_-_April_2019/Alien.blend",
        "blend/quaternius/Vehicles/Basic_Car_Pack_-_Jan_2017/SimpleCarHigh.blend",  # Mirror
        "blend/quaternius/Characters_and_Animals/Knight_Character_Animated_-_Jul_2018/Sword.blend",  # geometry nodes
        "blend/quaternius/Characters_and_Animals/Cowboy_Pack_Patreon_Exclusive/Cowboy.blend",  # Child Of inverse
        "blend/quaternius/Characters_and_Animals/Animal_Pack_Vol.2_-_Jul_2017/Cat.blend",  # weights above 1
        "blend/quaternius/Vehicles/Tank_Pack_-_June_2019/Tank.blend",  # bone rolls of -pi
        "blend/quaternius/Nature/MoreNature_-_Mar_2016/SmallTreeWithLeave.blend",  # duplicate faces
        "blend/gltf_blender_io/pbr_node_glTF2_Principled.blend",
        "blend/gltf_blender_io/scenes_06_parent-inverse-anim.blend",
        "blend/gltf_blender_io/scenes_07_nla-anim.blend",
        "blend/gltf_blender_io/scenes_22_simple_GN.blend",  # a Set Material node naming a material
        "blend/gltf_blender_io/scenes_25_drivers.blend",
        "blend/gltf_blender_io/scenes_25_mesh_instances_apply_modifier.blend",  # shared meshes
        "blend/gltf_blender_io/scenes_28_shapekeys_anim.blend",  # saved at frame 13
        "blend/gltf_blender_io/scenes_34_additional_anim.blend",  # an animated modifier parameter
        "blend/gltf_blender_io/scenes_RobotExpressive.blend",
    ],
)
def test_corpus_file_is_stable_through_inject_and_extract(relative: str):
    path = CORPUS / relative
    if not path.exists():
        pytest.fail(f"corpus file missing: {path}")
    disable_auto_exec()
    bpy.ops.wm.open_mainfile(filepath=str(path), load_ui=False, use_scripts=False)
    first = extract_current()
    reset_blender()
    inject_scene(copy.deepcopy(first), apply_scene_settings=True)
    second = extract_current()
    found = round_trip_differences(first, second)
    assert found == [], f"{len(found)} differences:\n" + "\n".join(found[:40])
