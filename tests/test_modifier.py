"""The modifier specialist: structure found in synthetic meshes (a mirrored pair, an array of
cubes, a solidified plane), its verification in real Blender, the stack serialisation and its
grammar, training, the generator's request/result contract, evaluation, and the injector building
a predicted stack as live modifiers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from shared.ml.modifier_structure import MeshArrays, features, peel, peel_stack
from shared.ml.modifier_tokens import StackTokenError, decode, encode, from_slots, to_slots
from shared.ml.synthetic_meshes import box, merge

REPO = Path(__file__).resolve().parents[1]


def wedge(at: float, flip: bool) -> tuple[np.ndarray, list[list[int]]]:
    """A wedge leaning away from x = 0 (not symmetric by itself), or its mirror image."""
    v = np.array([[0.2, 0, 0], [1, 0, 0], [1, 1, 0], [0.2, 1, 0], [0.2, 0, 0.6], [0.2, 1, 0.6]], float)
    faces = [[0, 3, 2, 1], [0, 1, 4], [3, 5, 2], [1, 2, 5, 4], [0, 4, 5, 3]]
    v[:, 0] += at
    if flip:
        v[:, 0] *= -1
        faces = [f[::-1] for f in faces]
    return v, faces


def mirrored_pair() -> MeshArrays:
    return MeshArrays(*merge(wedge(0.3, False), wedge(0.3, True)))


def cube_array(count: int = 4) -> MeshArrays:
    return MeshArrays(*merge(*[box((1, 1, 1), (2.0 * k, 0, 0.5)) for k in range(count)]))


def solidified_plane(n: int = 4, thickness: float = 0.05) -> MeshArrays:
    xs = np.linspace(0, 1, n)
    top = np.array([[x, y, 0.0] for y in xs for x in xs])
    faces = [
        [j * n + i, j * n + i + 1, (j + 1) * n + i + 1, (j + 1) * n + i]
        for j in range(n - 1)
        for i in range(n - 1)
    ]
    ring = [
        *range(n - 1),
        *range(n - 1, n * n - 1, n),
        *range(n * n - 1, n * (n - 1), -1),
        *range(n * (n - 1), 0, -n),
    ]
    shell = faces + [[a + n * n for a in f[::-1]] for f in faces]
    shell += [[b, a, a + n * n, b + n * n] for a, b in zip(ring, ring[1:] + ring[:1], strict=True)]
    return MeshArrays(np.vstack([top, top - [0, 0, thickness]]), shell)


def triangulated_grid(n: int = 3, bump: float = 0.0) -> MeshArrays:
    """A height field symmetric about x = 0 whose quads are all cut along the same diagonal, so its
    halves are each other's reflection in points but not in faces (an exporter's triangulation)."""
    xs, ys = np.linspace(-1, 1, 2 * n + 1), np.linspace(0, 1, n + 1)
    v = np.array([[x, y, bump * np.cos(np.pi * x) * np.sin(2 * np.pi * y)] for y in ys for x in xs])
    w, faces = len(xs), []
    for j in range(n):
        for i in range(2 * n):
            a, b, c, d = j * w + i, j * w + i + 1, (j + 1) * w + i + 1, (j + 1) * w + i
            faces += [[a, b, c], [a, c, d]]
    return MeshArrays(v, faces)


def paired_array(count: int = 3) -> MeshArrays:
    """An Array whose element is two different parts (a crate and a post) on a diagonal step."""
    crates = [box((1, 1, 1), (2.0 * k, 1.5 * k, 0)) for k in range(count)]
    posts = [box((0.5, 0.5, 2), (2.0 * k, 1.5 * k + 1.2, 0)) for k in range(count)]
    return MeshArrays(*merge(*crates, *posts))


def two_sheets(n: int = 4, thickness: float = 0.05) -> MeshArrays:
    """A solidified plane without its rim: two parallel open sheets (Solidify, Fill Rim off)."""
    shell = solidified_plane(n, thickness)
    return MeshArrays(shell.vertices, shell.faces[: 2 * (n - 1) ** 2])


def pyramid() -> MeshArrays:
    v = np.array([[0, 0, 0], [1, 0, 0], [0.3, 1.2, 0], [0.2, 0.4, 1.0]], float)
    return MeshArrays(v, [[0, 2, 1], [0, 1, 3], [1, 2, 3], [2, 0, 3]])


# ---- structure -------------------------------------------------------------------------------------


def test_a_mirrored_pair_peels_to_its_half_about_the_origin():
    found = peel(mirrored_pair())
    assert [m["type"] for m in found.stack] == ["MIRROR"]
    assert found.stack[0]["params"]["use_axis"] == [True, False, False]
    assert len(found.base.faces) == 5 and found.base.vertices[:, 0].min() >= 0


def test_an_array_of_cubes_peels_to_one_cube_with_its_count_and_step():
    found = peel(cube_array(4))
    (array,) = found.stack
    assert array["type"] == "ARRAY" and array["params"]["count"] == 4
    assert array["params"]["relative_offset_displace"] == pytest.approx([2.0, 0, 0])
    assert len(found.base.faces) == 6


def test_a_solidified_plane_peels_to_one_sheet_and_its_thickness():
    found = peel(solidified_plane(thickness=0.05))
    (solidify,) = found.stack
    assert solidify["type"] == "SOLIDIFY" and solidify["params"]["thickness"] == pytest.approx(0.05)
    assert len(found.base.faces) == 9


def test_a_mesh_without_that_structure_gets_no_stack_and_the_reasons():
    found = peel(pyramid())
    assert found.stack == []
    assert set(found.rejections) == {"MIRROR", "ARRAY", "SOLIDIFY"}
    assert found.rejections["ARRAY"] == "one_part"


def test_relaxed_rules_find_a_retriangulated_mirror_a_loose_one_and_a_multi_part_array():
    grid = triangulated_grid()
    found = peel(grid)
    assert [m["type"] for m in found.stack] == ["MIRROR"] and found.rules == ["mirror_retriangulated"]
    assert len(found.base.faces) == len(grid.faces) // 2
    loose = mirrored_pair()
    loose.vertices[0] += [0, 0, 5e-4 * loose.diagonal]  # off its reflection by more than 1e-4
    assert peel(loose).rules == ["mirror_loose"]
    found = peel(paired_array(3))
    (array,) = found.stack
    assert found.rules == ["array_translation"] and found.rejections["MIRROR"]
    assert array["params"]["count"] == 3 and len(found.base.faces) == 12
    assert array["params"]["constant_offset_displace"] == pytest.approx([2.0, 1.5, 0.0])
    assert peel(cube_array(3)).rules == ["array"]  # the strict rule first
    found = peel(two_sheets())
    assert found.rules == ["solidify_rimless"] and found.stack[0]["params"]["use_rim"] is False
    assert found.stack[0]["params"]["thickness"] == pytest.approx(0.05) and len(found.base.faces) == 9


def test_welding_joins_split_vertices_so_parts_and_shells_show():
    mesh = cube_array(3)
    split = MeshArrays(
        np.vstack([mesh.vertices[f] for f in mesh.faces]),
        [list(range(4 * k, 4 * k + 4)) for k in range(len(mesh.faces))],
    )
    assert peel(split).stack == []  # 18 loose quads: no part repeats, no plane leaves faces whole
    assert len(split.welded().vertices) == 24
    assert [m["type"] for m in peel(split.welded()).stack] == ["ARRAY"]


def test_features_have_a_fixed_length_and_see_symmetry():
    from shared.ml.modifier_structure import FEATURE_NAMES

    symmetric, lopsided = features(mirrored_pair()), features(pyramid())
    assert symmetric.shape == lopsided.shape == (len(FEATURE_NAMES),)
    x_exact = FEATURE_NAMES.index("mirror_X_exact")
    assert symmetric[x_exact] == 1.0 and lopsided[x_exact] < 1.0


def test_cached_features_are_keyed_by_the_features_code(tmp_path, monkeypatch):
    from services.trainer import modifier

    item = {"mesh": {"vertices": pyramid().vertices.tolist(), "faces": [list(f) for f in pyramid().faces]}}
    values, diagonal = modifier.mesh_features(item, tmp_path)
    assert len(list(tmp_path.iterdir())) == 1
    assert np.allclose(modifier.mesh_features(item, tmp_path)[0], values)  # read back
    np.save(next(tmp_path.iterdir()), np.append(values + 1, diagonal).astype(np.float32))
    assert np.allclose(modifier.mesh_features(item, tmp_path)[0], values + 1)  # the file is what is read
    monkeypatch.setattr(modifier, "features_code", lambda: "edited features")
    assert np.allclose(modifier.mesh_features(item, tmp_path)[0], values)  # computed anew, not the old file
    assert len(list(tmp_path.iterdir())) == 2


def test_a_predicted_stack_is_cut_to_what_the_mesh_carries():
    stack = from_slots(
        to_slots(
            [
                {"type": "MIRROR", "params": {"use_axis": [True, False, False]}},
                {"type": "ARRAY", "params": {"count": 3}},
                {"type": "SUBSURF", "params": {"levels": 2}},
            ],
            3.0,
        ),
        3.0,
    )
    peeled = peel_stack(mirrored_pair(), stack)
    assert [m["type"] for m in peeled.stack] == ["MIRROR", "SUBSURF"]
    assert set(peeled.rejections) == {"ARRAY"} and len(peeled.base.faces) == 5


# ---- tokens ----------------------------------------------------------------------------------------


def test_stacks_round_trip_through_slots_and_tokens():
    stack = [
        {"type": "MIRROR", "params": {"use_axis": [True, False, True]}},
        {"type": "SOLIDIFY", "params": {"thickness": 0.02, "offset": -1}},
        {
            "type": "ARRAY",
            "params": {"count": 4, "use_relative_offset": True, "relative_offset_displace": [0, -2.0, 0]},
        },
        {"type": "BEVEL", "params": {"width": 0.01, "segments": 3}},
        {"type": "SUBSURF", "params": {"levels": 2}},
    ]
    slots = to_slots(stack, diagonal=2.0)
    again = decode(encode(slots))
    assert again == slots
    built = from_slots(again, 2.0)
    assert [m["type"] for m in built] == ["MIRROR", "SOLIDIFY", "ARRAY", "BEVEL", "SUBSURF"]
    assert built[0]["params"]["use_axis"] == [True, False, True]
    assert built[1]["params"]["thickness"] == pytest.approx(0.02, rel=0.25)
    assert built[2]["params"]["count"] == 4 and built[2]["params"][
        "relative_offset_displace"
    ] == pytest.approx([0, -2.0, 0], rel=0.15)
    assert built[3]["params"]["segments"] == 3 and built[4]["params"]["levels"] == 2


def test_the_grammar_refuses_out_of_order_repeated_or_truncated_stacks():
    tokens = encode(
        to_slots([{"type": "MIRROR", "params": {}}, {"type": "SUBSURF", "params": {"levels": 1}}], 1.0)
    )
    with pytest.raises(StackTokenError, match="expected a type"):
        decode([tokens[0], tokens[3], tokens[4], tokens[1], tokens[2], tokens[-1]])  # SUBSURF before MIRROR
    with pytest.raises(StackTokenError, match="expected a mirror_axes class"):
        decode([tokens[0], tokens[1], tokens[-1]])
    with pytest.raises(StackTokenError, match="<bos>"):
        decode(tokens[1:])


# ---- real Blender ----------------------------------------------------------------------------------


def test_blender_rebuilds_the_three_synthetic_meshes_and_refuses_a_wrong_stack():
    from blender_worker.modifier_apply import apply_batch
    from blender_worker.settings import ExtractSettings
    from services.labeler.modifier_derive import verify

    originals = {"pair": mirrored_pair(), "array": cube_array(3), "plane": solidified_plane()}
    jobs, shifted = [], {}
    for name, mesh in originals.items():
        found = peel(mesh)
        shifted[name] = MeshArrays(mesh.vertices - found.origin, mesh.faces)
        jobs.append({"id": name, "mesh": found.base.to_dict(), "modifiers": found.stack})
    wrong = peel(originals["pair"])
    wrong.base.vertices[:, 0] += 0.1  # the half too far from the plane: the halves drift apart
    jobs.append({"id": "wrong", "mesh": wrong.base.to_dict(), "modifiers": wrong.stack})
    jobs.append({"id": "broken", "mesh": {"vertices": [[0, 0, 0]], "faces": [[0, 1, 2]]}, "modifiers": []})
    results = {r["id"]: r for r in apply_batch(jobs, ExtractSettings(workers=1))}
    for name in originals:
        kept, reason, measures = verify(shifted[name], results[name])
        assert kept, (name, reason, measures)
    kept, reason, _ = verify(shifted["pair"], results["wrong"])
    assert not kept and reason == "vertices"  # the rebuilt vertices are not the original's
    assert not results["broken"]["ok"] and "out of range" in results["broken"]["error"]
    assert verify(shifted["pair"], results["broken"])[:2] == (False, "blender_error")


def test_blender_keeps_a_relaxed_pair_only_when_its_surface_is_the_original():
    from blender_worker.modifier_apply import apply_batch
    from blender_worker.settings import ExtractSettings
    from services.labeler.modifier_derive import verify

    # flat quads cut the other way are the same surface; strongly bent ones are not
    originals = {
        "flat": triangulated_grid(bump=0.0),
        "bent": triangulated_grid(bump=0.5),
        "paired": paired_array(),
        "sheets": two_sheets(),
    }
    jobs, shifted = [], {}
    for name, mesh in originals.items():
        found = peel(mesh)
        shifted[name] = MeshArrays(mesh.vertices - found.origin, mesh.faces)
        jobs.append({"id": name, "mesh": found.base.to_dict(), "modifiers": found.stack})
    results = {r["id"]: r for r in apply_batch(jobs, ExtractSettings(workers=1))}
    kept, reason, measures = verify(shifted["flat"], results["flat"])
    assert kept and measures["shape_max"] < 1e-6, measures
    kept, reason, measures = verify(shifted["bent"], results["bent"])
    assert not kept and reason == "shape" and measures["vertex_max"] < 1e-5  # same points, other surface
    for name in ("paired", "sheets"):
        kept, reason, measures = verify(shifted[name], results[name])
        assert kept and measures["face_difference"] == 0, (name, reason, measures)


def test_a_batch_past_its_time_limit_is_retried_item_by_item_and_reported():
    from blender_worker.modifier_apply import apply_batch
    from blender_worker.settings import ExtractSettings

    found = peel(cube_array(2))
    job = {"id": "slow", "mesh": found.base.to_dict(), "modifiers": found.stack}
    (result,) = apply_batch([job], ExtractSettings(workers=1, timeout_s=0.001))
    assert not result["ok"] and "timed out" in result["error"]


# ---- derivation, training, generation, evaluation, injection --------------------------------------


def geometry_folder(root: Path) -> Path:
    """A geometry dataset folder of synthetic meshes, one pack per mesh, in all three splits."""
    from services.labeler.modifier_derive import write_dataset

    meshes = {
        "pair": (mirrored_pair(), "a symmetric low-poly wedge pair"),
        "array": (cube_array(4), "a row of crates"),
        "plane": (solidified_plane(), "a thin panel"),
        "pyramid": (pyramid(), "a rock"),
    }
    items = []
    for split in ("train", "val", "test"):
        for name, (mesh, caption) in meshes.items():
            items.append(
                {
                    "id": f"{split}-{name}",
                    "asset_sha256": "0" * 64,
                    "object": name,
                    "category": "prop",
                    "captions": [caption],
                    "license": "CC0-1.0",
                    "attribution": None,
                    "pack": f"{split}-{name}",
                    "split": split,
                    "mesh": mesh.to_dict(),
                }
            )
    folder = root / "geometry"
    manifest = write_dataset(items, folder, "synthetic")
    manifest["specialist"] = (
        "geometry"  # write_dataset writes modifier manifests; this one stands in for geometry's
    )
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture(scope="module")
def derived(tmp_path_factory) -> Path:
    from services.labeler.modifier_derive import derive

    root = tmp_path_factory.mktemp("modifier")
    report = derive(str(geometry_folder(root)), None, root / "out", progress=False, construct=4)
    assert report["meshes"] == 12 and report["verified_pairs"] == 9
    # one mesh per split has no stack (the pyramid): one constructed pair each, the held-out ones
    # a question set of the evaluation
    assert {s: sum(c.values()) for s, c in report["constructed"].items()} == {"train": 1, "val": 1, "test": 1}
    assert report["per_type"]["MIRROR"]["verified"] == 3 and report["per_type"]["ARRAY"]["verified"] == 3
    assert (root / "out" / "derive_examples.png").stat().st_size > 0
    return root / "out" / "derived"


def test_derived_items_have_the_real_items_shape_plus_derived_by(derived):
    from shared.ml.datasets import iter_split

    items = {i["object"]: i for i in iter_split(derived, "test", "modifier")}
    assert items["pair"]["derived_by"] == ["mirror"] and items["pyramid"]["derived_by"] == []
    for key in ("id", "pack", "license", "captions", "modifiers", "mesh", "evaluated_mesh"):
        assert key in items["array"]
    assert items["array"]["modifiers"][0]["params"]["count"] == 4
    assert len(items["array"]["mesh"]["faces"]) == 6 and len(items["array"]["evaluated_mesh"]["faces"]) == 24
    (constructed,) = [
        i for i in iter_split(derived, "train", "modifier") if i["derived_by"] == ["constructed"]
    ]
    assert constructed["object"] == "pyramid" and constructed["modifiers"][0]["type"] in ("ARRAY", "BEVEL")
    assert len(constructed["evaluated_mesh"]["faces"]) > len(constructed["mesh"]["faces"])


@pytest.fixture(scope="module")
def checkpoint(derived, tmp_path_factory) -> Path:
    from services.trainer.modifier import TrainConfig, export_model, train

    run = tmp_path_factory.mktemp("run")
    record = train(
        TrainConfig(dataset=str(derived), run_dir=str(run), epochs=40, batch_size=8, lr=1e-2, real_weight=1.0)
    )
    assert record["result"]["epochs"] == 40 and record["data"]["items"]["train"] == 5
    assert {"nearest_neighbour", "boosted_trees", "mlp_best"} <= set(record["result"]["architectures_on_val"])
    out = run / "model.pt"
    export_model(run, out)
    return out


def test_training_resumes_from_its_checkpoint(derived, tmp_path):
    from services.trainer.modifier import TrainConfig, train

    config = TrainConfig(dataset=str(derived), run_dir=str(tmp_path), epochs=2, batch_size=8)
    assert train(config)["result"]["steps"] == 2
    config.epochs, config.resume = 4, True
    assert train(config)["result"]["steps"] == 4  # two more epochs of one batch each, not four


def test_the_generator_answers_in_the_scene_format_and_carries_the_half(checkpoint):
    from shared.ml.modifier_generator import ModifierGenerator
    from shared.scene.models import Modifier

    generator = ModifierGenerator(checkpoint)
    pair, plain = generator.run_many(
        [
            {"prompt": "a symmetric low-poly wedge pair", "mesh": mirrored_pair().to_dict(), "seed": 1},
            {"prompt": "a rock", "mesh": pyramid().to_dict()},
        ]
    )
    assert [m["type"] for m in pair["modifiers"]] == ["MIRROR"]
    assert len(pair["base_mesh"]["faces"]) == 5 and pair["base_location"] == pytest.approx([0, 0, 0])
    assert plain["modifiers"] == [] and "base_mesh" not in plain
    # The user's own mesh (apply to selection) is kept: the Mirror would double it, so it is named.
    (kept,) = generator.run_many(
        [{"prompt": "a symmetric low-poly wedge pair", "mesh": mirrored_pair().to_dict(), "keep_mesh": True}]
    )
    assert kept["modifiers"] == [] and kept["left_out"] == ["MIRROR"] and "base_mesh" not in kept
    # asked for modifiers, the rock (none passes the threshold alone) gets the most probable type
    # that works on any mesh as it is, so it is never dropped
    (wanted,) = generator.run_many([{"prompt": "a rock", "mesh": pyramid().to_dict(), "at_least_one": True}])
    assert [m["type"] for m in wanted["modifiers"]] in (["BEVEL"], ["SUBSURF"]) and wanted["dropped"] == []
    assert "base_mesh" not in wanted
    # a stack that holds is not added to: the symmetric pair asked for modifiers gets its Mirror alone
    (pair_wanted,) = generator.run_many(
        [
            {
                "prompt": "a symmetric low-poly wedge pair",
                "mesh": mirrored_pair().to_dict(),
                "seed": 1,
                "at_least_one": True,
            }
        ]
    )
    assert [m["type"] for m in pair_wanted["modifiers"]] == ["MIRROR"]
    # the user's own symmetric mesh, asked for modifiers (apply to selection): its Mirror is left
    # out as before, and it gets the most probable type that works on the mesh as it is
    (own,) = generator.run_many(
        [
            {
                "prompt": "a symmetric low-poly wedge pair",
                "mesh": mirrored_pair().to_dict(),
                "keep_mesh": True,
                "at_least_one": True,
            }
        ]
    )
    assert own["left_out"] == ["MIRROR"] and "base_mesh" not in own
    assert [m["type"] for m in own["modifiers"]] in (["BEVEL"], ["SUBSURF"])
    for modifier in pair["modifiers"]:
        Modifier.model_validate(modifier)
    json.dumps([pair, plain])
    assert generator.run_many([]) == []


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"prompt": "", "mesh": {"vertices": [[0, 0, 0]], "faces": []}}, "prompt is empty"),
        ({"prompt": "a box"}, "mesh must be an object"),
        ({"prompt": "a box", "mesh": {"vertices": [[0, 0, 0]], "faces": [[0, 1, 2]]}}, "refers to vertex 2"),
        ({"prompt": "a box", "mesh": {"vertices": [], "faces": []}}, "needs vertices and faces"),
        ("a box", "expected an object"),
    ],
)
def test_the_generator_refuses_bad_requests_with_the_reason(checkpoint, request_, message):
    from shared.ml.modifier_generator import ModifierGenerator

    with pytest.raises(ValueError, match=message):
        ModifierGenerator(checkpoint).run_many([request_])


def test_evaluation_writes_metrics_with_baselines_and_a_picture(derived, checkpoint, tmp_path):
    from services.trainer.evaluate_modifier import evaluate_modifier

    metrics = evaluate_modifier(str(derived), checkpoint, tmp_path)
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "derived_type_f1",
        "derived_exact_match",
        "majority_exact_match",
        "real_exact_match",
        "real_majority_exact_match",
        "apply_ok_share",
        "items",
    ):
        assert key in saved
    assert saved["items"] == 4 and saved["apply_ok_share"] == 1.0
    assert saved["constructed_heldout"]["model"]["items"] == 1  # scored apart, not in items
    assert saved["derived_support"]["MIRROR"] == 1 and saved["derived_support"]["ARRAY"] == 1
    assert saved["rule_exact_match"] == 1.0  # the rule derived these pairs
    assert (tmp_path / "predictions.png").stat().st_size > 0 and metrics["png"]


def test_the_injector_builds_a_predicted_stack_as_live_modifiers(checkpoint):
    import bpy

    from addon.injector import inject_scene
    from shared.ml.modifier_generator import ModifierGenerator
    from tests.addon_support import reset_blender

    reset_blender()
    answer = ModifierGenerator(checkpoint).run_many(
        [{"prompt": "a row of crates", "mesh": cube_array(4).to_dict()}]
    )[0]
    assert [m["type"] for m in answer["modifiers"]] == ["ARRAY"]
    doc = {
        "schema_version": "1.0",
        "objects": [
            {
                "name": "Crates",
                "transform": {"location": answer["base_location"]},
                "mesh": {"name": "CrateMesh", **answer["base_mesh"]},
                "modifiers": answer["modifiers"],
            }
        ],
    }
    result = inject_scene(doc)
    obj = result.objects[0]
    assert result.warnings == []
    assert [(m.type, m.count) for m in obj.modifiers] == [("ARRAY", 4)]  # live, not applied
    assert len(obj.data.polygons) == 6
    evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get()).to_mesh()
    assert len(evaluated.polygons) == 24


def test_the_train_modifier_task_records_the_run_and_is_idempotent(derived):
    from shared.db import ensure_schema, session_scope
    from shared.db.models import Job, RunStatus, TrainingRun
    from shared.queue import submit

    ensure_schema()
    first = submit("train.modifier", preset="tiny", dataset=str(derived), epochs=2)
    with session_scope() as session:
        result = session.get(Job, first).result
        runs = session.query(TrainingRun).filter_by(specialist="modifier").all()
        assert len(runs) == 1 and runs[0].status == RunStatus.SUCCEEDED and result["epochs"] == 2
    again = submit("train.modifier", preset="tiny", dataset=str(derived), epochs=2)
    with session_scope() as session:
        assert session.get(Job, again).result["run_dir"] == result["run_dir"]
        assert session.query(TrainingRun).filter_by(specialist="modifier").count() == 1


def test_the_committed_checkpoint_loads_and_names_its_data():
    import torch

    from shared.ml.modifier_model import load_model

    model, ckpt = load_model(REPO / "models/modifier/tiny/model.pt")
    assert ckpt["run"]["data"]["name"] == "full-derived"
    assert ckpt["run"]["result"]["val_type_f1"] > 0
    assert all(not v.is_floating_point() or v.dtype == torch.float16 for v in ckpt["state_dict"].values())
    assert (REPO / "models/modifier/tiny/model.pt").stat().st_size < 2_000_000
