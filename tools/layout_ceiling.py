"""How recognisable a parts model's objects get with given layouts: its part model on (a) the nearest
training layout by caption, (b) each item's own decomposed layout; judged by the evaluation's
shape classifier. It bounds what a better structure model could give with the same part model.

    python -m tools.layout_ceiling [--split val] [--checkpoint models/geometry/parts-small/model.pt]

Samples as evaluate_geometry does (temperature 0.8, top-p 0.95, face budget 400, unless told
otherwise; seeds by ``sample_seed``); the first caption of each item is its prompt.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np
import torch

from services.trainer.evaluate_geometry import sample_seed
from services.trainer.geometry import load_items
from services.trainer.geometry_classifier import ShapeClassifier, mesh_on_grid
from services.trainer.geometry_parts import decompositions, layout_boxes, training_layouts
from shared.ml.layout_tokens import LayoutBox, LayoutVocabulary
from shared.ml.mesh_tokenizer import QuantizedMesh
from shared.ml.parts_model import PartsModel, load_parts_model, nearest_layout
from shared.ml.text_embedding import default_cache_dir, embed

BATCH = 16
LAYOUTS = ("nearest training layout", "own layout")


def written_on(
    model: PartsModel,
    texts: torch.Tensor,
    layout_of: Callable[[int, torch.Generator], list[LayoutBox]],
    face_budget: int = 400,
    temperature: float = 0.8,
) -> list[QuantizedMesh]:
    """The part model's object for each prompt row k, on ``layout_of(k, its generator)`` (drawn as
    generate_batch draws it), seeded by ``sample_seed`` as evaluate_geometry seeds, on the
    evaluation's grid."""
    meshes = []
    for start in range(0, len(texts), BATCH):
        chunk = range(start, min(start + BATCH, len(texts)))
        generators = [torch.Generator().manual_seed(sample_seed(0, k, 0)) for k in chunk]
        objects = model.write_parts(
            texts[start : chunk.stop],
            [layout_of(k, g) for k, g in zip(chunk, generators, strict=True)],
            [face_budget] * len(chunk),
            temperature,
            0.95,
            generators,
            [0] * len(chunk),
        )
        meshes += [mesh_on_grid(o.vertices, o.faces) for o in objects]
    return meshes


def layout_ceiling(
    checkpoint: str,
    dataset: str,
    split: str,
    temperature: float = 0.8,
    face_budget: int = 400,
    which: tuple[str, ...] = LAYOUTS,
    mirror: bool = True,
) -> dict[str, float]:
    model, _ = load_parts_model(checkpoint, half_precision=False)
    model.mirror = mirror
    rule = model.decomposition
    vocab = LayoutVocabulary(rule.tokenizer.bits)
    library = training_layouts(decompositions(dataset, "train", rule), rule.tokenizer.bits)
    own = {o["id"]: o for o in decompositions(dataset, split, rule)}
    items = load_items(dataset, split)
    texts = torch.from_numpy(embed([it["captions"][0] for it in items], default_cache_dir()))
    judge = ShapeClassifier.load()
    layouts = {  # item k's layout, drawn with its generator as generate_batch draws it
        "nearest training layout": lambda k, g: nearest_layout(library, texts[k].numpy(), face_budget, g),
        "own layout": lambda k, g: layout_boxes(own[items[k]["id"]]["parts"], vocab),
    }
    accuracy = {}
    for name in which:
        predicted = judge.predict(written_on(model, texts, layouts[name], face_budget, temperature))
        accuracy[name] = float(np.mean([p == it["category"] for p, it in zip(predicted, items, strict=True)]))
        print(
            f"{name}: category accuracy {accuracy[name]:.3f} ({split}, {len(items)} items, temperature {temperature}, face budget {face_budget}, mirrored pairs {mirror})",
            flush=True,
        )
    return accuracy


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default="models/geometry/parts-small/model.pt")
    parser.add_argument("--dataset", default="full")
    parser.add_argument("--split", default="val", choices=("val", "test"))
    parser.add_argument("--temperature", type=float, default=0.8, help="the part model's")
    parser.add_argument("--face-budget", type=int, default=400)
    parser.add_argument("--no-mirror", action="store_true", help="write both parts of a mirrored pair")
    parser.add_argument("--layouts", nargs="+", choices=LAYOUTS, default=list(LAYOUTS))
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    layout_ceiling(
        args.checkpoint,
        args.dataset,
        args.split,
        args.temperature,
        args.face_budget,
        tuple(args.layouts),
        not args.no_mirror,
    )


if __name__ == "__main__":
    main()
