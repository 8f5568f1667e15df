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
    render_views,
    save_classifier,
    shape_features,
    surface_clouds,
    train_classifier,
    view_frames,
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


# Depth views need denser clouds (every visible pixel hit) and more steps: the CNN starts slower.
@pytest.mark.parametrize(
    "kind, points, epochs", [("features", 128, 8), ("points", 128, 8), ("views", 1024, 16)]
)
def test_classifier_tells_clearly_different_shapes_apart(kind, points, epochs, tmp_path):
    train, val = distinct_items(36, 1, "train"), distinct_items(15, 2, "val")
    config = ClassifierConfig(
        input=kind, epochs=epochs, batch_size=8, points=points, pool_points=2 * points, width=32, lr=5e-3
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


def test_depth_views_of_a_box_show_its_faces_at_their_depths():
    """A 1 x 0.5 x 0.25 box seen from the front (looking along -X) and from the top: each view is
    the face's rectangle at that face's nearness, background elsewhere."""
    from shared.ml.synthetic_meshes import box

    mesh = mesh_on_grid(*box((1.0, 0.5, 0.25)))
    cloud = surface_clouds([mesh], 20000)
    size, radius = 32, np.sqrt(3) / 2
    front, top = render_views(cloud, size, view_frames(((0.0, 0.0), (0.0, 90.0))))[0].numpy()
    pixel = 2 * radius / size
    centres = (np.arange(size) + 0.5) * pixel - radius  # pixel centres, left to right
    right, up = np.meshgrid(centres, centres[::-1])  # rows top to bottom

    def expect(image, half_width, half_height, depth):
        beyond = np.maximum(np.abs(right) - half_width, np.abs(up) - half_height)  # < 0 inside
        assert (beyond < -pixel).sum() > 10
        assert np.allclose(image[beyond < -pixel], 1 - 0.8 * (depth / radius + 1) / 2, atol=1e-3)
        assert (image[beyond > pixel] == 0).all()

    half = mesh.unit_vertices().max(0)  # 0.5, 0.25, 0.125 up to the 7-bit grid
    expect(front, half[1], half[2], -half[0])  # right is +Y, up is +Z; the face at X = half[0]
    expect(top, half[1], half[0], -half[2])  # right is +Y, up is -X; the face at Z = half[2]
    # Not mirrored: seen from +X, a point at +Y, +Z lies right of the centre and above it.
    corner = render_views(np.array([[[0.0, 0.4, 0.4]]]), size, view_frames(((0.0, 0.0),)))[0, 0].numpy()
    [(row, column)] = np.argwhere(corner)
    assert row < size / 2 <= column


def test_trainer_cli_measures_each_input_and_keeps_the_best(tmp_path, capsys):
    write_dataset(
        tmp_path / "ds",
        {"train": distinct_items(12, 1, "train"), "val": distinct_items(6, 2, "val"), "test": []},
    )
    trainer_main(
        ["geometry-classifier", "--dataset", str(tmp_path / "ds"), "--input", "features", "--input", "points",
         "--epochs", "1", "--lr", "0.004", "--balanced", "--out", str(tmp_path / "c.pt")]
    )  # fmt: skip
    saved = torch.load(tmp_path / "c.pt", weights_only=False)
    assert saved["config"]["lr"] == 0.004 and saved["config"]["balanced"]
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
