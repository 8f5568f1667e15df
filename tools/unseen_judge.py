"""Category accuracy judged by classifiers that have not seen the meshes they judge.

The evaluation's judge (models/geometry/classifier) was trained on the whole train split, and
retrieval answers with train meshes: meshes the judge has seen. Here the train split's packs are
cut in two halves; a classifier of the committed configuration is trained on each half (chosen on
val, as the committed one) and, for each split prompt, judges retrieval from its own half (seen
meshes), retrieval from the other half and the parts model on the other half's nearest layout
(meshes and layouts it has not seen), beside the real split meshes.

    python -m tools.unseen_judge [--checkpoint models/geometry/parts-nearest/model.pt] [--split test]

The judges are kept in --out and reused. Samples as tools.layout_ceiling draws them
(``written_on``: the first caption of each item is its prompt, temperature 0.8, top-p 0.95, face
budget 400).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from services.trainer.geometry import load_items
from services.trainer.geometry_classifier import (
    ClassifierConfig,
    ShapeClassifier,
    mesh_on_grid,
    save_classifier,
    train_classifier,
)
from services.trainer.geometry_parts import decompositions, training_layouts
from shared.ml.parts_model import load_parts_model
from shared.ml.text_embedding import default_cache_dir, embed
from tools.layout_ceiling import written_on


def pack_halves(items: list[dict]) -> list[set[str]]:
    """The items' packs in two halves of about as many items, largest pack first."""
    sizes: dict[str, int] = {}
    for it in items:
        sizes[it["pack"]] = sizes.get(it["pack"], 0) + 1
    halves: list[set[str]] = [set(), set()]
    counts = [0, 0]
    for pack in sorted(sizes, key=lambda p: (-sizes[p], p)):
        smaller = int(counts[1] < counts[0])
        halves[smaller].add(pack)
        counts[smaller] += sizes[pack]
    return halves


def judge_of(half: list[dict], val: list[dict], path: Path, epochs: int) -> ShapeClassifier:
    if not path.exists():
        config = ClassifierConfig(input="views", epochs=epochs, lr=0.005, threads=torch.get_num_threads())
        classifier, record = train_classifier(half, val, config)
        save_classifier(classifier, path, {**record, "splits_seen": ["half of train", "val (model choice)"]})
    return ShapeClassifier.load(path)


def unseen_judge(
    checkpoint: str, dataset: str, split: str, out: Path, epochs: int = 30
) -> dict[str, list[float]]:
    model, _ = load_parts_model(checkpoint, half_precision=False)
    rule = model.decomposition
    train, val, items = (load_items(dataset, s) for s in ("train", "val", split))
    texts = torch.from_numpy(embed([it["captions"][0] for it in items], default_cache_dir()))
    meshes_of = {it["id"]: it for it in train}
    objects = [o for o in decompositions(dataset, "train", rule) if o["fits"]]
    truth = [it["category"] for it in items]
    real = [mesh_on_grid(it["mesh"]["vertices"], it["mesh"]["faces"]) for it in items]
    halves = pack_halves(train)
    scores: dict[str, list[float]] = {}

    def score(name: str, judge: ShapeClassifier, meshes: list) -> None:
        accuracy = float(np.mean([p == t for p, t in zip(judge.predict(meshes), truth, strict=True)]))
        scores.setdefault(name, []).append(accuracy)
        print(f"{name}: {accuracy:.3f}", flush=True)

    for h, packs in enumerate(halves):
        judge = judge_of([it for it in train if it["pack"] in packs], val, out / f"judge-{h}.pt", epochs)
        print(f"judge {h}: trained on {len(packs)} packs of train", flush=True)
        score("real split meshes", judge, real)
        for seen in (True, False):
            library_objects = [o for o in objects if (meshes_of[o["id"]]["pack"] in packs) == seen]
            library = training_layouts(library_objects, rule.tokenizer.bits)
            found = [library.nearest(text.numpy())[0] for text in texts]
            sources = [meshes_of[library_objects[f]["id"]]["mesh"] for f in found]
            name = f"retrieval, {'seen' if seen else 'unseen'} meshes"
            score(name, judge, [mesh_on_grid(m["vertices"], m["faces"]) for m in sources])
            if not seen:
                unseen = written_on(
                    model, texts, lambda k, _, found=found, library=library: library.boxes(found[k])
                )
                score("parts on unseen layouts", judge, unseen)
    for name, values in scores.items():
        print(f"mean over both judges, {name}: {np.mean(values):.3f} ({split}, {len(items)} items)")
    return scores


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="models/geometry/parts-nearest/model.pt")
    parser.add_argument("--dataset", default="full")
    parser.add_argument("--split", default="test", choices=("val", "test"))
    parser.add_argument("--out", default="var/eval/unseen-judge")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    unseen_judge(args.checkpoint, args.dataset, args.split, Path(args.out), args.epochs)


if __name__ == "__main__":
    main()
