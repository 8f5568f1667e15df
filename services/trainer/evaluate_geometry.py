"""Evaluation of a geometry checkpoint against a retrieval baseline, on the test split.

    python -m services.trainer.evaluate geometry --checkpoint models/geometry/tiny/model.pt [--dataset D]

For each test item, its first caption is the prompt. The model samples a mesh (grammar-
constrained); the retrieval baseline returns the training mesh whose caption embedding is
closest to the prompt's. Both are scored in the same run: validity (decodes, degenerate faces,
manifold edges), Chamfer distance and F-score to the nearest test reference of the prompt's
category, COV / MMD / 1-NNA of the whole set against the test meshes, and novelty (Chamfer to the
nearest training mesh of the category). Writes eval.json and samples.png (a grid: per prompt,
samples, the retrieval result and the nearest reference) to --out.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402
from tqdm import tqdm  # noqa: E402

from services.trainer.geometry import load_items  # noqa: E402
from services.trainer.geometry_metrics import (  # noqa: E402
    Cloud,
    NearestNeighbourIndex,
    chamfer,
    distance_matrix,
    fscore,
    sample_points,
    set_metrics,
    validity,
)
from shared.ml.geometry_model import load_model  # noqa: E402
from shared.ml.mesh_tokenizer import QuantizedMesh, decode, quantize_mesh  # noqa: E402
from shared.ml.text_embedding import default_cache_dir, embed  # noqa: E402


def _quantized(item: dict, config) -> QuantizedMesh:
    return quantize_mesh(item["mesh"]["vertices"], item["mesh"]["faces"], config)


def evaluate_geometry(
    checkpoint: str,
    dataset: str | None = None,
    out: str = "runs/geometry-eval",
    max_prompts: int | None = None,
    samples_per_prompt: int = 1,
    points: int = 1024,
    face_budget: int = 400,
    temperature: float = 0.8,
    top_p: float = 0.95,
    seed: int = 0,
    split: str = "test",
    device: str = "cpu",
    batch_size: int = 16,
) -> dict:
    torch.manual_seed(seed)
    # fp32 weights: the evaluation decodes many rows at once, where fp32 products are faster, and
    # a prompt's samples must not depend on --batch-size (fp16 products round otherwise).
    model, ckpt = load_model(checkpoint, device, half_precision=False)
    tok_config = model.config.tokenizer
    rng = np.random.default_rng(seed)
    test = load_items(dataset, split)[:max_prompts]
    train = load_items(dataset, "train")
    if not test or not train:
        raise ValueError(f"evaluation needs a non-empty train and {split} split")
    train_meshes = [_quantized(it, tok_config) for it in train]
    train_clouds = [Cloud(sample_points(m, points, rng)) for m in tqdm(train_meshes, desc="train clouds")]
    train_index = NearestNeighbourIndex(train_clouds)
    test_meshes = [_quantized(it, tok_config) for it in test]
    test_clouds = [Cloud(sample_points(m, points, rng)) for m in test_meshes]
    # Retrieval index: every training caption, pointing back at its item.
    captions = [(c, i) for i, it in enumerate(train) for c in it["captions"]]
    caption_vecs = embed([c for c, _ in captions], default_cache_dir())
    prompts = [it["captions"][0] for it in test]
    prompt_vecs = embed(prompts, default_cache_dir())

    def score(mesh: QuantizedMesh, cloud: Cloud, item: dict) -> dict:
        refs = [j for j, t in enumerate(test) if t["category"] == item["category"]]
        d = [chamfer(cloud, test_clouds[j]) for j in refs]
        nearest = refs[int(np.argmin(d))]
        return {
            **validity(mesh),
            "chamfer": float(min(d)),
            "fscore": fscore(cloud, test_clouds[nearest]),
            "novelty": train_index.nearest(cloud)[1],
            "nearest_reference": nearest,
        }

    rows: dict[str, list[dict]] = {"model": [], "retrieval": []}
    clouds: dict[str, list[Cloud]] = {"model": [], "retrieval": []}
    meshes: dict[str, list[list[QuantizedMesh]]] = {"model": [], "retrieval": []}
    gen_seconds, gen_tokens = 0.0, 0
    bar = tqdm(total=len(test), desc="prompts")
    for start in range(0, len(test), batch_size):
        chunk = list(range(start, min(start + batch_size, len(test))))
        texts = torch.from_numpy(np.repeat(prompt_vecs[chunk], samples_per_prompt, axis=0))
        t0 = time.perf_counter()
        # A generator per sample, seeded by (seed, prompt, sample): a prompt's samples do not
        # depend on the batch size or on the prompts beside it.
        generators = [
            torch.Generator(device).manual_seed(
                int(np.random.SeedSequence([seed, k, s]).generate_state(1)[0])
            )
            for k in chunk
            for s in range(samples_per_prompt)
        ]
        generated = model.generate_batch(
            texts, face_budget=face_budget, temperature=temperature, top_p=top_p, generator=generators
        )
        gen_seconds += time.perf_counter() - t0
        for j, k in enumerate(chunk):
            item, samples = test[k], []
            for tokens, mesh in generated[j * samples_per_prompt : (j + 1) * samples_per_prompt]:
                gen_tokens += len(tokens)
                decoded_ok = True
                try:
                    decode(tokens, tok_config)
                except ValueError:
                    decoded_ok = False
                cloud = Cloud(sample_points(mesh, points, rng))
                rows["model"].append(
                    {**score(mesh, cloud, item), "decodes": decoded_ok, "tokens": len(tokens)}
                )
                clouds["model"].append(cloud)
                samples.append(mesh)
            meshes["model"].append(samples)
            best = captions[int(np.argmax(caption_vecs @ prompt_vecs[k]))][1]
            retrieved = train_meshes[best]
            rows["retrieval"].append(
                {**score(retrieved, train_clouds[best], item), "decodes": True, "tokens": 0}
            )
            clouds["retrieval"].append(train_clouds[best])
            meshes["retrieval"].append([retrieved])
        bar.update(len(chunk))
    bar.close()

    reference_distances = distance_matrix(test_clouds)  # shared by both sets' 1-NNA
    summary = {}
    for name in ("model", "retrieval"):
        r = rows[name]
        summary[name] = {
            "valid_decodes_%": 100 * float(np.mean([x["decodes"] for x in r])),
            "degenerate_faces_%": 100
            * sum(x["degenerate_faces"] for x in r)
            / max(1, sum(x["faces"] for x in r)),
            "manifold_edges_%": 100 * float(np.mean([x["manifold_edge_share"] for x in r])),
            "faces_mean": float(np.mean([x["faces"] for x in r])),
            "chamfer_x1e3": 1e3 * float(np.mean([x["chamfer"] for x in r])),
            "fscore@0.02": float(np.mean([x["fscore"] for x in r])),
            "novelty_x1e3": 1e3 * float(np.mean([x["novelty"] for x in r])),
            **set_metrics(clouds[name], test_clouds, reference_distances),
        }
    result = {
        "checkpoint": str(checkpoint),
        "run": ckpt.get("run", {}).get("dataset"),
        "dataset": dataset or "synthetic-primitives",
        "split": split,
        "prompts": len(test),
        "samples_per_prompt": samples_per_prompt,
        "points_per_cloud": points,
        "sampling": {"temperature": temperature, "top_p": top_p, "face_budget": face_budget, "seed": seed},
        "batch_size": batch_size,
        "generation": {
            "device": torch.cuda.get_device_name(device) if device.startswith("cuda") else "cpu",
            "tokens_per_s": gen_tokens / gen_seconds if gen_seconds else None,
            "seconds": gen_seconds,
        },
        "summary": summary,
    }
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps({**result, "rows": rows}, indent=2, default=float))
    render_grid(
        test, prompts, meshes, test_meshes, rows["model"], out_dir / "samples.png", samples_per_prompt
    )
    result["png"] = str(out_dir / "samples.png")
    return result


def _draw(ax, mesh: QuantizedMesh, title: str) -> None:
    v = mesh.unit_vertices()
    # Blender is Z-up: plot (x, y, z) directly with equal limits.
    polys = [v[list(f)] for f in mesh.faces]
    ax.add_collection3d(
        Poly3DCollection(polys, facecolor="#8fb3d9", edgecolor="#1d3557", linewidths=0.4, alpha=0.9)
    )
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-0.5, 0.5)
    ax.view_init(elev=22, azim=-55)
    ax.set_axis_off()
    ax.set_title(title, fontsize=7)


def render_grid(
    test, prompts, meshes, test_meshes, model_rows, path: Path, samples_per_prompt: int, rows: int = 8
) -> None:
    """One row per prompt (one per category first): samples, retrieval result, nearest reference."""
    chosen, seen = [], set()
    for k, item in enumerate(test):
        if item["category"] not in seen:
            seen.add(item["category"])
            chosen.append(k)
    chosen = (chosen + [k for k in range(len(test)) if k not in chosen])[:rows]
    cols = samples_per_prompt + 2
    fig = plt.figure(figsize=(2.2 * cols, 2.2 * len(chosen)))
    for r, k in enumerate(chosen):
        panels = [(m, f"sample {s + 1}: {len(m.faces)} faces") for s, m in enumerate(meshes["model"][k])]
        panels.append((meshes["retrieval"][k][0], "retrieval (train)"))
        ref = model_rows[k * samples_per_prompt]["nearest_reference"]
        panels.append((test_meshes[ref], "nearest test ref"))
        for c, (mesh, title) in enumerate(panels):
            ax = fig.add_subplot(len(chosen), cols, r * cols + c + 1, projection="3d")
            _draw(ax, mesh, (f'"{prompts[k]}"\n' if c == 0 else "\n") + title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def print_table(result: dict) -> None:
    keys = list(result["summary"]["model"])
    print(
        f"\ngeometry evaluation: {result['prompts']} {result['split']} prompts x "
        f"{result['samples_per_prompt']} sample(s), dataset {result['dataset']}"
    )
    print(f"{'metric':<22}{'model':>12}{'retrieval':>12}")
    for key in keys:
        print(
            f"{key:<22}{result['summary']['model'][key]:>12.3f}{result['summary']['retrieval'][key]:>12.3f}"
        )
    print(f"generation: {result['generation']['tokens_per_s']:.0f} tokens/s; grid: {result['png']}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trainer.evaluate")
    sub = parser.add_subparsers(dest="specialist", required=True)
    geo = sub.add_parser("geometry")
    geo.add_argument("--checkpoint", default="models/geometry/tiny/model.pt")
    geo.add_argument("--dataset", help="manifest sha256, file or folder; default: synthetic primitives")
    geo.add_argument("--out", default="runs/geometry-eval")
    geo.add_argument("--prompts", type=int, help="at most this many test prompts (default: every test item)")
    geo.add_argument("--samples-per-prompt", type=int, default=1)
    geo.add_argument("--temperature", type=float, default=0.8)
    geo.add_argument("--top-p", type=float, default=0.95)
    geo.add_argument(
        "--split", default="test", choices=["val", "test"], help="val: choose sampling settings there"
    )
    geo.add_argument("--threads", type=int, default=2)
    geo.add_argument("--device", default="cpu", help="where the model samples: cpu or cuda")
    geo.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="prompts sampled side by side (a prompt's samples are the same at any batch size)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate_geometry(
        args.checkpoint,
        args.dataset,
        args.out,
        max_prompts=args.prompts,
        samples_per_prompt=args.samples_per_prompt,
        temperature=args.temperature,
        top_p=args.top_p,
        split=args.split,
        device=args.device,
        batch_size=args.batch_size,
    )
    print_table(result)


if __name__ == "__main__":
    main()
