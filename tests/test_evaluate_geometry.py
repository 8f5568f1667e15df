"""Geometry evaluation: metrics on known cases, and a whole evaluation run against a small dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from services.trainer import evaluate_geometry as evaluate_module
from services.trainer.evaluate_geometry import evaluate_geometry
from services.trainer.geometry_classifier import ClassifierConfig, save_classifier, train_classifier
from services.trainer.geometry_metrics import (
    Cloud,
    NearestNeighbourIndex,
    chamfer,
    distance_matrix,
    fscore,
    sample_points,
    set_metrics,
    validity,
)
from shared.ml.datasets import dataset_version
from shared.ml.geometry_model import GeometryModel, GeometryModelConfig, save_checkpoint
from shared.ml.mesh_tokenizer import QuantizedMesh, quantize_mesh
from shared.ml.synthetic_meshes import box, cylinder, synthetic_items
from tests.geometry_helpers import write_dataset


def cloud(mesh, seed=0, n=512) -> Cloud:
    return Cloud(sample_points(mesh, n, np.random.default_rng(seed)))


def test_chamfer_and_fscore_of_a_mesh_to_itself():
    cube = quantize_mesh(*box())
    a = cloud(cube)
    assert chamfer(a, a) == 0.0 and fscore(a, a) == 1.0
    b = cloud(cube, seed=1)  # other samples of the same surface: close, not identical
    assert 0 < chamfer(a, b) < 0.01  # the sampling noise floor at 512 points
    far = quantize_mesh(*cylinder(6, top_radius=0))
    assert chamfer(a, cloud(far)) > 3 * chamfer(a, b)
    assert fscore(a, cloud(far)) < fscore(a, b)


def test_surface_samples_lie_on_the_surface():
    cube = quantize_mesh(*box())
    points = sample_points(cube, 2000, np.random.default_rng(0))
    # Every sample of the unit cube's surface touches at least one face plane |coordinate| = 0.5.
    assert np.allclose(np.abs(points).max(1), 0.5, atol=1e-9)


def test_nearest_neighbour_index_finds_the_exact_nearest():
    meshes = [quantize_mesh(*cylinder(n)) for n in (3, 4, 5, 6, 8, 12, 16)] + [quantize_mesh(*box())]
    clouds = [cloud(m, seed=k) for k, m in enumerate(meshes)]
    index = NearestNeighbourIndex(clouds, candidates=3)
    for k, c in enumerate(clouds):
        assert index.nearest(c) == (k, 0.0)
    query = cloud(meshes[-1], seed=99)
    exact = min(range(len(clouds)), key=lambda j: chamfer(query, clouds[j]))
    assert index.nearest(query)[0] == exact == len(meshes) - 1


def test_set_metrics_of_identical_and_disjoint_sets():
    meshes = [quantize_mesh(*cylinder(n)) for n in (3, 4, 6, 8)] + [quantize_mesh(*box((1, 1, 0.2)))]
    clouds = [cloud(m) for m in meshes]
    same = set_metrics(clouds, clouds)
    assert same["COV"] == 100.0 and same["MMD"] == 0.0
    assert same["1-NNA"] == 0.0  # each sample's nearest other is its identical twin in the other set
    cones = [cloud(quantize_mesh(*cylinder(n, top_radius=0)), seed=n) for n in (3, 4, 6, 8, 12)]
    apart = set_metrics(cones, clouds)
    assert apart["1-NNA"] >= 80.0 and apart["MMD"] > 0
    within = distance_matrix(clouds)  # each pair once, mirrored
    assert np.allclose(within, distance_matrix(clouds, clouds)) and np.allclose(within, within.T)
    assert set_metrics(cones, clouds, within) == apart


def test_validity_of_closed_open_and_degenerate_meshes():
    cube = validity(quantize_mesh(*box()))
    assert cube == {"faces": 6, "degenerate_faces": 0, "manifold_edge_share": 1.0}
    verts, faces = box()
    open_box = validity(quantize_mesh(verts, faces[1:]))
    assert open_box["manifold_edge_share"] == pytest.approx(8 / 12)
    flat = QuantizedMesh(np.array([[0, 0, 0], [1, 0, 0], [2, 0, 0]]), [(0, 1, 2)], bits=7)
    assert validity(flat)["degenerate_faces"] == 1  # collinear corners: zero area


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """A synthetic dataset, two tiny untrained flat generators and a classifier trained on the
    dataset's train split for a few epochs."""
    tmp = tmp_path_factory.mktemp("eval")
    train, test = synthetic_items(24, seed=1, split="train"), synthetic_items(5, seed=1, split="test")
    write_dataset(tmp / "ds", {"train": train, "val": train[:3], "test": test})
    checkpoints = []
    for k in range(2):
        torch.manual_seed(k)
        model = GeometryModel(
            GeometryModelConfig.preset("tiny", d_model=64, n_layers=2, n_heads=2, max_tokens=200)
        )
        (tmp / f"gen{k}").mkdir()
        save_checkpoint(tmp / f"gen{k}" / "model.pt", model, half=True)
        checkpoints.append(str(tmp / f"gen{k}" / "model.pt"))
    classifier, record = train_classifier(
        train, train[:3], ClassifierConfig(input="features", epochs=2, points=128, pool_points=256), log=print
    )
    save_classifier(classifier, tmp / "classifier.pt", {**record, "dataset": dataset_version(tmp / "ds")})
    return tmp, checkpoints


SHEET = (("a table", "table"), ("a cone", "cone"), ("a box", "box"))


def test_evaluation_run_scores_every_source_and_writes_every_key(small_run):
    tmp, checkpoints = small_run
    result = evaluate_geometry(
        checkpoints,
        str(tmp / "ds"),
        str(tmp / "out"),
        classifier=tmp / "classifier.pt",
        points=256,
        face_budget=8,
        samples_per_prompt=2,
        prompt_sheet=SHEET,
    )
    metrics = json.loads((tmp / "out" / "metrics.json").read_text())
    assert metrics == json.loads(json.dumps(result["metrics"], default=float))
    required = [
        "valid_share",
        "manifold_share",
        "category_accuracy",
        "retrieval_category_accuracy",
        "real_category_accuracy",
        "cov",
        "retrieval_cov",
        "one_nna",
        "retrieval_one_nna",
        "novelty",
        "retrieval_novelty",
        "seconds_per_object",
        "items",
        "dataset_version",
        "classifier_version",
    ]
    assert not [k for k in required if k not in metrics]
    assert metrics["items"] == 5 and metrics["generators"] == ["gen0", "gen1"]
    assert metrics["notes"] == []  # the classifier was trained on this very dataset
    assert metrics["valid_share"] == 1.0 and metrics["retrieval_valid_share"] == 1.0
    assert metrics["retrieval_novelty"] == 0.0  # retrieval returns training meshes
    for name in ("gen0", "gen1"):  # every generator, prefixed
        assert 0 <= metrics[f"{name}/category_accuracy"] <= 1 and metrics[f"{name}/seconds_per_object"] > 0
    assert metrics["category_accuracy"] == metrics["gen0/category_accuracy"]
    for key in ("chamfer", "fscore", "cov", "mmd", "one_nna", "manifold_share"):
        assert np.isfinite(metrics[key]) and np.isfinite(metrics[f"retrieval_{key}"])
    saved = json.loads((tmp / "out" / "eval.json").read_text())
    assert len(saved["rows"]["gen1"]) == 10 and len(saved["rows"]["retrieval"]) == 10
    # Retrieval's k candidates per prompt are distinct training meshes.
    per_prompt = {}
    for row in saved["rows"]["retrieval"]:
        per_prompt.setdefault(row["prompt"], []).append(row["novelty"])
    assert all(len(v) == 2 for v in per_prompt.values())
    assert [c["prompt"] for c in saved["prompt_sheet"]["retrieval"]] == [p for p, _ in SHEET]
    for png in ("samples.png", "prompt_sheet.png"):
        data = (tmp / "out" / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 10_000


def test_the_first_items_only_and_samples_do_not_depend_on_batch_size(small_run):
    tmp, checkpoints = small_run
    runs = {}
    for batch_size in (1, 2):
        out = tmp / f"limit-{batch_size}"
        evaluate_geometry(
            checkpoints[:1],
            str(tmp / "ds"),
            str(out),
            classifier=tmp / "classifier.pt",
            max_prompts=2,
            points=64,
            face_budget=4,
            samples_per_prompt=3,
            batch_size=batch_size,
            split="val",
            prompt_sheet=SHEET[:1],
        )
        runs[batch_size] = json.loads((out / "eval.json").read_text())
    assert runs[1]["metrics"]["items"] == 2 and runs[1]["metrics"]["split"] == "val"
    assert len(runs[1]["rows"]["gen0"]) == 6 and len(runs[1]["rows"]["retrieval"]) == 6
    # The same samples, whatever the batch size (the seconds aside).
    for run in runs.values():
        for name in ("gen0",):
            del run["summary"][name]["seconds_per_object"]
    assert runs[2]["rows"]["gen0"] == runs[1]["rows"]["gen0"]
    assert runs[2]["summary"] == runs[1]["summary"]


def test_eval_limit_reaches_the_evaluation(monkeypatch):
    calls = []
    monkeypatch.setattr(evaluate_module, "evaluate_geometry", lambda *a, **kw: calls.append((a, kw)))
    monkeypatch.setattr(evaluate_module, "print_table", lambda result: None)
    monkeypatch.setenv("EVAL_LIMIT", "7")
    evaluate_module.main(["--checkpoint", "a.pt", "--checkpoint", "b.pt"])
    monkeypatch.delenv("EVAL_LIMIT")
    evaluate_module.main([])
    assert [kw["max_prompts"] for _, kw in calls] == [7, None]
    assert [a[0] for a, _ in calls] == [["a.pt", "b.pt"], evaluate_module.DEFAULT_CHECKPOINTS]


def test_evaluation_needs_train_and_test_items(small_run, tmp_path):
    _, checkpoints = small_run
    write_dataset(tmp_path / "ds", {"train": synthetic_items(2), "test": []})
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_geometry(checkpoints[:1], str(tmp_path / "ds"), str(tmp_path / "out"))
