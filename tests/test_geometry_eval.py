"""Geometry evaluation: metrics on known cases, and a whole evaluation run against a small dataset."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from services.trainer.evaluate import evaluate_geometry
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


def test_evaluation_run_scores_model_and_retrieval_and_draws_the_grid(tmp_path):
    train, test = synthetic_items(16, seed=1, split="train"), synthetic_items(4, seed=1, split="test")
    write_dataset(tmp_path / "ds", {"train": train, "val": train[:2], "test": test})
    torch.manual_seed(0)
    model = GeometryModel(
        GeometryModelConfig.preset("tiny", d_model=64, n_layers=2, n_heads=2, max_tokens=200)
    )
    save_checkpoint(tmp_path / "model.pt", model, half=True)
    result = evaluate_geometry(
        str(tmp_path / "model.pt"), str(tmp_path / "ds"), str(tmp_path / "out"), points=256, face_budget=8
    )
    model_row, retrieval = result["summary"]["model"], result["summary"]["retrieval"]
    assert model_row["valid_decodes_%"] == 100.0 and retrieval["valid_decodes_%"] == 100.0
    assert retrieval["novelty_x1e3"] == 0.0  # retrieval returns training meshes
    for key in ("chamfer_x1e3", "fscore@0.02", "COV", "MMD", "1-NNA", "manifold_edges_%"):
        assert np.isfinite(model_row[key]) and np.isfinite(retrieval[key])
    assert result["prompts"] == 4
    saved = json.loads((tmp_path / "out" / "eval.json").read_text())
    assert len(saved["rows"]["model"]) == 4
    png = (tmp_path / "out" / "samples.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    on_val = {
        batch_size: evaluate_geometry(
            str(tmp_path / "model.pt"),
            str(tmp_path / "ds"),
            str(tmp_path / f"val-{batch_size}"),
            points=64,
            face_budget=4,
            split="val",
            samples_per_prompt=3,
            batch_size=batch_size,
        )
        for batch_size in (1, 2)
    }
    assert on_val[1]["split"] == "val" and on_val[1]["prompts"] == 2  # sampling settings are chosen there
    saved = {b: json.loads((tmp_path / f"val-{b}" / "eval.json").read_text()) for b in on_val}
    assert len(saved[1]["rows"]["model"]) == 6 and len(saved[1]["rows"]["retrieval"]) == 2
    # The same samples, whatever the batch size.
    assert [r["tokens"] for r in saved[2]["rows"]["model"]] == [
        r["tokens"] for r in saved[1]["rows"]["model"]
    ]
    assert saved[2]["summary"] == saved[1]["summary"]


def test_evaluation_needs_train_and_test_items(tmp_path):
    write_dataset(tmp_path / "ds", {"train": synthetic_items(2), "test": []})
    model = GeometryModel(
        GeometryModelConfig.preset("tiny", d_model=32, n_layers=1, n_heads=1, max_tokens=64)
    )
    save_checkpoint(tmp_path / "model.pt", model)
    with pytest.raises(ValueError, match="non-empty"):
        evaluate_geometry(str(tmp_path / "model.pt"), str(tmp_path / "ds"), str(tmp_path / "out"))
