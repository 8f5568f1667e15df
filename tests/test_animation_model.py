"""The animation model, its generator, training (resume, export, the Celery task) and the evaluation
run, on a small dataset made of animated corpus files by the real extractor."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from services.trainer.animation import (
    TrainConfig,
    cache_prompt_embeddings,
    export_model,
    train,
    training_examples,
)
from services.trainer.animation_metrics import invalid_curves
from services.trainer.evaluate_animation import evaluate_animation, retarget
from shared.ml.animation_generator import AnimationGenerator
from shared.ml.animation_model import (
    AnimationModel,
    AnimationModelConfig,
    Decoding,
    Target,
    batch_inputs,
    load_model,
)
from shared.ml.animation_tokens import EOS, MotionGrammar, MotionLayout
from shared.ml.text_embedding import EMBEDDING_DIM, default_cache_dir
from shared.scene.models import Action
from tests.extract_support import CORPUS, extract, load_document
from tests.geometry_helpers import write_dataset

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "models/animation/tiny/model.pt"
SMALL = {"d_model": 32, "n_layers": 1, "n_heads": 2, "max_tokens": 1400}
FILES = {
    "train": [
        "blend/quaternius/Characters_and_Animals/Goblin_Animated_Patreon_Exclusive/Goblin.blend",
        "blend/gltf_blender_io/scenes_00_looping_animation.blend",
    ],
    "val": ["blend/gltf_blender_io/scenes_03_animated_cube.blend"],
    "test": [
        "blend/quaternius/Characters_and_Animals/Animals_Pack_-_Oct_2016/Red_Fox.blend",
        "blend/quaternius/Characters_and_Animals/Animals_Pack_-_Oct_2016/Fish.blend",
    ],
}


def _items(doc: dict, split: str) -> list[dict]:
    """Dataset items as the labeler's _animation_items writes them (the fields training reads)."""
    out = []
    for obj in doc["objects"]:
        names = {(obj.get("animation") or {}).get("action")} | {
            s["action"] for t in (obj.get("animation") or {}).get("nla_tracks", []) for s in t["strips"]
        }
        actions = [a for a in doc["actions"] if a["name"] in names]
        if actions:
            out.append(
                {
                    "id": f"{split}-{obj['name']}",
                    "captions": [obj["name"].lower()],
                    "category": "test",
                    "object_type": obj["type"],
                    "actions": actions,
                    "armature": obj.get("armature"),
                    "fps": doc["fps"],
                }
            )
    return out


@pytest.fixture(autouse=True)
def one_thread():
    """Two threads on two busy cores spin more than they compute."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("animation")
    splits = {}
    for split, files in FILES.items():
        entries = extract([CORPUS / f for f in files], out / "docs" / split)
        splits[split] = [i for e in entries.values() for i in _items(load_document(e), split)]
    write_dataset(out / "dataset", splits, specialist="animation")
    return out / "dataset"


@pytest.fixture(scope="module")
def rig(dataset: Path) -> dict:
    from shared.ml.datasets import iter_split

    return next(i["armature"] for i in iter_split(dataset, "test", "animation") if i["armature"])


@pytest.fixture(scope="module")
def generator() -> AnimationGenerator:
    return AnimationGenerator(COMMITTED, device="cpu")


def _small_model(seed: int = 0) -> AnimationModel:
    torch.manual_seed(seed)
    return AnimationModel(AnimationModelConfig(**SMALL)).eval()


def test_decoding_with_the_cache_writes_what_teacher_forcing_predicts(rig):
    """Greedy decoding (KV cache, one step at a time) and one teacher-forced pass agree token for
    token: the position inputs (what comes next, which bone) line up in both."""
    model = _small_model()
    targets = [Target.of(MotionLayout(rig)), Target.of(MotionLayout(None))]
    text = torch.randn(2, EMBEDDING_DIM)
    samples = model.generate_batch(text, targets, temperature=0.0)
    for row, (target, (tokens, motion)) in enumerate(zip(targets, samples, strict=True)):
        assert tokens[-1] == EOS and len(tokens) == target.layout.sequence_length()
        inputs = batch_inputs([target], [tokens])
        logits, _ = model(text[row : row + 1], *inputs[:-1])
        grammar = MotionGrammar(target.layout)  # what decoding allowed at each position
        masks = []
        for t in tokens[1:]:
            masks.append(torch.from_numpy(grammar.allowed_mask()))
            grammar.feed(t)
        forced = logits[0].masked_fill(~torch.stack(masks), float("-inf")).argmax(-1)
        assert forced.tolist() == tokens[1:]
        assert motion.values.shape[1] == len(target.layout.channels)


def test_rows_decoded_together_get_what_they_get_alone(rig):
    model = _small_model(1)
    targets = [Target.of(MotionLayout(rig)), Target.of(MotionLayout(None))]
    text = torch.randn(2, EMBEDDING_DIM)
    together = model.generate_batch(
        text, targets, generator=[torch.Generator().manual_seed(s) for s in (5, 6)]
    )
    for row, seed in enumerate((5, 6)):
        alone = model.generate_batch(
            text[row : row + 1], targets[row : row + 1], generator=[torch.Generator().manual_seed(seed)]
        )
        assert alone[0][0] == together[row][0]


@torch.inference_mode()
def test_the_decoding_step_computes_what_the_blocks_do():
    """Decoding (the fp32 step decoding runs: its own products, attention and GELU) gives the
    blocks' hidden states, position by position after a prefill, also after a row leaves."""
    model, _ = load_model(COMMITTED)
    c = model.config
    torch.manual_seed(0)
    x = torch.randn(2, c.prefix_tokens + 40, c.d_model)
    full = model._run(x)  # one causal pass: positions added, all blocks, the final norm
    x = x + model.pos_emb.weight[: x.shape[1]]
    decoding = Decoding(model, 2, x.shape[1])
    steps = [decoding(x[:, : c.prefix_tokens + 1])]
    steps += [decoding(x[:, i : i + 1]) for i in range(c.prefix_tokens + 1, 30)]
    assert torch.allclose(torch.stack(steps, 1), full[:, c.prefix_tokens : 30], atol=1e-4)
    decoding.keep(torch.tensor([1]))
    rest = [decoding(x[1:, i : i + 1]) for i in range(30, x.shape[1])]
    assert torch.allclose(torch.cat(rest), full[1, 30:], atol=1e-4)


def test_the_same_seed_gives_the_same_action(generator, rig):
    request = {"prompt": "fox walk", "object_type": "ARMATURE", "armature": rig, "seed": 3}
    first, other = generator.run_many([request, {**request, "seed": 4}])
    again, twin = generator.run_many([request, request])
    assert first["action"] == again["action"] == twin["action"] != other["action"]


def test_the_committed_model_animates_a_rig_it_never_saw_and_a_mesh(generator, rig):
    results = generator.run_many(
        [
            {"prompt": "red fox walk animation", "object_type": "ARMATURE", "armature": rig, "fps": 48},
            {"prompt": "slow spin", "object_type": "MESH", "category": "prop"},
        ]
    )
    walk, spin = results
    assert json.loads(json.dumps(results)) == results  # JSON-able
    for result, layout in ((walk, MotionLayout(rig)), (spin, MotionLayout(None))):
        Action.model_validate(result["action"])
        assert result["animation"] == {"action": result["action"]["name"]}
        assert invalid_curves(result["action"], layout) == []
        assert result["batch"] == 2 and result["seconds"] > 0
    bones = {f["data_path"].split('"')[1] for f in walk["action"]["fcurves"]}
    assert bones == set(MotionLayout(rig).names)
    again = generator.run_many(
        [{"prompt": "red fox walk animation", "object_type": "ARMATURE", "armature": rig}]
    )
    # At 48 fps the same motion lasts twice as many frames.
    span = lambda r: r["frame_range"][1] - r["frame_range"][0]  # noqa: E731
    assert span(walk) == pytest.approx(2 * span(again[0]), rel=1e-3)


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ("walk", "JSON object"),
        ({"prompt": " ", "object_type": "MESH"}, "prompt is empty"),
        ({"prompt": "walk", "object_type": "CAMERA"}, "object_type must be"),
        ({"prompt": "walk", "object_type": "ARMATURE"}, "needs its armature"),
        ({"prompt": "walk", "object_type": "ARMATURE", "armature": {"name": "A", "bones": []}}, "no bones"),
        (
            {
                "prompt": "walk",
                "object_type": "ARMATURE",
                "armature": {"name": "A", "bones": [{"name": "b"}]},
            },
            "armature",
        ),
        (
            {
                "prompt": "walk",
                "object_type": "ARMATURE",
                "armature": {"name": "A", "bones": [{"name": "b", "head": [0, 0, 0], "tail": [0, 0, 1]}] * 2},
            },
            "two bones of the same name",
        ),
        (
            {
                "prompt": "walk",
                "object_type": "ARMATURE",
                "armature": {
                    "name": "A",
                    "bones": [
                        {"name": f"b{i}", "head": [0, 0, i], "tail": [0, 0, i + 1]} for i in range(400)
                    ],
                },
            },
            "rigs of up to",
        ),
        ({"prompt": "walk", "object_type": "MESH", "temperature": 5}, "temperature"),
        ({"prompt": "walk", "object_type": "MESH", "fps": 0}, "fps"),
        ({"prompt": "walk", "object_type": "MESH", "seed": "x"}, "seed"),
        ({"prompt": "walk", "object_type": "MESH", "transform": {"scale": [1, 2]}}, "transform"),
    ],
)
def test_bad_requests_are_refused_with_a_clear_message(generator, request_, message):
    with pytest.raises(ValueError, match=message):
        generator.run_many([{"prompt": "fine", "object_type": "MESH"}, request_])


def test_retrieval_retargets_by_bone_name(rig):
    layout = MotionLayout(rig)
    source = MotionLayout({"bones": [{**b, "name": b["name"].upper()} for b in rig["bones"]] + []})
    action = {
        "name": "A",
        "fcurves": [
            {
                "data_path": f'pose.bones["{source.names[1]}"].location',
                "index": 0,
                "keyframes": [{"co": [0, 1.0]}],
            },
            {"data_path": 'pose.bones["Nobody"].location', "index": 0, "keyframes": [{"co": [0, 1.0]}]},
        ],
    }
    moved = retarget(action, source, layout)
    assert [f["data_path"] for f in moved["fcurves"]] == [f'pose.bones["{layout.names[1]}"].location']
    assert invalid_curves(moved, layout) == []


def test_training_resumes_exports_and_runs_as_a_task_and_the_evaluation_scores_it(dataset, tmp_path):
    config = TrainConfig(
        dataset=str(dataset),
        run_dir=str(tmp_path / "run"),
        max_steps=2,
        checkpoint_every=1,
        batch_tokens=1500,
        synthetic=40,
        model_overrides=SMALL,
    )
    record = train(config)
    assert record["result"]["steps"] == 2 and record["examples"]["train"] > 40  # synthetic motions too
    assert record["dataset"]["manifest_sha256"] and record["code"]["commit"]
    config.max_steps, config.resume = 3, True
    resumed = train(config)
    assert resumed["result"]["steps"] == 3 and resumed["result"]["steps_this_session"] == 1
    exported = export_model(tmp_path / "run", tmp_path / "model.pt")
    model, ckpt = load_model(exported["out"])
    assert ckpt["step"] == 3 and all(
        v.dtype == torch.float16 for k, v in ckpt["state_dict"].items() if "emb" in k
    )

    metrics = evaluate_animation(exported["out"], str(dataset), str(tmp_path / "eval"), limit=1)
    for key in (
        "valid_share",
        "channel_error",
        "retrieval_channel_error",
        "rest_channel_error",
        "loop_closure",
        "motion_ratio",
        "retrieval_motion_ratio",
    ):
        assert key in metrics
    assert metrics["rest_motion_ratio"] == 0.0
    assert metrics["items"] == 1 and metrics["valid_share"] == 1.0  # EVAL_LIMIT's one of the two
    assert (tmp_path / "eval" / "strips.png").stat().st_size > 10_000
    saved = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert saved["items"] == 1 and saved["unseen_rigs"]["items"] == 1  # the fox's rig is in no training item
    assert saved["split"] == "test" and saved["temperature"] == 0.8
    with pytest.raises(ValueError, match="split must be 'val' or 'test'"):
        evaluate_animation(exported["out"], str(dataset), str(tmp_path / "train-eval"), split="train")


def test_every_training_prompt_is_embedded_ahead_for_a_machine_without_the_encoder(dataset):
    config = TrainConfig(dataset=str(dataset))
    splits, _ = training_examples(config, AnimationModelConfig.preset(config.preset).max_tokens)
    prompts = {p for examples in splits.values() for e in examples for p in e.prompts}
    assert cache_prompt_embeddings(str(dataset)) == len(prompts) > config.synthetic  # the procedural ones too
    for prompt in prompts:
        assert (default_cache_dir() / f"{hashlib.sha256(prompt.encode()).hexdigest()}.npy").is_file()


def test_train_animation_task_records_the_run_and_is_idempotent(dataset, monkeypatch):
    from shared.db import ensure_schema, session_scope
    from shared.db.models import Job, RunStatus, TrainingRun
    from shared.queue import submit

    ensure_schema()
    first = submit("train.animation", preset="tiny", dataset=str(dataset), max_steps=1, max_minutes=5)
    with session_scope() as session:
        result = session.get(Job, first).result
        runs = session.query(TrainingRun).filter_by(specialist="animation").all()
        assert len(runs) == 1 and runs[0].status == RunStatus.SUCCEEDED and runs[0].metrics["steps"] == 1
    again = submit("train.animation", preset="tiny", dataset=str(dataset), max_steps=1, max_minutes=5)
    with session_scope() as session:
        assert session.get(Job, again).result["run_dir"] == result["run_dir"]
        assert session.query(TrainingRun).filter_by(specialist="animation").count() == 1


def test_the_committed_checkpoint_names_its_data_and_is_small():
    _, ckpt = load_model(COMMITTED)
    assert ckpt["run"]["dataset"]["name"] == "full" and ckpt["run"]["dataset"]["synthetic_object_motions"]
    assert COMMITTED.stat().st_size < 8_000_000
    assert np.isfinite(ckpt["run"]["result"]["val_loss"])
