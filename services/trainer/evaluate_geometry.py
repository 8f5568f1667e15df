"""Evaluation of geometry generators against real meshes and a retrieval baseline, on the test split.

    python -m services.trainer.evaluate_geometry [--dataset D] [--checkpoint A --checkpoint B ...]

For each test item (the first EVAL_LIMIT or --prompts of them), its first caption is the prompt.
Every generator (one per --checkpoint, loaded by shared.ml.geometry_generator.load_generator, so
any model kind plugs in) samples k meshes per prompt through ``generate_many``; the retrieval
baseline returns the k distinct training meshes whose best caption embedding is closest to the
prompt's. All of them, and the real test meshes, are judged alike on the evaluation grid (welded
at 7 bits, unit cube, Z up):

- recognisability: the share of meshes whose category, as the committed shape classifier
  (services/trainer/geometry_classifier.py, trained on the train split only) sees it, is the test
  item's category. On the real test meshes this is the ceiling;
- validity (a well-formed mesh came back; degenerate faces; manifold edges);
- Chamfer distance and F-score to the nearest test reference of the prompt's category, COV / MMD /
  1-NNA of the whole set against the test meshes, novelty (Chamfer to the nearest training mesh).

Writes to --out (default var/eval/geometry): metrics.json (flat: the first generator's figures
unprefixed, ``retrieval_*`` for retrieval, ``<generator>/*`` for every generator), eval.json (every
row), samples.png (per prompt: each source's meshes and the nearest test reference) and
prompt_sheet.png (the fixed prompts of geometry_prompt_sheet.py for every generator and retrieval,
each cell titled with the classifier's category). Units: shares in 0..1, COV and 1-NNA in %,
Chamfer, MMD and novelty x10^3.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from mpl_toolkits.mplot3d.art3d import Poly3DCollection  # noqa: E402
from tqdm import tqdm  # noqa: E402

from services.trainer.geometry import load_items  # noqa: E402
from services.trainer.geometry_classifier import DEFAULT_PATH as DEFAULT_CLASSIFIER  # noqa: E402
from services.trainer.geometry_classifier import ShapeClassifier, mesh_on_grid  # noqa: E402
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
from services.trainer.geometry_prompt_sheet import PROMPT_SHEET  # noqa: E402
from shared.ml.datasets import DatasetError, dataset_version  # noqa: E402
from shared.ml.geometry_generator import MeshGenerator, MeshRequest, load_generator  # noqa: E402
from shared.ml.layout_exemplars import top_k_distinct  # noqa: E402
from shared.ml.mesh_tokenizer import QuantizedMesh, TokenizerError, quantize_mesh  # noqa: E402
from shared.ml.text_embedding import default_cache_dir, embed  # noqa: E402

# The served parts model (primary: metrics.json's top-level figures are its), parts-small (layouts written by its
# structure model) and the flat one beside it.
DEFAULT_CHECKPOINTS = [
    "models/geometry/parts-nearest/model.pt",
    "models/geometry/parts-small/model.pt",
    "models/geometry/tiny/model.pt",
]
RETRIEVAL = "retrieval"
_EMPTY = quantize_mesh(np.zeros((0, 3)), [])


def sample_seed(seed: int, prompt: int, sample: int) -> int:
    """A seed per (seed, prompt, sample): a prompt's samples do not depend on the batch size or on
    the prompts beside it."""
    return int(np.random.SeedSequence([seed, prompt, sample]).generate_state(1)[0])


def generator_name(checkpoint: str, taken: set[str]) -> str:
    """models/geometry/tiny-full/model.pt -> tiny-full (its folder), made unique among taken."""
    path = Path(checkpoint)
    name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
    unique, n = name, 2
    while unique in taken or unique == RETRIEVAL:
        unique, n = f"{name}-{n}", n + 1
    return unique


def _on_grid(result: dict) -> tuple[QuantizedMesh, bool]:
    """A generator's mesh dict on the evaluation grid, and whether it was a well-formed mesh."""
    try:
        mesh = mesh_on_grid(result["vertices"], result["faces"])
    except (KeyError, TypeError, TokenizerError):
        return _EMPTY, False
    return mesh, len(mesh.faces) > 0


def sample_generator(
    generator: MeshGenerator,
    prompts: list[str],
    samples_per_prompt: int,
    batch_size: int,
    seed: int,
    face_budget: int,
    temperature: float,
    top_p: float,
    progress: str = "",
) -> tuple[list[list[dict]], float]:
    """Each prompt's samples (mesh dicts as the generator returns them) and the seconds spent."""
    results: list[list[dict]] = []
    seconds = 0.0
    for start in tqdm(range(0, len(prompts), batch_size), desc=progress, disable=not progress):
        chunk = range(start, min(start + batch_size, len(prompts)))
        requests = [
            MeshRequest(prompts[k], face_budget, sample_seed(seed, k, s), temperature, top_p)
            for k in chunk
            for s in range(samples_per_prompt)
        ]
        t0 = time.perf_counter()
        out = generator.generate_many(requests)
        seconds += time.perf_counter() - t0
        results += [out[j * samples_per_prompt : (j + 1) * samples_per_prompt] for j in range(len(chunk))]
    return results, seconds


def evaluate_geometry(
    checkpoints: list[str],
    dataset: str | None = None,
    out: str = "var/eval/geometry",
    classifier: str | Path = DEFAULT_CLASSIFIER,
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
    prompt_sheet: tuple[tuple[str, str], ...] = PROMPT_SHEET,
) -> dict:
    if not checkpoints:
        raise ValueError("evaluation needs at least one --checkpoint")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    test = load_items(dataset, split)[:max_prompts]
    train = load_items(dataset, "train")
    if not test or not train:
        raise ValueError(f"evaluation needs a non-empty train and {split} split")
    if not Path(classifier).is_file():
        raise FileNotFoundError(f"no shape classifier at {classifier}: train one (make geometry-classifier)")

    train_meshes = [mesh_on_grid(it["mesh"]["vertices"], it["mesh"]["faces"]) for it in train]
    train_clouds = [Cloud(sample_points(m, points, rng)) for m in tqdm(train_meshes, desc="train clouds")]
    train_index = NearestNeighbourIndex(train_clouds)
    test_meshes = [mesh_on_grid(it["mesh"]["vertices"], it["mesh"]["faces"]) for it in test]
    test_clouds = [Cloud(sample_points(m, points, rng)) for m in test_meshes]
    truth = [it["category"] for it in test]

    # Retrieval: every training caption, pointing back at its item.
    captions = [(c, i) for i, it in enumerate(train) for c in it["captions"]]
    caption_vecs = embed([c for c, _ in captions], default_cache_dir())
    caption_items = np.array([i for _, i in captions])
    prompts = [it["captions"][0] for it in test]
    prompt_vecs = embed(prompts, default_cache_dir())

    def retrieve(vectors: np.ndarray, k: int) -> list[list[int]]:
        return [top_k_distinct(caption_vecs @ v, caption_items, k) for v in vectors]

    # source -> per prompt, its meshes on the grid (and whether each came back well formed)
    meshes: dict[str, list[list[QuantizedMesh]]] = {}
    valid: dict[str, list[bool]] = {}
    seconds: dict[str, float] = {}
    generators: dict[str, MeshGenerator] = {}
    for checkpoint in checkpoints:
        name = generator_name(checkpoint, set(generators))
        # fp32 weights: many rows decode at once, where fp32 products are faster, and a prompt's
        # samples must not depend on --batch-size (fp16 products round otherwise).
        generators[name] = load_generator(checkpoint, device, half_precision=False)
        results, seconds[name] = sample_generator(
            generators[name],
            prompts,
            samples_per_prompt,
            batch_size,
            seed,
            face_budget,
            temperature,
            top_p,
            name,
        )
        on_grid = [[_on_grid(r) for r in per_prompt] for per_prompt in results]
        meshes[name] = [[m for m, _ in per_prompt] for per_prompt in on_grid]
        valid[name] = [ok for per_prompt in on_grid for _, ok in per_prompt]
    retrieved = retrieve(prompt_vecs, samples_per_prompt)
    meshes[RETRIEVAL] = [[train_meshes[j] for j in found] for found in retrieved]
    valid[RETRIEVAL] = [True for found in retrieved for _ in found]

    judge = ShapeClassifier.load(classifier)  # read when judging starts, after the sampling
    notes = _version_notes(dataset, judge, {it["category"] for it in test})
    for note in notes:
        print(f"note: {note}")
    real_predicted = judge.predict(test_meshes)

    def score(mesh: QuantizedMesh, cloud: Cloud, k: int) -> dict:
        refs = [j for j, category in enumerate(truth) if category == truth[k]]
        d = [chamfer(cloud, test_clouds[j]) for j in refs]
        nearest = refs[int(np.argmin(d))]
        return {
            **validity(mesh),
            "chamfer": float(min(d)),
            "fscore": fscore(cloud, test_clouds[nearest]),
            "novelty": train_index.nearest(cloud)[1],
            "nearest_reference": nearest,
        }

    reference_distances = distance_matrix(test_clouds)  # shared by every set's 1-NNA
    rows: dict[str, list[dict]] = {}
    summary: dict[str, dict] = {"real": {"category_accuracy": _accuracy(real_predicted, truth)}}
    for name, per_prompt in meshes.items():
        flat = [(k, m) for k, ms in enumerate(per_prompt) for m in ms]
        if name == RETRIEVAL:
            clouds = [train_clouds[j] for found in retrieved for j in found]
        else:
            clouds = [Cloud(sample_points(m, points, rng)) for _, m in flat]
        predicted = judge.predict([m for _, m in flat])
        rows[name] = [
            {**score(m, c, k), "prompt": k, "valid": ok, "predicted_category": p, "category": truth[k]}
            for (k, m), c, ok, p in zip(flat, clouds, valid[name], predicted, strict=True)
        ]
        summary[name] = _summarise(rows[name], clouds, test_clouds, reference_distances)
        if name in seconds:
            summary[name]["seconds_per_object"] = seconds[name] / max(1, len(flat))

    sheet = _prompt_sheet(
        prompt_sheet, generators, retrieve, train_meshes, judge, seed, face_budget, temperature, top_p
    )
    for name, cells in sheet.items():
        summary[name]["prompt_sheet_category_accuracy"] = _accuracy(
            [p for _, p in cells], [c for _, c in prompt_sheet]
        )

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    version = _dataset_version(dataset)
    primary = next(iter(generators))
    metrics = {
        "dataset": dataset or "synthetic-primitives",
        "dataset_version": version.get("version"),
        "dataset_manifest_sha256": version.get("manifest_sha256"),
        "classifier": str(classifier),
        "classifier_version": judge.meta["version"],
        "classifier_dataset_manifest_sha256": judge.meta.get("dataset", {}).get("manifest_sha256"),
        "split": split,
        "items": len(test),
        "samples_per_prompt": samples_per_prompt,
        "generators": list(generators),
        "checkpoints": list(checkpoints),
        "real_category_accuracy": summary["real"]["category_accuracy"],
        **summary[primary],
        **{f"{RETRIEVAL}_{k}": v for k, v in summary[RETRIEVAL].items()},
        **{f"{name}/{k}": v for name in generators for k, v in summary[name].items()},
        "notes": notes,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    settings = {"temperature": temperature, "top_p": top_p, "face_budget": face_budget, "seed": seed}
    sheet_rows = {
        name: [
            {"prompt": p, "expected": c, "predicted": cell[1]}
            for (p, c), cell in zip(prompt_sheet, cells, strict=True)
        ]
        for name, cells in sheet.items()
    }
    detail = {
        "metrics": metrics,
        "summary": summary,
        "sampling": settings,
        "batch_size": batch_size,
        "points_per_cloud": points,
        "rows": rows,
        "prompt_sheet": sheet_rows,
    }
    (out_dir / "eval.json").write_text(json.dumps(detail, indent=2, default=float))
    render_grid(prompts, truth, meshes, test_meshes, rows, out_dir / "samples.png")
    render_prompt_sheet(prompt_sheet, sheet, out_dir / "prompt_sheet.png")
    return {"metrics": metrics, "summary": summary, "out": str(out_dir)}


def _accuracy(predicted: list[str], truth: list[str]) -> float:
    return float(np.mean([p == t for p, t in zip(predicted, truth, strict=True)])) if truth else 0.0


def _dataset_version(dataset: str | None) -> dict:
    if dataset is None:
        return {"version": "synthetic-primitives"}
    try:
        return dataset_version(dataset)
    except DatasetError:
        return {}


def _version_notes(dataset: str | None, judge: ShapeClassifier, categories: set[str]) -> list[str]:
    """What a reader of the figures must know: a classifier trained on other data, or one that
    cannot name some of the test categories (those items count as misses for every source)."""
    notes = []
    trained_on = judge.meta.get("dataset", {}).get("manifest_sha256")
    here = _dataset_version(dataset).get("manifest_sha256")
    if trained_on != here:
        notes.append(
            f"the classifier was trained on dataset manifest {trained_on}, this is {here}: its "
            "categories may not be this dataset's, and it may have seen some of these items"
        )
    unknown = sorted(categories - set(judge.categories))
    if unknown:
        notes.append(f"the classifier does not know the categories {unknown}")
    return notes


def _summarise(rows: list[dict], clouds: list[Cloud], reference: list[Cloud], distances: np.ndarray) -> dict:
    sets = set_metrics(clouds, reference, distances)
    return {
        "valid_share": float(np.mean([r["valid"] for r in rows])),
        "manifold_share": float(np.mean([r["manifold_edge_share"] for r in rows])),
        "degenerate_face_share": sum(r["degenerate_faces"] for r in rows)
        / max(1, sum(r["faces"] for r in rows)),
        "faces_mean": float(np.mean([r["faces"] for r in rows])),
        "category_accuracy": _accuracy(
            [r["predicted_category"] for r in rows], [r["category"] for r in rows]
        ),
        "chamfer": 1e3 * float(np.mean([r["chamfer"] for r in rows])),
        "fscore": float(np.mean([r["fscore"] for r in rows])),
        "novelty": 1e3 * float(np.mean([r["novelty"] for r in rows])),
        "cov": sets["COV"],
        "mmd": sets["MMD"],
        "one_nna": sets["1-NNA"],
    }


def _prompt_sheet(
    sheet, generators, retrieve, train_meshes, judge, seed, face_budget, temperature, top_p
) -> dict[str, list[tuple[QuantizedMesh, str]]]:
    """source -> per sheet prompt, (its first mesh, the classifier's category for it)."""
    prompts = [p for p, _ in sheet]
    # From the shared cache first: the generators then find them in memory (a lent GPU machine has
    # no encoder).
    vectors = embed(prompts, default_cache_dir())
    cells: dict[str, list[QuantizedMesh]] = {}
    for name, generator in generators.items():
        results, _ = sample_generator(
            generator, prompts, 1, len(prompts), seed, face_budget, temperature, top_p
        )
        cells[name] = [_on_grid(r[0])[0] for r in results]
    found = retrieve(vectors, 1)
    cells[RETRIEVAL] = [train_meshes[f[0]] for f in found]
    return {name: list(zip(ms, judge.predict(ms), strict=True)) for name, ms in cells.items()}


# Light from above, left of the camera (view_init(elev=22, azim=-55) looks from +x, -y, above).
_LIGHT = np.array([0.2, -0.75, 0.65]) / np.linalg.norm([0.2, -0.75, 0.65])


def _face_normals(polys: list[np.ndarray]) -> np.ndarray:
    """Unit normals of polygons by Newell's method (n-gons that are not quite planar included)."""
    normals = np.array([np.cross(p, np.roll(p, -1, axis=0)).sum(0) for p in polys])
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def draw_mesh(ax, mesh: QuantizedMesh, title: str, color: str = "#8fb3d9") -> None:
    """A mesh in the unit cube, faces shaded by their angle to the light (both sides lit, since
    generated faces may wind either way), in one 3/4 view for every cell."""
    v = mesh.unit_vertices()
    polys = [v[list(f)] for f in mesh.faces]
    if polys:
        shade = 0.3 + 0.7 * np.abs(_face_normals(polys) @ _LIGHT)
        colors = np.clip(np.array(to_rgb(color))[None] * shade[:, None], 0, 1)
        thin = 0.15 if len(polys) > 400 else 0.35
        ax.add_collection3d(
            Poly3DCollection(polys, facecolors=colors, edgecolors=(0.1, 0.15, 0.25, 0.6), linewidths=thin),
            # The limits are the unit cube, set below: matplotlib's own autoscaling once computed NaN
            # limits for a generated mesh and stopped an evaluation at its last picture.
            autolim=False,
        )
    for setter in (ax.set_xlim, ax.set_ylim, ax.set_zlim):
        setter(-0.5, 0.5)
    ax.set_box_aspect((1, 1, 1), zoom=1.25)
    ax.view_init(elev=22, azim=-55)
    ax.set_axis_off()
    ax.set_title(title, fontsize=7)


def render_grid(prompts, truth, meshes, test_meshes, rows, path: Path, count: int = 8) -> None:
    """One row per prompt (one per category first): every source's meshes, then the nearest test
    reference, each titled with the classifier's category."""
    chosen, seen = [], set()
    for k, category in enumerate(truth):
        if category not in seen:
            seen.add(category)
            chosen.append(k)
    chosen = (chosen + [k for k in range(len(truth)) if k not in chosen])[:count]
    per_prompt = {name: len(ms[0]) for name, ms in meshes.items()}
    cols = sum(per_prompt.values()) + 1
    fig = plt.figure(figsize=(2.1 * cols, 2.3 * len(chosen)))
    for r, k in enumerate(chosen):
        panels = []
        for name, ms in meshes.items():
            for s, m in enumerate(ms[k]):
                row = rows[name][k * per_prompt[name] + s]
                panels.append((m, f"{name}: {row['predicted_category']}\n{len(m.faces)} faces"))
        nearest = rows[next(iter(meshes))][k * per_prompt[next(iter(meshes))]]["nearest_reference"]
        panels.append((test_meshes[nearest], f"nearest test ({truth[nearest]})"))
        for c, (mesh, title) in enumerate(panels):
            ax = fig.add_subplot(len(chosen), cols, r * cols + c + 1, projection="3d")
            draw_mesh(ax, mesh, (f'"{prompts[k][:40]}" [{truth[k]}]\n' if c == 0 else "\n") + title)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def render_prompt_sheet(
    sheet, cells: dict[str, list[tuple[QuantizedMesh, str]]], path: Path, per_band: int = 8
) -> None:
    """Bands of per_band prompts; in each band, a row per source; each cell titled with the prompt
    and the classifier's category (marked with a tick where it is the expected one)."""
    sources = list(cells)
    bands = -(-len(sheet) // per_band)
    fig = plt.figure(figsize=(2.0 * per_band, 2.1 * bands * len(sources)))
    for b in range(bands):
        for s, name in enumerate(sources):
            for c in range(per_band):
                i = b * per_band + c
                if i >= len(sheet):
                    break
                (prompt, expected), (mesh, predicted) = sheet[i], cells[name][i]
                ax = fig.add_subplot(
                    bands * len(sources), per_band, (b * len(sources) + s) * per_band + c + 1, projection="3d"
                )
                mark = "ok" if predicted == expected else "x"
                draw_mesh(ax, mesh, f'{name}: "{prompt}"\n-> {predicted} [{mark}]')
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def print_table(result: dict) -> None:
    summary, metrics = result["summary"], result["metrics"]
    sources = [name for name in summary if name != "real"]
    print(
        f"\ngeometry evaluation: {metrics['items']} {metrics['split']} prompts x "
        f"{metrics['samples_per_prompt']} sample(s), dataset {metrics['dataset']} "
        f"({metrics['dataset_version']}), classifier {metrics['classifier_version']}"
    )
    print(f"real test meshes, category accuracy (the ceiling): {metrics['real_category_accuracy']:.3f}")
    print(f"{'metric':<32}" + "".join(f"{name[:14]:>15}" for name in sources))
    for key in summary[RETRIEVAL] | summary[sources[0]]:
        values = [summary[name].get(key) for name in sources]
        print(f"{key:<32}" + "".join(f"{v:>15.3f}" if v is not None else f"{'':>15}" for v in values))
    for note in metrics["notes"]:
        print(f"note: {note}")
    print(f"written: {result['out']}/metrics.json, samples.png, prompt_sheet.png")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trainer.evaluate_geometry")
    parser.add_argument(
        "--checkpoint",
        action="append",
        help=f"a generator to evaluate (repeatable; the first is the primary one); default {DEFAULT_CHECKPOINTS}",
    )
    parser.add_argument(
        "--dataset", help="manifest sha256, file or folder, or name; default: synthetic primitives"
    )
    parser.add_argument(
        "--classifier", default=str(DEFAULT_CLASSIFIER), help="the shape classifier that judges"
    )
    parser.add_argument("--out", default="var/eval/geometry")
    parser.add_argument(
        "--prompts",
        type=int,
        default=int(os.environ["EVAL_LIMIT"]) if os.environ.get("EVAL_LIMIT") else None,
        help="score only the first N test items (default: $EVAL_LIMIT, else every one)",
    )
    parser.add_argument(
        "--samples-per-prompt", type=int, default=1, help="also retrieval's k distinct candidates"
    )
    parser.add_argument("--face-budget", type=int, default=400)
    parser.add_argument("--temperature", type=float, default=0.8)
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument(
        "--split", default="test", choices=["val", "test"], help="val: choose sampling settings there"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="where the generators sample: cpu or cuda")
    parser.add_argument(
        "--batch-size",
        type=int,
        default=16,
        help="prompts sampled side by side (a prompt's samples are the same at any batch size)",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result = evaluate_geometry(
        args.checkpoint or DEFAULT_CHECKPOINTS,
        args.dataset,
        args.out,
        classifier=args.classifier,
        max_prompts=args.prompts,
        samples_per_prompt=args.samples_per_prompt,
        face_budget=args.face_budget,
        temperature=args.temperature,
        top_p=args.top_p,
        split=args.split,
        device=args.device,
        batch_size=args.batch_size,
    )
    print_table(result)


if __name__ == "__main__":
    main()
