"""Sample metrics of geometry generators of any design (flat, parts) on a dataset split, side by
side with the retrieval baseline, plus a prompt sheet. Val losses do not compare across designs;
these do, since every generator is scored on the meshes it returns (``load_generator``).

    python -m benchmarks.geometry_generators --dataset /work/datasets/geometry \
        --checkpoint models/geometry/tiny-full/model.pt --checkpoint models/geometry/parts-tiny/model.pt \
        [--limit 64] [--out var/eval/generators]

Each test item's first caption is a prompt, one sample each (seed = the item's index), decoded
in batches of --batch-size. Scored as services.trainer.evaluate does (geometry_metrics): valid
share, manifold edges (each loose part counted on its own: returned vertices are not welded),
Chamfer to the nearest same-category test mesh, COV / MMD / 1-NNA against the test meshes,
novelty (Chamfer to the nearest training mesh). Seconds per object: --timed prompts one at a
time. Writes metrics.json and sheet.png (the everyday prompts of PROMPT_SHEET, a row per generator).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from services.trainer.evaluate import _draw
from services.trainer.geometry import load_items
from services.trainer.geometry_metrics import (
    Cloud,
    NearestNeighbourIndex,
    chamfer,
    distance_matrix,
    sample_points,
    set_metrics,
    validity,
)
from shared.ml.geometry_generator import OUTPUT_SIZE_M, MeshRequest, load_generator
from shared.ml.mesh_tokenizer import QuantizedMesh, canonicalize, quantize_mesh
from shared.ml.text_embedding import default_cache_dir, embed

PROMPT_SHEET = [
    "a wooden chair",
    "a table",
    "a low poly tree",
    "a sword",
    "a house",
    "a barrel",
    "a car",
    "a rock",
    "a lamp",
    "a bed",
    "a fence",
    "a bottle",
]
FINE_BITS = 10  # returned vertices put on a fine grid for scoring, unwelded


def as_quantized(result: dict) -> QuantizedMesh:
    """A generator's result (metres, centred) as a QuantizedMesh in the unit cube, vertices kept apart."""
    v = np.asarray(result["vertices"], dtype=np.float64).reshape(-1, 3) / OUTPUT_SIZE_M
    top = (1 << FINE_BITS) - 1
    grid = np.clip(np.rint((v + 0.5) * top), 0, top).astype(np.int64)
    return canonicalize(grid, [tuple(f) for f in result["faces"]], FINE_BITS)


def run(
    checkpoints: list[str], dataset: str | None, limit: int, batch_size: int, timed: int, out: Path
) -> dict:
    rng = np.random.default_rng(0)
    test = load_items(dataset, "test")[:limit]
    train = load_items(dataset, "train")
    train_meshes = [quantize_mesh(it["mesh"]["vertices"], it["mesh"]["faces"]) for it in train]
    train_clouds = [Cloud(sample_points(m, 1024, rng)) for m in train_meshes]
    train_index = NearestNeighbourIndex(train_clouds)
    test_clouds = [
        Cloud(sample_points(quantize_mesh(it["mesh"]["vertices"], it["mesh"]["faces"]), 1024, rng))
        for it in test
    ]
    reference_distances = distance_matrix(test_clouds)
    prompts = [it["captions"][0] for it in test]
    captions = [(c, i) for i, it in enumerate(train) for c in it["captions"]]
    caption_vecs = embed([c for c, _ in captions], default_cache_dir())
    prompt_vecs = embed(prompts, default_cache_dir())
    retrieved = [captions[int(np.argmax(caption_vecs @ p))][1] for p in prompt_vecs]

    def score(meshes: list[QuantizedMesh], clouds: list[Cloud]) -> dict:
        rows = []
        for k, (mesh, cloud) in enumerate(zip(meshes, clouds, strict=True)):
            same = [j for j, t in enumerate(test) if t["category"] == test[k]["category"]]
            rows.append(
                {
                    **validity(mesh),
                    "chamfer": min(chamfer(cloud, test_clouds[j]) for j in same),
                    "novelty": train_index.nearest(cloud)[1],
                }
            )
        return {
            "manifold_share": float(np.mean([r["manifold_edge_share"] for r in rows])),
            "faces_mean": float(np.mean([r["faces"] for r in rows])),
            "chamfer_x1e3": 1e3 * float(np.mean([r["chamfer"] for r in rows])),
            "novelty_x1e3": 1e3 * float(np.mean([r["novelty"] for r in rows])),
            **set_metrics(clouds, test_clouds, reference_distances),
        }

    metrics: dict = {
        "dataset": dataset,
        "items": len(test),
        "retrieval": score([train_meshes[i] for i in retrieved], [train_clouds[i] for i in retrieved]),
    }
    sheets = {}
    for checkpoint in checkpoints:
        torch.manual_seed(0)
        generator = load_generator(checkpoint)
        results: list[dict] = []
        for start in range(0, len(prompts), batch_size):
            chunk = range(start, min(start + batch_size, len(prompts)))
            results += generator.generate_many(
                [MeshRequest(prompts[k], face_budget=400, seed=k) for k in chunk]
            )
        meshes = [as_quantized(r) for r in results]
        clouds = [Cloud(sample_points(m, 1024, rng)) for m in meshes]
        started = time.perf_counter()
        for k in range(timed):
            generator.generate(prompts[k], face_budget=400, seed=k)
        metrics[checkpoint] = {
            **score(meshes, clouds),
            "valid_share": float(np.mean([bool(m.faces) for m in meshes])),
            "seconds_per_object": (time.perf_counter() - started) / max(1, timed),
            "tokens_mean": float(np.mean([r["tokens"] for r in results])),
        }
        sheets[checkpoint] = [
            as_quantized(generator.generate(p, face_budget=400, seed=0)) for p in PROMPT_SHEET
        ]
        print(json.dumps({checkpoint: metrics[checkpoint]}))
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    render_sheet(sheets, out / "sheet.png")
    return metrics


def render_sheet(sheets: dict[str, list[QuantizedMesh]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(1.9 * len(PROMPT_SHEET), 2.1 * len(sheets)))
    for r, (checkpoint, meshes) in enumerate(sheets.items()):
        for c, (prompt, mesh) in enumerate(zip(PROMPT_SHEET, meshes, strict=True)):
            ax = fig.add_subplot(
                len(sheets), len(PROMPT_SHEET), r * len(PROMPT_SHEET) + c + 1, projection="3d"
            )
            label = Path(checkpoint).parent.name
            _draw(ax, mesh, f'"{prompt}"\n{label}: {len(mesh.faces)} faces')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.geometry_generators")
    parser.add_argument("--dataset", help="geometry dataset; default: synthetic primitives")
    parser.add_argument("--checkpoint", action="append", required=True)
    parser.add_argument("--limit", type=int, default=64, help="first N test items")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--timed", type=int, default=4, help="prompts generated one at a time, timed")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default="var/eval/generators")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    run(args.checkpoint, args.dataset, args.limit, args.batch_size, args.timed, Path(args.out))


if __name__ == "__main__":
    main()
