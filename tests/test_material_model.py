"""The material model end to end on a small dataset made of really extracted corpus materials:
training (the Celery task, idempotent; resume), the committed checkpoint through
MaterialGenerator.run_many (and its refusals), and the evaluation with its Blender render grid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from services.trainer.material import TrainConfig, export_model, train
from shared.ml.datasets import iter_split
from shared.ml.material_generator import MaterialGenerator
from shared.ml.material_model import MaterialModel, MaterialModelConfig
from shared.ml.material_tokens import canonical_graph
from shared.scene.models import Material
from tests.material_support import extracted_materials, write_material_dataset

REPO = Path(__file__).resolve().parents[1]
CHECKPOINT = REPO / "models" / "material" / "tiny" / "model.pt"
SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "prefix_tokens": 1}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    items = extracted_materials(tmp_path_factory)
    return write_material_dataset(tmp_path_factory.mktemp("dataset"), items)


def test_training_resumes_and_exports_a_small_checkpoint(dataset, tmp_path):
    config = TrainConfig(
        dataset=str(dataset),
        run_dir=str(tmp_path / "run"),
        max_steps=3,
        batch_size=4,
        checkpoint_every=2,
        synthetic=0,
        model_overrides=SMALL,
    )
    first = train(config)
    assert first["result"]["steps"] == 3 and first["dataset"]["name"] == "slice"
    resumed = train(TrainConfig(**{**config.__dict__, "max_steps": 5, "resume": True}))
    assert resumed["result"]["steps"] == 5 and resumed["result"]["steps_this_session"] == 2
    assert resumed["result"]["minutes_trained"] >= first["result"]["minutes_trained"]
    out = export_model(tmp_path / "run", tmp_path / "model.pt")
    assert out["bytes"] < 2_000_000
    generator = MaterialGenerator(tmp_path / "model.pt", device="cpu")
    (result,) = generator.run_many([{"prompt": "red chair"}])
    Material.model_validate(result["material"])
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train(TrainConfig(dataset=str(dataset), run_dir=str(tmp_path / "none"), resume=True))


def test_training_adds_synthetic_colour_materials_and_records_how_many(dataset, tmp_path):
    config = TrainConfig(
        dataset=str(dataset),
        run_dir=str(tmp_path / "run"),
        max_steps=1,
        batch_size=4,
        synthetic=40,
        model_overrides=SMALL,
    )
    record = train(config)
    assert record["dataset"]["synthetic_colour_materials"] == {"train": 40, "val": 2}
    assert record["train_config"]["synthetic"] == 40
    real = {split: len(list(iter_split(str(dataset), split, "material"))) for split in ("train", "val")}
    assert record["items"] == {
        split: real[split] - record["skipped_too_long"][split] + {"train": 40, "val": 2}[split]
        for split in ("train", "val")
    }
    assert json.loads((tmp_path / "run" / "run.json").read_text())["dataset"]["synthetic_colour_materials"]


def test_train_material_task_records_the_run_and_is_idempotent(dataset, monkeypatch):
    from services.trainer import material
    from shared.db import ensure_schema, session_scope
    from shared.db.models import Job, RunStatus, TrainingRun
    from shared.queue import submit

    # A one-layer model keeps the task's training in seconds; the task and trainer are the real ones.
    small = MaterialModelConfig.preset("tiny", **SMALL)
    monkeypatch.setattr(material.MaterialModelConfig, "preset", classmethod(lambda cls, name, **kw: small))
    ensure_schema()
    first = submit("train.material", dataset=str(dataset), max_steps=2, max_minutes=5)
    with session_scope() as session:
        result = session.get(Job, first).result
        runs = session.query(TrainingRun).all()
        assert len(runs) == 1 and runs[0].status == RunStatus.SUCCEEDED and runs[0].specialist == "material"
        assert runs[0].checkpoint_key == result["checkpoint_key"] and runs[0].metrics["steps"] == 2
    again = submit("train.material", dataset=str(dataset), max_steps=2, max_minutes=5)
    with session_scope() as session:
        assert session.get(Job, again).result["run_dir"] == result["run_dir"]
        assert session.query(TrainingRun).count() == 1


def test_committed_checkpoint_makes_scene_materials_per_request():
    generator = MaterialGenerator(CHECKPOINT, device="cpu")
    assert generator.meta["run"]["dataset"]["name"] == "full"  # the card's data and licence claims rest on it
    chair = {"prompt": "red chair", "noun": "chair", "category": "furniture", "size": [0.5, 0.5, 1]}
    requests = [
        {**chair, "slot": 0, "slots": 2, "seed": 1},
        {"prompt": "gold sword", "noun": "sword", "seed": 2, "temperature": 0},
        {**chair, "slot": 0, "slots": 2, "seed": 1},
    ]
    results = generator.run_many(requests)
    assert len(results) == 3
    for result in results:
        material = Material.model_validate(result["material"])
        assert material.source == "generated" and material.node_tree is not None
        assert canonical_graph(result["material"])[0].key == "ShaderNodeOutputMaterial"
        assert result["seconds"] > 0 and result["tokens"] >= 5
    assert results[0]["material"] == results[2]["material"]  # a seed gives the same material
    assert json.loads(json.dumps(results)) == results


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({}, "prompt"),
        ({"prompt": "  "}, "prompt"),
        ({"prompt": "red", "size": [1, 2]}, "size"),
        ({"prompt": "red", "size": [1, -2, 3]}, "size"),
        ({"prompt": "red", "slot": 2, "slots": 2}, "slot"),
        ({"prompt": "red", "slots": 0}, "slots"),
        ({"prompt": "red", "temperature": 3}, "temperature"),
        ({"prompt": "red", "seed": -1}, "seed"),
        ({"prompt": "red", "noun": 5}, "noun"),
        ({"prompt": "red", "colour": "blue"}, "unknown request fields: colour"),
        ("red", "is an object"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(request_, message):
    generator = MaterialGenerator(CHECKPOINT, device="cpu")
    with pytest.raises(ValueError, match=message):
        generator.run_many([{"prompt": "fine"}, request_])


def test_evaluation_scores_the_model_against_baselines_and_renders_a_grid(dataset, tmp_path, monkeypatch):
    from services.trainer.evaluate_material import main

    monkeypatch.setenv("EVAL_LIMIT", "3")
    main(
        ["--dataset", str(dataset), "--checkpoint", str(CHECKPOINT), "--out", str(tmp_path), "--threads", "1"]
    )
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    for key in (
        "valid_share",
        "delta_e",
        "retrieval_delta_e",
        "category_mean_delta_e",
        "colour_prompt_delta_e",
        "retrieval_colour_prompt_delta_e",
        "node_type_f1",
        "ms_per_material",
        "items",
    ):
        assert isinstance(metrics[key], int | float), key
    assert metrics["items"] == 3 and metrics["valid_share"] == 1.0
    assert metrics["valid_share_blender"] == 1.0 and metrics["render"]["warnings"] == []
    assert (tmp_path / "grid.png").stat().st_size > 1000


def test_model_shapes_and_presets():
    model = MaterialModel(MaterialModelConfig.preset("tiny"))
    text, numbers = torch.zeros(2, 384), torch.zeros(2, 6)
    tokens = torch.ones(2, 5, dtype=torch.long)
    logits, loss = model(text, text, numbers, tokens, tokens)
    assert logits.shape == (2, 5, model.config.vocab_size) and loss is not None
    assert MaterialModelConfig.from_dict(MaterialModelConfig.preset("base").to_dict()).d_model == 512
    with pytest.raises(ValueError, match="unknown preset"):
        MaterialModelConfig.preset("huge")
