"""What the extractor captures from real corpus files: node graphs with nested groups, modifier
stacks and evaluated meshes, layered-action animation, NLA, drivers, shape keys, armatures,
legacy materials, imported glTF and ASCII FBX, previews, and byte-stable output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from blender_worker.pool import child_environment
from shared.scene import Limits, parse_scene
from tests.extract_support import CORPUS, REPO, extract, load_document

BLEND = CORPUS / "blend"
NODE_GROUPS = BLEND / "gltf_blender_io" / "scenes_22_node_groups.blend"
MODIFIERS = BLEND / "zeyu_free_blender_models" / "blend_toy_car.blend"
ANIMATED = BLEND / "quaternius" / "Characters_and_Animals" / "Alien_Animated_-_April_2019" / "Alien.blend"
SHAPE_KEYS = BLEND / "gltf_blender_io" / "scenes_28_shapekeys_anim.blend"
DRIVERS = BLEND / "gltf_blender_io" / "scenes_25_drivers.blend"
PARENT_INVERSE = BLEND / "gltf_blender_io" / "scenes_06_parent-inverse-anim.blend"
LEGACY = BLEND / "quaternius" / "Home_and_Buildings" / "Furniture_Pack_-_March_2019" / "BedDouble.blend"
GLB = CORPUS / "glb" / "quaternius_showcase" / "cute_fish_pack" / "Anglerfish.glb"
ASCII_FBX = CORPUS / "fbx" / "kenney" / "Furniture_Pack" / "bathroomCabinet.fbx"
FILES = [NODE_GROUPS, MODIFIERS, ANIMATED, SHAPE_KEYS, DRIVERS, PARENT_INVERSE, LEGACY, GLB, ASCII_FBX]


@pytest.fixture(scope="module")
def batch(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    return extract(FILES, tmp_path_factory.mktemp("out"), preview=True)


def doc(batch: dict[str, dict[str, Any]], path: Path) -> dict[str, Any]:
    entry = batch[path.name]
    assert entry["status"] == "ok", entry
    return load_document(entry)


def by_name(items: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in items}


def test_every_document_is_valid_and_carries_provenance(batch: dict[str, dict[str, Any]]) -> None:
    for path in FILES:
        document = doc(batch, path)
        parse_scene(document, Limits())
        assert len(document["provenance"]["sha256"]) == 64
        saved_by = document["provenance"].get("blender_version")
        assert (saved_by is not None) == (path.suffix == ".blend")
    assert doc(batch, ANIMATED)["provenance"]["blender_version"] == "2.79.0"


def test_node_materials_keep_nested_groups_links_by_identifier_and_pbr(
    batch: dict[str, dict[str, Any]],
) -> None:
    document = doc(batch, NODE_GROUPS)
    groups = by_name(document["node_groups"])
    materials = by_name(document["materials"])
    nested = materials["nested"]["node_tree"]
    group_node = next(n for n in nested["nodes"] if n.get("node_tree"))
    # nested -> NodeGroup.003 -> NodeGroup.004 -> NodeGroup.001: every level is stored.
    chain = [group_node["node_tree"]]
    while inner := next((n["node_tree"] for n in groups[chain[-1]]["nodes"] if n.get("node_tree")), None):
        chain.append(inner)
    assert chain == ["NodeGroup.003", "NodeGroup.004", "NodeGroup.001"]
    assert groups["NodeGroup.001"]["interface"], "group inputs and outputs are recorded"
    for tree in [m["node_tree"] for m in document["materials"]] + document["node_groups"]:
        nodes = by_name(tree["nodes"])
        for link in tree["links"]:
            assert link["from_socket"] in {s["identifier"] for s in nodes[link["from_node"]]["outputs"]}
            assert link["to_socket"] in {s["identifier"] for s in nodes[link["to_node"]]["inputs"]}
    assert materials["Ref"]["pbr"]["textures"]["base_color"]["image"] == "Untitled"
    assert "Untitled" in by_name(document["images"])


def test_modifier_stack_params_and_evaluated_mesh_kept_apart(batch: dict[str, dict[str, Any]]) -> None:
    objects = by_name(doc(batch, MODIFIERS)["objects"])
    bevel = objects["Cube"]["modifiers"][0]
    assert (bevel["type"], bevel["params"]["segments"]) == ("BEVEL", 2)
    assert bevel["params"]["width"] == pytest.approx(0.46)
    mirror = objects["Cylinder"]["modifiers"][0]
    assert mirror["type"] == "MIRROR" and mirror["params"]["use_axis"] == [True, True, False]
    cube = objects["Cube"]
    assert len(cube["mesh"]["vertices"]) == 8 and len(cube["evaluated_mesh"]["vertices"]) > 8
    # Object space: the transform stays on the object, the cube's corners stay at +-1.
    assert cube["transform"]["location"][2] == pytest.approx(0.92086, abs=1e-4)
    assert {abs(c) for v in cube["mesh"]["vertices"] for c in v} == {1.0}


def test_layered_actions_nla_armature_and_skinning(batch: dict[str, dict[str, Any]]) -> None:
    document = doc(batch, ANIMATED)
    objects = by_name(document["objects"])
    rig, body = objects["AlienArmature"], objects["BaseAlien"]
    assert len(rig["armature"]["bones"]) == 45
    assert body["parent"] == "AlienArmature"
    assert body["modifiers"][0]["type"] == "ARMATURE"
    assert body["modifiers"][0]["params"]["object"] == "AlienArmature"
    groups = by_name(body["vertex_groups"])
    assert len(groups) == 54 and len(groups["Foot.L"]["weights"]) == len(groups["Foot.L"]["indices"]) > 0
    actions = by_name(document["actions"])
    assert len(actions) == 15 and rig["animation"]["action"] == "Alien_Idle"
    fcurve = actions["Alien_Clapping"]["fcurves"][0]
    assert fcurve["data_path"] == 'pose.bones["PinkyFinger1.L"].location'
    assert fcurve["group"] == "PinkyFinger1.L" and fcurve["keyframes"][0]["handle_right"]
    strips = [s for t in rig["animation"]["nla_tracks"] for s in t["strips"]]
    assert len(strips) == 7 and {s["action"] for s in strips} <= set(actions)
    assert batch[ANIMATED.name]["counts"]["keyframes"] == 10_000


def test_shape_keys_and_their_action(batch: dict[str, dict[str, Any]]) -> None:
    document = doc(batch, SHAPE_KEYS)
    mesh = by_name(document["objects"])["AnimCube"]["mesh"]
    basis, key = mesh["shape_keys"]
    assert (basis["name"], key["name"], key["relative_key"]) == ("Basis", "Key 1", "Basis")
    assert len(key["vertices"]) == len(mesh["vertices"]) and key["vertices"] != basis["vertices"]
    action = by_name(document["actions"])[mesh["shape_key_animation"]["action"]]
    assert action["id_root"] == "KEY"
    assert action["fcurves"][0]["data_path"] == 'key_blocks["Key 1"].value'


def test_drivers_stored_as_text_with_their_variables(batch: dict[str, dict[str, Any]]) -> None:
    mesh = by_name(doc(batch, DRIVERS)["objects"])["Cube"]["mesh"]
    driver = mesh["shape_key_animation"]["drivers"][0]
    assert (driver["data_path"], driver["type"], driver["expression"]) == (
        'key_blocks["Key 1"].value',
        "SCRIPTED",
        "var",
    )
    target = driver["variables"][0]["targets"][0]
    assert (target["id_name"], target["bone_target"], target["transform_type"]) == (
        "Armature",
        "Bone",
        "LOC_Y",
    )


def test_parent_inverse_and_rotation_modes_for_an_injector(batch: dict[str, dict[str, Any]]) -> None:
    objects = by_name(doc(batch, PARENT_INVERSE)["objects"])
    child = objects["ChildLocation"]
    assert child["parent"] == "ParentLocation"
    assert child["parent_inverse"][3] == pytest.approx(8.0)  # row-major: x translation
    assert "parent_inverse" not in objects["ParentLocation"]
    assert {o["transform"]["rotation_mode"] for o in objects.values()} >= {"XYZ", "QUATERNION"}


def test_legacy_materials_get_a_pbr_summary_without_a_node_tree(batch: dict[str, dict[str, Any]]) -> None:
    materials = by_name(doc(batch, LEGACY)["materials"])
    wood = materials["Wood"]
    assert wood["source"] == "legacy" and wood.get("node_tree") is None
    assert wood["pbr"]["base_color"] == pytest.approx(wood["diffuse_color"])
    assert wood["pbr"]["base_color"][:3] != [0.8, 0.8, 0.8]


def test_glb_import_keeps_rig_materials_and_actions(batch: dict[str, dict[str, Any]]) -> None:
    document = doc(batch, GLB)
    objects = by_name(document["objects"])
    assert objects["Anglerfish"]["parent"] == "Fish_Armature"
    assert objects["Fish_Armature"]["armature"]["bones"]
    assert "Anglerfish_Main" in by_name(document["materials"])
    assert "Fish_Armature|Attack" in by_name(document["actions"])


# In bpy, in the extraction children's environment: imports a skinned glTF, checking each skinning
# product of the glTF importer (np.matmul, an OpenBLAS sgemv per vertex) against the same product
# in one fixed order of IEEE operations (products rounded, then summed left to right), and counting
# the vertices that OpenBLAS's AVX-512 kernel would have made other: it computes
# fma(m2, v2, fma(m0, v0, m1 v1)), the order that rebuilt the AVX-512 machine's version exactly.
_SKINNING = """
import json, sys
import bpy
import numpy as np
import io_scene_gltf2.blender.imp.mesh as gltf_mesh
import threadpoolctl
importer_product, counts = gltf_mesh.mul_mats_vecs, []
def differing(a, b):
    return int((~((a == b) | (np.isnan(a) & np.isnan(b)))).any(axis=1).sum())  # NaN matrices in some files
def checked(mats, vecs):
    out = importer_product(mats, vecs)
    fixed = (mats[:, :, 0] * vecs[:, None, 0] + mats[:, :, 1] * vecs[:, None, 1]) + mats[:, :, 2] * vecs[:, None, 2]
    m, v = mats.astype(np.float64), vecs.astype(np.float64)  # products exact, one rounding per step
    fused = (m[:, :, 0] * v[:, None, 0] + (m[:, :, 1] * v[:, None, 1]).astype(np.float32)).astype(np.float32)
    fused = (fused + m[:, :, 2] * v[:, None, 2]).astype(np.float32)
    counts.append((len(out), differing(out, fixed), differing(fused, fixed)))
    return out
gltf_mesh.mul_mats_vecs = checked
bpy.ops.import_scene.gltf(filepath=sys.argv[1])
blas = [i["architecture"] for i in threadpoolctl.threadpool_info() if i["internal_api"] == "openblas"]
vertices, differ, fused_differ = (sum(c[k] for c in counts) for k in range(3))
print(json.dumps({"vertices": vertices, "differ": differ, "fused_differ": fused_differ, "blas": blas}))
"""


def test_skinned_vertices_are_the_same_on_every_cpu() -> None:
    """Issue 19: an AVX-512 machine built another geometry dataset version, because OpenBLAS's
    AVX-512 kernels fuse the multiply-adds of the importer's skinning into the bind pose and the
    skinned vertices came out other in their last bits. The children name the kernels instead of
    taking the machine's, so the products are the twice-rounded ones whatever the CPU."""
    environment = child_environment()
    done = subprocess.run(
        [sys.executable, "-c", _SKINNING, str(GLB)],
        env=environment,
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["vertices"] > 1000 and result["fused_differ"] > 0, result  # fused would be caught
    assert result["differ"] == 0, result
    if "OPENBLAS_CORETYPE" in environment:  # a CPU with AVX2 and FMA
        assert result["blas"] == [environment["OPENBLAS_CORETYPE"]], result


def test_ascii_fbx_converted_with_names_intact(batch: dict[str, dict[str, Any]]) -> None:
    document = doc(batch, ASCII_FBX)
    assert {"bathroomCabinet", "door"} <= set(by_name(document["objects"]))
    assert set(by_name(document["materials"])) == {"metal", "wood", "woodDark"}


def test_previews_are_rendered_images_of_the_asset(batch: dict[str, dict[str, Any]]) -> None:
    for path in (MODIFIERS, ANIMATED, GLB):
        image = Image.open(batch[path.name]["preview"]).convert("L")
        assert image.size == (128, 128)
        low, high = image.getextrema()
        assert high - low > 40, f"{path.name}: preview is blank"


def test_output_is_byte_stable(batch: dict[str, dict[str, Any]], tmp_path: Path) -> None:
    again = extract([NODE_GROUPS, ANIMATED], tmp_path)
    for path in (NODE_GROUPS, ANIMATED):
        assert (
            Path(again[path.name]["document"]).read_bytes() == Path(batch[path.name]["document"]).read_bytes()
        )


def test_command_line_writes_documents_and_summary(tmp_path: Path) -> None:
    zero = tmp_path / "in" / "zero.blend"
    zero.parent.mkdir()
    zero.write_bytes(b"")
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "blender_worker.extract", str(MODIFIERS), str(zero.parent), "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0, done.stderr  # a rejection is a handled file, not a failure
    assert "2 files in" in done.stdout and "1 ok, 1 rejected" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["ok", "rejected"]
    assert (out / f"{MODIFIERS.name}.json").exists()
    assert not (out / "zero.blend.json").exists()
