"""Evaluation of the modifier model on held-out packs, against baselines in the same run.

    python -m services.trainer.evaluate_modifier [--dataset full] [--checkpoint models/modifier/tiny/model.pt]
    make eval-modifier [MODIFIER_DATASET=full] [EVAL_LIMIT=N]

Two question sets, neither seen in training:
- derived: every mesh of the test split (packs held out of training) with its Blender-verified
  stack, or none. Scores: exact match of the ordered type list, per-type F1 of presence, parameter
  error (class accuracy per head where truth and prediction share the type).
- real: the artists' stacks. The test split holds few (15 in ``full``), so besides them every real
  stack is also predicted by a model trained without its pack (pack-grouped K-fold, the same
  training recipe on the derived train split plus the other folds' real stacks):
  ``real_exact_match`` is that figure over all of them, ``real_test_exact_match`` the test split's.
  ``real_at_least_one_exact_match``: the same models asked for at least one modifier (an artist's
  file is known to hold a stack; the majority baseline, the artists' most common stack, knows it
  too), the generator's ``at_least_one``.
- constructed (``constructed_heldout``): stacks applied in Blender to meshes of the test packs
  (modifiers-derive --construct), scored apart: the only questions with Bevel and Subdivision.
Baselines in the same run on the same items: the majority stack of the training items of that
kind, the nearest training mesh by standardised features, and the rule that derived the pairs
(shared.ml.modifier_structure.peel on the finished mesh, without Blender; on derived items it is
the labeller itself, an upper bound, not a competitor).
Then every stack the generator returns for the test meshes is applied in real Blender (worker
children, the add-on's injector): ``apply_ok_share``. Writes var/eval/modifier/metrics.json and
predictions.png (test meshes, predicted stack, Blender's result of it, true stack).
"""

from __future__ import annotations

import argparse
import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.trainer.modifier import (
    Examples,
    TrainConfig,
    finished_mesh,
    fit,
    load_examples,
    make_examples,
    model_types,
    nearest_neighbour_types,
    resolve_dataset,
    type_scores,
)
from shared.ml.modifier_generator import ModifierGenerator
from shared.ml.modifier_model import ModifierModel, ModifierModelConfig, load_model
from shared.ml.modifier_structure import peel
from shared.ml.modifier_tokens import HEADS, TYPES

REAL_FOLDS = 5
PICTURE_ROWS = 10


def rule_types(examples: Examples) -> list[list[str]]:
    return [[m["type"] for m in peel(finished_mesh(item)).stack] for item in examples.items]


def majority_types(train: Examples, count: int) -> tuple[list[str], list[list[str]]]:
    stacks = Counter(tuple(train.true_types(i)) for i in range(len(train)))
    top = list(stacks.most_common(1)[0][0]) if stacks else []
    return top, [top] * count


def head_accuracy(model: ModifierModel, examples: Examples) -> dict[str, float]:
    """Per parameter head, the share of items whose true and predicted stacks both hold the head's
    type that get the right class."""
    with torch.no_grad():
        presence, heads = model(
            torch.from_numpy(examples.features), torch.from_numpy(examples.first_caption_vectors())
        )
    present = (torch.sigmoid(presence) >= 0.5).numpy()
    out = {}
    for k, name in enumerate(HEADS):
        kind = TYPES.index(name.split("_")[0].upper())
        rows = (examples.classes[:, k] >= 0) & present[:, kind]
        if rows.any():
            predicted = heads[name].argmax(-1).numpy()[rows]
            out[name] = round(float((predicted == examples.classes[rows, k]).mean()), 4)
    return out


def real_cross_validation(
    derived_train: Examples, real: Examples, config: TrainConfig, model_config: ModifierModelConfig
) -> dict[str, Any]:
    """Each real stack predicted by a model trained without its pack (and the baselines likewise)."""
    packs = sorted({item["pack"] for item in real.items})
    fold_of_pack = {pack: k % REAL_FOLDS for k, pack in enumerate(packs)}
    folds = np.array([fold_of_pack[item["pack"]] for item in real.items])
    truth = [real.true_types(i) for i in range(len(real))]
    predicted: dict[str, list[list[str]]] = {
        name: [[] for _ in truth] for name in ("model", "model_at_least_one", "majority", "nearest")
    }
    for fold in range(min(REAL_FOLDS, len(packs))):
        held = np.flatnonzero(folds == fold)
        kept = real.subset(np.flatnonzero(folds != fold))
        train = concat(derived_train, kept)
        torch.manual_seed(config.seed + fold)  # initial weights too: two runs of the evaluation agree
        model = ModifierModel(model_config)
        fit(model, train, config)
        query = real.subset(held)
        for name, types in (
            ("model", model_types(model, query)),
            ("model_at_least_one", at_least_one_types(model, query)),
            ("majority", majority_types(kept, len(held))[1]),
            ("nearest", nearest_neighbour_types(train, query)),
        ):
            for row, t in zip(held, types, strict=True):
                predicted[name][row] = t
    return {name: type_scores(truth, p) for name, p in predicted.items()} | {
        "rule": type_scores(truth, rule_types(real)),
        "folds": min(REAL_FOLDS, len(packs)),
        "packs": len(packs),
    }


def at_least_one_types(model: ModifierModel, examples: Examples) -> list[list[str]]:
    """The model's types where a stack is known to exist (an artist's file with live modifiers,
    the question the majority stack of the artists' stacks answers too; the generator's
    ``at_least_one``): where no type passes the threshold, the most probable one."""
    slots = model.predict(
        examples.features, examples.first_caption_vectors(), at_least_one=[True] * len(examples)
    )
    return [s.types() for s in slots]


def concat(a: Examples, b: Examples) -> Examples:
    return Examples(
        a.items + b.items,
        np.vstack([a.features, b.features]),
        np.concatenate([a.diagonals, b.diagonals]),
        np.vstack([a.present, b.present]),
        np.vstack([a.classes, b.classes]),
        np.concatenate([a.weights, b.weights]),
        a.captions + b.captions,
    )


def evaluate_modifier(
    dataset: str, checkpoint: str | Path, out_dir: Path, limit: int | None = None, workers: int = 1
) -> dict[str, Any]:
    from blender_worker.modifier_apply import apply_batch
    from blender_worker.settings import ExtractSettings

    folder = resolve_dataset(dataset)
    model, ckpt = load_model(checkpoint)
    run = ckpt.get("run", {})
    config = TrainConfig(**{**run.get("config", {}), "resume": False}) if run else TrainConfig()
    model_config = model.config
    train_all = load_examples(
        folder, "train", config.real_weight, progress=True, constructed=config.constructed
    )
    test_all = load_examples(folder, "test")
    is_real = np.array([i.get("derived_by") == "artist" for i in test_all.items])
    derived = test_all.subset(np.flatnonzero(~is_real)[:limit])
    real_test = test_all.subset(np.flatnonzero(is_real)[:limit])
    train_real_rows = [i for i, it in enumerate(train_all.items) if it.get("derived_by") == "artist"]
    derived_train = train_all.subset([i for i in range(len(train_all)) if i not in set(train_real_rows)])

    truth = [derived.true_types(i) for i in range(len(derived))]
    majority, majority_predictions = majority_types(derived_train, len(derived))
    derived_scores = {
        "model": type_scores(truth, model_types(model, derived)),
        "majority": type_scores(truth, majority_predictions),
        "nearest": type_scores(truth, nearest_neighbour_types(train_all, derived)),
        "rule": type_scores(truth, rule_types(derived)),
    }
    # Held-out constructed pairs (modifiers-derive --construct: a stack applied in Blender to a
    # mesh of a test pack): the only questions with Bevel and Subdivision, scored on their own.
    constructed = make_examples(
        [i for i in _items(folder, "test") if i.get("derived_by") == ["constructed"]][:limit]
    )
    constructed_truth = [constructed.true_types(i) for i in range(len(constructed))]
    constructed_scores = (
        {
            "model": type_scores(constructed_truth, model_types(model, constructed)),
            "nearest": type_scores(constructed_truth, nearest_neighbour_types(train_all, constructed)),
            "rule": type_scores(constructed_truth, rule_types(constructed)),
        }
        if len(constructed)
        else {}
    )
    real_truth = [real_test.true_types(i) for i in range(len(real_test))]
    real_train = train_all.subset(train_real_rows)
    real_majority, real_majority_predictions = majority_types(real_train, len(real_test))
    real_test_scores = {
        "model": type_scores(real_truth, model_types(model, real_test)),
        "model_at_least_one": type_scores(real_truth, at_least_one_types(model, real_test)),
        "majority": type_scores(real_truth, real_majority_predictions),
        "nearest": type_scores(real_truth, nearest_neighbour_types(train_all, real_test)),
        "rule": type_scores(real_truth, rule_types(real_test)),
    }
    real_pool = concat(
        real_train,
        make_examples(
            [i for s in ("val", "test") for i in _items(folder, s) if i.get("derived_by") == "artist"],
            config.real_weight,
        ),
    )
    real_cv = real_cross_validation(derived_train, real_pool, config, model_config)

    # Every stack the generator returns, applied in real Blender.
    generator = ModifierGenerator(checkpoint)
    questions = concat(derived, real_test)
    answers = generator.run_many(
        [
            {
                "prompt": questions.captions[i][0],
                "mesh": questions.items[i].get("evaluated_mesh") or questions.items[i]["mesh"],
            }
            for i in range(len(questions))
        ]
    )
    jobs = [
        {
            "id": str(i),
            "mesh": a.get("base_mesh") or finished_mesh(questions.items[i]).to_dict(),
            "modifiers": a["modifiers"],
        }
        for i, a in enumerate(answers)
    ]
    applied = apply_batch(jobs, ExtractSettings(workers=workers, timeout_s=120))
    apply_ok = [bool(r["ok"]) for r in applied]
    failures = [
        {"item": questions.items[int(r["id"])]["id"], "error": r["error"]} for r in applied if not r["ok"]
    ]

    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = {
        "dataset": folder,
        "checkpoint": str(checkpoint),
        "items": len(derived) + len(real_test),
        "derived_items": len(derived),
        "derived_positive_items": sum(1 for t in truth if t),
        "derived_type_f1": derived_scores["model"]["type_f1"],
        "derived_exact_match": derived_scores["model"]["exact_match"],
        "majority_exact_match": derived_scores["majority"]["exact_match"],
        "majority_stack": majority,
        "nearest_exact_match": derived_scores["nearest"]["exact_match"],
        "rule_exact_match": derived_scores["rule"]["exact_match"],
        "derived": derived_scores,
        "derived_per_type_f1": {k: v["f1"] for k, v in derived_scores["model"]["per_type"].items()},
        "derived_support": {k: v["support"] for k, v in derived_scores["model"]["per_type"].items()},
        "derived_head_accuracy": head_accuracy(model, derived),
        "constructed_heldout": constructed_scores,
        "real_exact_match": real_cv["model"]["exact_match"],
        "real_majority_exact_match": real_cv["majority"]["exact_match"],
        "real_at_least_one_exact_match": real_cv["model_at_least_one"]["exact_match"],
        "real_nearest_exact_match": real_cv["nearest"]["exact_match"],
        "real_rule_exact_match": real_cv["rule"]["exact_match"],
        "real_items": real_cv["model"]["items"],
        "real_cross_validation": real_cv,
        "real_test_exact_match": real_test_scores["model"]["exact_match"],
        "real_test_majority_exact_match": real_test_scores["majority"]["exact_match"],
        "real_test_at_least_one_exact_match": real_test_scores["model_at_least_one"]["exact_match"],
        "real_test": real_test_scores,
        "real_majority_stack": real_majority,
        "apply_ok_share": round(float(np.mean(apply_ok)), 4) if apply_ok else 0.0,
        "applied": len(apply_ok),
        "apply_failures": failures[:20],
        "dropped_by_generator": dict(Counter(t for a in answers for t in a["dropped"])),
        "limit": limit,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    render_predictions(questions, answers, applied, out_dir / "predictions.png")
    metrics["png"] = str(out_dir / "predictions.png")
    return metrics


def _items(folder: str, split: str) -> list[dict[str, Any]]:
    from shared.ml.datasets import iter_split

    return list(iter_split(folder, split, "modifier"))


def render_predictions(questions: Examples, answers: list[dict], applied: list[dict], path: Path) -> None:
    """Rows of test meshes: the mesh, the predicted stack (and the truth), and what
    Blender builds from the predicted stack on its base."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from shared.ml.modifier_pictures import draw_mesh, stack_text
    from shared.ml.modifier_structure import MeshArrays

    def kind(i: int) -> str:
        item = questions.items[i]
        if item.get("derived_by") == "artist":
            return "artist"
        return "derived" if item["modifiers"] else "no stack"

    # A mix a person can judge: derived pairs (one of each stack first), meshes without a stack,
    # then the artists' stacks.
    derived, seen, firsts = [i for i in range(len(questions)) if kind(i) == "derived"], set(), []
    for i in derived:
        if tuple(questions.true_types(i)) not in seen:
            seen.add(tuple(questions.true_types(i)))
            firsts.append(i)
    rows = (firsts + [i for i in derived if i not in firsts])[:4]
    rows += [i for i in range(len(questions)) if kind(i) == "no stack"][:2]
    rows += [i for i in range(len(questions)) if kind(i) == "artist"][: PICTURE_ROWS - len(rows)]
    fig = plt.figure(figsize=(10, 2.6 * len(rows)))
    for r, i in enumerate(rows):
        item, answer, result = questions.items[i], answers[i], applied[i]
        original = finished_mesh(item)
        ax = fig.add_subplot(len(rows), 4, r * 4 + 1, projection="3d")
        draw_mesh(
            ax,
            original,
            f'{kind(i)}: {item["object"][:20]} ({len(original.faces)} faces)\n"{item["captions"][0][:34]}"',
        )
        if answer.get("base_mesh"):
            ax = fig.add_subplot(len(rows), 4, r * 4 + 2, projection="3d")
            draw_mesh(
                ax, MeshArrays.from_dict(answer["base_mesh"]), "base the stack works on", frame=original
            )
        ax = fig.add_subplot(len(rows), 4, r * 4 + 3)
        ax.text(
            0.0,
            0.5,
            "predicted:\n" + stack_text(answer["modifiers"]) + "\n\ntruth:\n" + stack_text(item["modifiers"]),
            fontsize=7,
            va="center",
            family="monospace",
        )
        ax.set_axis_off()
        ax = fig.add_subplot(len(rows), 4, r * 4 + 4, projection="3d")
        if result.get("mesh") and result["mesh"]["faces"]:
            draw_mesh(
                ax,
                MeshArrays.from_dict(result["mesh"]),
                f"Blender: {'ok' if result['ok'] else result['error'][:30]}",
            )
        else:
            ax.set_title(f"Blender failed: {(result.get('error') or '')[:40]}", fontsize=7)
            ax.set_axis_off()
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="full", help="derived modifier dataset: name or folder")
    parser.add_argument("--checkpoint", default="models/modifier/tiny/model.pt")
    parser.add_argument("--out", default="var/eval/modifier")
    parser.add_argument("--workers", type=int, default=1, help="Blender child processes")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    limit = int(os.environ["EVAL_LIMIT"]) if os.environ.get("EVAL_LIMIT") else None
    metrics = evaluate_modifier(args.dataset, args.checkpoint, Path(args.out), limit, args.workers)
    keys = (
        "items",
        "derived_type_f1",
        "derived_exact_match",
        "majority_exact_match",
        "nearest_exact_match",
        "rule_exact_match",
        "real_exact_match",
        "real_majority_exact_match",
        "real_at_least_one_exact_match",
        "real_nearest_exact_match",
        "real_rule_exact_match",
        "real_test_exact_match",
        "real_test_majority_exact_match",
        "real_test_at_least_one_exact_match",
        "apply_ok_share",
    )
    for key in keys:
        print(f"{key:<32} {metrics[key]}")
    print(f"per type (derived): {metrics['derived']['model']['per_type']}")
    if metrics["constructed_heldout"]:
        print(f"per type (constructed, held out): {metrics['constructed_heldout']['model']['per_type']}")
    print(f"metrics: {args.out}/metrics.json  picture: {metrics['png']}")


if __name__ == "__main__":
    main()
