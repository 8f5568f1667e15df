"""The evaluation's shape classifier, and loading generators by their model kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from services.trainer.__main__ import main as trainer_main
from services.trainer.geometry_classifier import (
    ClassifierConfig,
    ShapeClassifier,
    augment,
    mesh_on_grid,
    save_classifier,
    shape_features,
    train_classifier,
)
from shared.ml.geometry_generator import GeometryGenerator, load_generator
from shared.ml.geometry_model import GeometryModel, GeometryModelConfig, save_checkpoint
from shared.ml.synthetic_meshes import synthetic_items
from tests.geometry_helpers import write_dataset

# Shapes a person tells apart at a glance: flat and wide, tall and pointed, a staircase.
DISTINCT = ("table", "cone", "stairs")


def distinct_items(count: int, seed: int, split: str) -> list[dict]:
    items = [it for it in synthetic_items(count * 3, seed=seed, split=split) if it["category"] in DISTINCT]
    return items[:count]


@pytest.mark.parametrize("kind", ["features", "points"])
def test_classifier_tells_clearly_different_shapes_apart(kind, tmp_path):
    train, val = distinct_items(36, 1, "train"), distinct_items(15, 2, "val")
    config = ClassifierConfig(
        input=kind, epochs=8, batch_size=8, points=128, pool_points=256, width=32, lr=5e-3
    )
    classifier, record = train_classifier(train, val, config, log=lambda line: None)
    assert classifier.categories == sorted(DISTINCT)
    chance = 1 / len(DISTINCT)
    assert record["val_accuracy"] >= chance + 0.25, record["history"]
    assert np.array(record["val_confusion"]).sum() == len(val)
    save_classifier(classifier, tmp_path / "c.pt", {**record, "dataset": {"manifest_sha256": "x"}})
    loaded = ShapeClassifier.load(tmp_path / "c.pt")  # fp16 on disk: the same answers
    meshes = [mesh_on_grid(it["mesh"]["vertices"], it["mesh"]["faces"]) for it in val]
    assert loaded.predict(meshes) == classifier.predict(meshes)
    # A mesh's category does not depend on the meshes listed beside it.
    assert loaded.predict(meshes[3:5]) == loaded.predict(meshes)[3:5]
    assert loaded.meta["dataset"] == {"manifest_sha256": "x"} and len(loaded.meta["version"]) == 16


def test_augmented_clouds_stay_in_the_unit_cube_and_features_ignore_turns_about_z():
    mesh = mesh_on_grid(**{k: v for k, v in distinct_items(1, 0, "train")[0]["mesh"].items()})
    from services.trainer.geometry_metrics import sample_points

    cloud = sample_points(mesh, 2048, np.random.default_rng(0))[None]
    moved = augment(np.repeat(cloud, 4, 0), np.random.default_rng(1))
    extent = moved.max(1) - moved.min(1)
    assert np.allclose(extent.max(1), 1.0) and np.allclose((moved.max(1) + moved.min(1)) / 2, 0, atol=1e-9)
    turned = cloud[0] @ np.array([[0.0, -1, 0], [1, 0, 0], [0, 0, 1]])  # a quarter turn about Z
    a, b = (shape_features(c, np.random.default_rng(5)) for c in (cloud[0], turned))
    assert np.allclose(a, b, atol=1e-6)


def test_trainer_cli_measures_each_input_and_keeps_the_best(tmp_path, capsys):
    write_dataset(
        tmp_path / "ds",
        {"train": distinct_items(12, 1, "train"), "val": distinct_items(6, 2, "val"), "test": []},
    )
    trainer_main(
        ["geometry-classifier", "--dataset", str(tmp_path / "ds"), "--input", "features", "--input", "points",
         "--epochs", "1", "--out", str(tmp_path / "c.pt")]
    )  # fmt: skip
    saved = torch.load(tmp_path / "c.pt", weights_only=False)
    assert set(saved["compared"]) == {"features", "points"}
    assert saved["input"] == max(saved["compared"], key=lambda k: saved["compared"][k]["val_accuracy"])
    assert saved["dataset"]["name"] == "test-geometry" and "test" not in " ".join(saved["splits_seen"])
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values() if v.is_floating_point())


def test_load_generator_picks_the_kind_and_refuses_an_unknown_one(tmp_path):
    model = GeometryModel(
        GeometryModelConfig.preset("tiny", d_model=32, n_layers=1, n_heads=1, max_tokens=64)
    )
    save_checkpoint(tmp_path / "flat.pt", model)
    generator = load_generator(tmp_path / "flat.pt", "cpu")  # no model_kind: a flat model
    assert isinstance(generator, GeometryGenerator)
    ckpt = torch.load(tmp_path / "flat.pt", weights_only=False)
    torch.save({**ckpt, "model_kind": "voxels"}, tmp_path / "voxels.pt")
    with pytest.raises(ValueError, match="unknown model_kind 'voxels'"):
        load_generator(tmp_path / "voxels.pt", "cpu")
