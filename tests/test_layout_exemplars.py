"""Exemplar structure models (shared.ml.layout_exemplars): the layout library, training with
exemplars of other packs, fine-tuning from a plain structure model, export and generation; the
layout-ceiling and unseen-judge tools."""

from __future__ import annotations

import re
from dataclasses import replace

import numpy as np
import pytest
import torch

from services.trainer.__main__ import main as trainer_cli
from services.trainer.geometry import TrainConfig, export_model, load_items, train, widened_condition
from services.trainer.geometry_parts import LayoutSource, decompositions, training_layouts
from shared.ml.geometry_model import GeometryModel
from shared.ml.layout_exemplars import EXEMPLAR_CONDITION_DIM, LayoutExemplars, top_k_distinct
from shared.ml.layout_tokens import OCCUPANCY_SIDE
from shared.ml.parts_generator import PartsGenerator
from shared.ml.parts_model import (
    PartsModel,
    load_parts_model,
    nearest_layout,
    preset_configs,
    save_parts_checkpoint,
)
from shared.ml.synthetic_meshes import synthetic_items
from shared.ml.text_embedding import EMBEDDING_DIM
from tests.geometry_helpers import SMALL, small_parts_config, write_dataset


def test_top_k_distinct_returns_each_item_once_best_first():
    scores = np.array([0.9, 0.95, 0.1, 0.8, 0.85, 0.2])
    items = np.array([0, 0, 1, 2, 2, 3])  # item 0 has two captions, so has item 2
    assert top_k_distinct(scores, items, 3) == [0, 2, 3]
    assert top_k_distinct(scores, items, 10) == [0, 2, 3, 1]
    assert top_k_distinct(np.array([0.5, 0.5]), np.array([3, 1]), 2) == [1, 3]  # ties: lower index first
    assert top_k_distinct(np.array([]), np.array([], dtype=int), 2) == []


def library() -> LayoutExemplars:
    """Three items: 0 and 1 of pack "a", 2 of pack "b"; item 0 has two captions."""
    vectors = np.eye(4, EMBEDDING_DIM, dtype=np.float32)
    layouts = [
        np.array([[64, 64, 64, 127, 127, 127, 3]]),  # the whole cube
        np.array([[32, 64, 64, 60, 20, 20, 1], [96, 64, 64, 60, 20, 20, 1]]),
        np.array([[64, 64, 20, 40, 40, 40, 2]]),
    ]
    return LayoutExemplars(vectors, np.array([0, 0, 1, 2]), layouts, ["a", "a", "b"], bits=7)


def test_nearest_finds_items_by_their_best_caption_and_leaves_out_a_pack():
    lib = library()
    assert lib.nearest(np.eye(4, EMBEDDING_DIM)[1], 3) == [0, 1, 2]  # item 0's second caption
    assert lib.nearest(np.eye(4, EMBEDDING_DIM)[2]) == [1]
    assert lib.nearest(np.eye(4, EMBEDDING_DIM)[1], 3, exclude_pack="a") == [2]
    assert lib.nearest(np.eye(4, EMBEDDING_DIM)[1], 3, exclude_pack="b") == [0, 1]
    condition = lib.condition(np.ones(EMBEDDING_DIM), 0)
    assert condition.shape == (EXEMPLAR_CONDITION_DIM,) and condition.dtype == np.float32
    assert (
        np.all(condition[:EMBEDDING_DIM] == 1) and condition[EMBEDDING_DIM:].min() > 0.9
    )  # (nearly) the whole cube
    assert np.isclose(lib.grids[2].sum(), (40 / 127) ** 3 * OCCUPANCY_SIDE**3, rtol=1e-3)  # cells covered
    again = LayoutExemplars.from_state(lib.state())
    assert np.array_equal(again.grids, lib.grids) and again.nearest(np.eye(4, EMBEDDING_DIM)[2]) == [1]
    with pytest.raises(ValueError, match="layout library"):
        LayoutExemplars(np.zeros((2, EMBEDDING_DIM)), np.array([0]), [], [], bits=7)


def test_a_seed_draws_one_of_the_layouts_as_near_as_the_nearest():
    lib = library()
    tied = (np.eye(4, EMBEDDING_DIM)[0] + np.eye(4, EMBEDDING_DIM)[2]).astype(np.float32)
    assert lib.nearest_alike(tied) == [0, 1]  # item 0's first caption and item 1's score alike
    assert lib.nearest_alike(tied + 0.05 * np.eye(4, EMBEDDING_DIM)[2]) == [1]  # 0.05 apart
    assert lib.nearest_alike(tied + 0.05 * np.eye(4, EMBEDDING_DIM)[2], margin=0.1) == [1, 0]
    assert lib.nearest_alike(np.eye(4, EMBEDDING_DIM)[3], k=1) == [2]

    def drawn(text, seed):
        return len(nearest_layout(lib, text, 400, torch.Generator().manual_seed(seed)))

    assert {drawn(tied, seed) for seed in range(16)} == {1, 2}  # item 0 has one part, item 1 two
    assert all(drawn(tied, seed) == drawn(tied, seed) for seed in range(4))
    assert {drawn(np.eye(4, EMBEDDING_DIM)[3], seed) for seed in range(8)} == {1}  # one candidate
    assert len(nearest_layout(lib, tied + 0.05 * np.eye(4, EMBEDDING_DIM)[2], 1, None)) == 1  # the budget


def test_a_widened_condition_starts_as_the_model_it_came_from():
    torch.manual_seed(0)
    structure = preset_configs("tiny", SMALL)[0]
    plain = GeometryModel(structure)
    wide = GeometryModel(replace(structure, text_dim=EXEMPLAR_CONDITION_DIM))
    state = {k: v for k, v in plain.state_dict().items() if k != "head.weight"}
    wide.load_state_dict(
        {**widened_condition(state, EXEMPLAR_CONDITION_DIM), "head.weight": state["tok_emb.weight"]}
    )
    text, tokens = torch.randn(2, EMBEDDING_DIM), torch.randint(3, 50, (2, 9))
    grid = torch.rand(2, EXEMPLAR_CONDITION_DIM - EMBEDDING_DIM)
    assert torch.allclose(plain(text, tokens)[0], wide(torch.cat([text, grid], 1), tokens)[0])


@pytest.fixture
def packed_dataset(tmp_path):
    """Synthetic objects in packs of four (train) and in packs of their own (val, test)."""
    items = {
        split: [
            {**it, "category": "furniture", "pack": f"{split}-{k // 4 if split == 'train' else k}"}
            for k, it in enumerate(synthetic_items(n, seed=0, split=split))
        ]
        for split, n in (("train", 24), ("val", 8), ("test", 8))
    }
    write_dataset(tmp_path / "ds", items)
    return str(tmp_path / "ds")


def test_the_layout_library_holds_objects_as_authored_not_decimated(packed_dataset):
    rule = preset_configs("tiny")[2]
    objects = decompositions(packed_dataset, "train", rule)
    assert all(o["fits"] and o["triangles_kept"] == 1.0 for o in objects)
    decimated = {**objects[0], "id": "dense", "triangles_kept": 0.4}  # as a dense building's record
    lib = training_layouts([*objects, decimated], rule.tokenizer.bits)
    assert len(lib) == len(objects)


def test_training_exemplars_come_from_other_packs(packed_dataset):
    rule = preset_configs("tiny")[2]
    objects = [o for o in decompositions(packed_dataset, "train", rule) if o["fits"]]
    assert {o["pack"] for o in objects} == {f"train-{k}" for k in range(6)}
    lib = training_layouts(objects, rule.tokenizer.bits)
    structure = preset_configs("tiny", {**SMALL, "text_dim": EXEMPLAR_CONDITION_DIM})[0]
    source = LayoutSource(objects, structure, rule.tokenizer.bits, lib)
    rng = np.random.default_rng(0)
    for index in range(len(source.items)):
        condition, tokens = source.sample(rng, False, TrainConfig(), index)
        assert condition.shape == (EXEMPLAR_CONDITION_DIM,) and tokens[0] == 1
    assert source._choices and all(len(found) == 4 for found in source._choices.values())
    for (_, pack), found in source._choices.items():
        assert all(lib.packs[i] != pack for i in found)
    plain = preset_configs("tiny", SMALL)[0]
    with pytest.raises(ValueError, match="layout library"):
        LayoutSource(objects, plain, rule.tokenizer.bits, lib)
    with pytest.raises(ValueError, match="layout library"):
        LayoutSource(objects, structure, rule.tokenizer.bits)


def test_an_exemplar_structure_model_fine_tunes_from_a_plain_one_exports_and_generates(
    tmp_path, packed_dataset
):
    config = small_parts_config(packed_dataset, tmp_path / "plain", max_steps=2)
    train(config)
    export_model(tmp_path / "plain", tmp_path / "plain.pt")
    trainer_cli(
        [
            "geometry",
            "--model",
            "parts",
            "--stages",
            "structure",
            "--layout-exemplars",
            "--dataset",
            packed_dataset,
            "--run-dir",
            str(tmp_path / "exemplar"),
            "--init-from",
            str(tmp_path / "plain.pt"),
            "--max-steps",
            "2",
            "--batch-tokens",
            "1024",
            "--checkpoint-every",
            "2",
            "--threads",
            "1",
        ]
    )
    assert (tmp_path / "exemplar" / "structure" / "layout_exemplars.pkl").is_file()
    exported = export_model(tmp_path / "exemplar", tmp_path / "exemplar.pt")
    assert exported["step"] == {"structure": 2, "part": 2}
    model, ckpt = load_parts_model(tmp_path / "exemplar.pt")
    assert model.structure.config.text_dim == EXEMPLAR_CONDITION_DIM and len(model.exemplars) == 24
    assert ckpt["run"]["structure"]["train_config"]["layout_exemplars"]
    generator = PartsGenerator(tmp_path / "exemplar.pt")
    out = generator.generate_many([])
    assert out == []
    mesh = generator.generate("a table", face_budget=40, seed=3)
    assert mesh["faces"] and len(mesh["faces"]) <= 40
    assert generator.generate("a table", face_budget=40, seed=3)["faces"] == mesh["faces"]
    # The exemplar model's conditions: the prompt, then its nearest training layout's grid.
    text = torch.randn(2, EMBEDDING_DIM)
    conditions = model.structure_conditions(text)
    assert conditions.shape == (2, EXEMPLAR_CONDITION_DIM) and torch.equal(
        conditions[:, :EMBEDDING_DIM], text
    )
    # A part-only fine-tune of the exemplar file keeps the library in its export.
    train(
        replace(
            config,
            run_dir=str(tmp_path / "part-only"),
            stages=("part",),
            init_from=str(tmp_path / "exemplar.pt"),
        )
    )
    export_model(tmp_path / "part-only", tmp_path / "part-only.pt")
    assert len(load_parts_model(tmp_path / "part-only.pt")[0].exemplars) == 24
    # A plain structure model does not start from an exemplar one's wider condition.
    narrower = replace(config, run_dir=str(tmp_path / "narrow"), stages=("structure",))
    with pytest.raises(ValueError, match="wider than this run's"):
        train(replace(narrower, init_from=str(tmp_path / "exemplar.pt")))
    with pytest.raises(ValueError, match="use --model parts"):
        train(TrainConfig(layout_exemplars=True))
    with pytest.raises(ValueError, match="layout library"):
        PartsModel(model.structure, model.part, model.decomposition)


def test_layout_ceiling_scores_the_part_model_on_given_layouts(tmp_path, packed_dataset, capsys):
    from tools.layout_ceiling import main as layout_ceiling_cli

    torch.manual_seed(0)
    structure, part, decomposition = preset_configs("tiny", SMALL, {**SMALL, "max_tokens": 256})
    save_parts_checkpoint(tmp_path / "parts.pt", GeometryModel(structure), GeometryModel(part), decomposition)
    layout_ceiling_cli(
        ["--checkpoint", str(tmp_path / "parts.pt"), "--dataset", packed_dataset, "--split", "test"]
    )
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["nearest training layout", "own layout"]
    accuracies = [
        float(re.search(r"category accuracy ([0-9.]+) \(test, 8 items,", line)[1]) for line in lines
    ]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    layout_ceiling_cli(
        ["--checkpoint", str(tmp_path / "parts.pt"), "--dataset", packed_dataset, "--split", "test"]
        + ["--layouts", "own layout", "--temperature", "0.5", "--face-budget", "100", "--no-mirror"]
    )
    (line,) = capsys.readouterr().out.splitlines()
    assert line.startswith("own layout:") and "temperature 0.5, face budget 100, mirrored pairs False" in line


def test_nearest_layouts_take_the_training_layout_and_write_new_parts(tmp_path, packed_dataset):
    """A parts file made with ``nearest-layouts`` writes each object on the training layout whose
    caption is nearest its prompt; its part model writes the parts, so seeds still vary them."""
    torch.manual_seed(0)
    structure, part, decomposition = preset_configs("tiny", SMALL, {**SMALL, "max_tokens": 256})
    save_parts_checkpoint(tmp_path / "parts.pt", GeometryModel(structure), GeometryModel(part), decomposition)
    trainer_cli(
        [
            "nearest-layouts",
            "--parts",
            str(tmp_path / "parts.pt"),
            "--dataset",
            packed_dataset,
            "--out",
            str(tmp_path / "nearest.pt"),
        ]
    )
    model, ckpt = load_parts_model(tmp_path / "nearest.pt")
    assert model.layouts == "nearest" and len(model.exemplars) == 24
    assert ckpt["run"]["nearest_layouts"]["dataset"]["name"] == "test-geometry"
    texts = torch.randn(2, EMBEDDING_DIM)
    objects = model.generate_batch(
        texts, face_budget=[200, 3], generator=[torch.Generator().manual_seed(s) for s in range(2)]
    )
    for obj, text, budget in zip(objects, texts, [200, 3], strict=True):
        layout = model.exemplars.layouts[model.exemplars.nearest(text.numpy())[0]][:budget]
        assert [b.centre.tolist() for b in obj.layout] == [
            model.vocab.dequantize([int(v) for v in p]).centre.tolist() for p in layout
        ]
        assert len(obj.faces) <= budget
    again = model.generate_batch(texts[:1], face_budget=200, generator=[torch.Generator().manual_seed(7)])
    assert [b.centre.tolist() for b in again[0].layout] == [b.centre.tolist() for b in objects[0].layout]
    assert [p.faces for p in again[0].parts] != [p.faces for p in objects[0].parts]  # other parts, as written
    with pytest.raises(ValueError, match="layouts must be one of"):
        PartsModel(model.structure, model.part, model.decomposition, layouts="random")
    with pytest.raises(ValueError, match="layout library"):
        PartsModel(model.structure, model.part, model.decomposition, layouts="nearest")
    torch.save({"model_kind": "flat"}, tmp_path / "flat.pt")
    with pytest.raises(ValueError, match="not a parts checkpoint"):
        trainer_cli(
            [
                "nearest-layouts",
                "--parts",
                str(tmp_path / "flat.pt"),
                "--dataset",
                packed_dataset,
                "--out",
                "x",
            ]
        )


def test_unseen_judges_each_learn_half_the_packs_and_are_kept(tmp_path, packed_dataset, capsys):
    from tools.unseen_judge import main as unseen_judge_cli
    from tools.unseen_judge import pack_halves

    halves = pack_halves(load_items(packed_dataset, "train"))
    assert sorted(map(len, halves)) == [3, 3] and halves[0] | halves[1] == {f"train-{k}" for k in range(6)}
    torch.manual_seed(0)
    structure, part, decomposition = preset_configs("tiny", SMALL, {**SMALL, "max_tokens": 256})
    save_parts_checkpoint(tmp_path / "parts.pt", GeometryModel(structure), GeometryModel(part), decomposition)
    judges = tmp_path / "judges"
    args = ["--checkpoint", str(tmp_path / "parts.pt"), "--dataset", packed_dataset, "--out", str(judges)]
    unseen_judge_cli([*args, "--epochs", "1"])
    means = [
        line for line in capsys.readouterr().out.splitlines() if line.startswith("mean over both judges")
    ]
    assert [line.split(", ", 1)[1].split(":")[0] for line in means] == [
        "real split meshes",
        "retrieval, seen meshes",
        "retrieval, unseen meshes",
        "parts on unseen layouts",
    ]
    # One category in this data: every judge answers it, so every source scores 1.
    assert all(line.endswith(": 1.000 (test, 8 items)") for line in means)
    kept = [(judges / f"judge-{h}.pt").stat().st_mtime_ns for h in (0, 1)]
    unseen_judge_cli(args)
    assert [(judges / f"judge-{h}.pt").stat().st_mtime_ns for h in (0, 1)] == kept
