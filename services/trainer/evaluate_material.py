"""Evaluation of the material model on a material dataset's test split, against baselines in the
same run, and a render grid from real Blender.

    python -m services.trainer.evaluate_material [--dataset full] [--checkpoint ...]   (EVAL_LIMIT=N)

Per test item the prompt is its second caption (finish, colour and the material's name words,
"glossy red metal material"), with the object's noun, category and slot; every method answers
the same prompt:
- model: one sample from the checkpoint (MaterialGenerator, temperature 0.7, seed 0);
- retrieval: the training material whose caption embedding is nearest the prompt's;
- category mean: a Principled BSDF with the training materials' mean colour (in OKLab),
  roughness and metallic of the item's category;
- grey: Blender's default Principled BSDF.
Scores: valid_share (samples that decode and are scene-format materials), base-colour CIEDE2000
to the reference (median; items whose reference colour comes from an image texture are left
out, their colour is unknown), roughness and metallic mean absolute error, node-type F1
(multisets of node types). The colour-word prompts (colour_prompts.json: a word on a noun, "red
chair") score the produced base colour (emission colour for an emitter) against the colour the
word names (shared.colour_names); "glass" and "glowing" score the share that transmits or emits light.
Writes <out>/metrics.json and <out>/grid.png (default var/eval/material).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch

from services.trainer.material import (
    delta_e,
    geometry_ref,
    item_noun,
    material_examples,
    object_meshes,
    object_sizes,
)
from shared.colour_names import NAMED_COLOURS
from shared.ml.datasets import dataset_version, iter_split
from shared.ml.material_generator import MaterialGenerator
from shared.ml.material_tokens import GraphNode, canonical_graph, graph_to_material, node_specs, pbr_graph
from shared.ml.text_embedding import default_cache_dir, embed
from shared.scene.models import Material

REPO = Path(__file__).resolve().parents[2]
PROMPTS = Path(__file__).with_name("colour_prompts.json")
METHODS = ("model", "retrieval", "category_mean", "grey")


def node_type_f1(a: list[GraphNode], b: list[GraphNode]) -> float:
    ta, tb = Counter(node_specs()[n.key].type for n in a), Counter(node_specs()[n.key].type for n in b)
    common = sum((ta & tb).values())
    return 2 * common / (sum(ta.values()) + sum(tb.values()))


def visible_colour(pbr: dict) -> list[float]:
    """The colour a word like "red" is about: the emission colour of an emitter, else the base colour."""
    if (
        pbr["emission_strength"] > 0.5
        and max(pbr["emission_color"][:3]) > 0.05
        and max(pbr["base_color"][:3]) < 0.05
    ):
        return pbr["emission_color"]
    return pbr["base_color"]


def category_means(train: list[dict]) -> dict[str, dict]:
    from shared.ml.material_tokens import linear_to_oklab, oklab_to_linear

    groups = defaultdict(list)
    for e in train:
        groups[e["item"]["category"]].append(e["pbr"])
    means = {}
    for category, pbrs in groups.items():
        lab = np.mean([linear_to_oklab(p["base_color"][:3]) for p in pbrs], 0)
        means[category] = {
            "base_color": [*np.clip(oklab_to_linear(lab), 0, 1).tolist(), 1.0],
            "metallic": float(np.mean([p["metallic"] for p in pbrs])),
            "roughness": float(np.mean([p["roughness"] for p in pbrs])),
        }
    return means


def evaluate_material(
    checkpoint: str,
    dataset: str,
    out: str,
    limit: int | None = None,
    render: bool = True,
    grid_rows: int = 10,
    split: str = "test",
) -> dict:
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    sizes = object_sizes(geometry_ref(dataset, None))
    train = material_examples(list(iter_split(dataset, "train", "material")), sizes)
    test = material_examples(list(iter_split(dataset, split, "material")), sizes)[:limit]
    for e in train + test:
        e["pbr"] = _summary(e["graph"])
    generator = MaterialGenerator(checkpoint, device="cpu")
    captions = sorted({c for e in train for c in e["captions"]})
    caption_vectors = embed(captions, default_cache_dir())
    owner = {c: e for e in train for c in e["captions"]}
    means = category_means(train)
    grey = pbr_graph({})

    def retrieve(prompt: str) -> list[GraphNode]:
        return owner[captions[int(np.argmax(caption_vectors @ embed([prompt], default_cache_dir())[0]))]][
            "graph"
        ]

    def category_graph(category: str) -> list[GraphNode]:
        return pbr_graph(means.get(category, {}))

    requests, slots = [], Counter((e["item"]["asset_sha256"], e["item"]["object"]) for e in test)
    for e in test:
        caps = e["item"]["captions"]
        requests.append(
            {
                "prompt": caps[1] if len(caps) > 1 else caps[0],
                "noun": item_noun(e["item"]),
                "category": e["item"]["category"],
                "slot": int(
                    round(e["numbers"][4] * (slots[(e["item"]["asset_sha256"], e["item"]["object"])] - 1))
                ),
                "slots": slots[(e["item"]["asset_sha256"], e["item"]["object"])],
            }
        )
    generator.run_many(requests[:1])  # the first call pays for loading the text encoder
    started = time.perf_counter()
    generated = [generator.run_many([r])[0]["material"] for r in requests]
    ms_per_material = 1000 * (time.perf_counter() - started) / max(1, len(requests))
    valid = [_is_valid(m) for m in generated]
    graphs = {
        "model": [canonical_graph(m) for m in generated],
        "retrieval": [retrieve(r["prompt"]) for r in requests],
        "category_mean": [category_graph(e["item"]["category"]) for e in test],
        "grey": [grey for _ in test],
    }
    coloured = [i for i, e in enumerate(test) if "base_color" not in (e["item"]["pbr"].get("textures") or {})]
    scores = {}
    for method, produced in graphs.items():
        pbrs = [_summary(g) for g in produced]
        scores[method] = {
            "delta_e": float(
                np.median([delta_e(pbrs[i]["base_color"], test[i]["pbr"]["base_color"]) for i in coloured])
            ),
            "roughness_error": float(
                np.mean(
                    [abs(p["roughness"] - e["pbr"]["roughness"]) for p, e in zip(pbrs, test, strict=True)]
                )
            ),
            "metallic_error": float(
                np.mean([abs(p["metallic"] - e["pbr"]["metallic"]) for p, e in zip(pbrs, test, strict=True)])
            ),
            "node_type_f1": float(
                np.mean([node_type_f1(g, e["graph"]) for g, e in zip(produced, test, strict=True)])
            ),
        }
    prompts = colour_prompt_scores(generator, retrieve, category_graph)
    metrics = {
        "items": len(test),
        "split": split,
        "colour_items": len(coloured),
        "valid_share": float(np.mean(valid)),
        "delta_e": scores["model"]["delta_e"],
        "retrieval_delta_e": scores["retrieval"]["delta_e"],
        "category_mean_delta_e": scores["category_mean"]["delta_e"],
        "grey_delta_e": scores["grey"]["delta_e"],
        "roughness_error": scores["model"]["roughness_error"],
        "metallic_error": scores["model"]["metallic_error"],
        "node_type_f1": scores["model"]["node_type_f1"],
        "colour_prompt_delta_e": prompts["model"]["delta_e"],
        "retrieval_colour_prompt_delta_e": prompts["retrieval"]["delta_e"],
        "category_mean_colour_prompt_delta_e": prompts["category_mean"]["delta_e"],
        "ms_per_material": ms_per_material,
        "methods": scores,
        "colour_prompts": prompts,
        "dataset": dataset_version(dataset, "material"),
        "checkpoint": checkpoint,
        "checkpoint_run": generator.meta.get("run", {}).get("result"),
    }
    if render:
        metrics["render"] = render_grid(
            test, requests, generated, graphs, out_dir, grid_rows, geometry_ref(dataset, None)
        )
        metrics["valid_share_blender"] = metrics["render"]["built_without_warning_share"]
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2, sort_keys=True))
    return metrics


def _summary(graph: list[GraphNode]) -> dict:
    return graph_to_material(graph)["pbr"]


def _is_valid(material: dict) -> bool:
    try:
        Material.model_validate(material)
        canonical_graph(material)
    except ValueError:
        return False
    return True


def colour_prompt_scores(generator, retrieve, category_graph) -> dict:
    spec = json.loads(PROMPTS.read_text())
    requests, words = [], []
    for word in [*spec["colours"], *spec["properties"]]:
        for noun, category in spec["nouns"]:
            requests.append({"prompt": f"{word} {noun}", "noun": noun, "category": category})
            words.append(word)
    produced = {
        "model": [canonical_graph(r["material"]) for r in generator.run_many(requests)],
        "retrieval": [retrieve(r["prompt"]) for r in requests],
        "category_mean": [category_graph(r["category"]) for r in requests],
    }
    out = {}
    for method, graphs in produced.items():
        pbrs = [_summary(g) for g in graphs]
        by_word = defaultdict(list)
        for word, pbr in zip(words, pbrs, strict=True):
            if word in spec["colours"]:
                by_word[word].append(delta_e(visible_colour(pbr), NAMED_COLOURS[word]))
            elif word == "glass":
                by_word[word].append(float(pbr["transmission"] >= 0.5 or pbr["alpha"] <= 0.5))
            else:
                by_word[word].append(
                    float(pbr["emission_strength"] > 0 and max(pbr["emission_color"][:3]) > 0.05)
                )
        colour_scores = [d for w in spec["colours"] for d in by_word[w]]
        out[method] = {
            "delta_e": float(np.median(colour_scores)),
            "per_word_delta_e": {w: float(np.median(by_word[w])) for w in spec["colours"]},
            "glass_share": float(np.mean(by_word["glass"])),
            "glowing_share": float(np.mean(by_word["glowing"])),
        }
    out["prompts"] = len(requests)
    return out


def render_grid(test, requests, generated, graphs, out_dir: Path, rows: int, meshes_ref: str | None) -> dict:
    """Rows of test items (one per category first): the model's material on a sphere and on the
    item's object (its mesh from the geometry dataset; a sphere when it has none), the retrieval
    baseline's on a sphere, the reference on a sphere and on the object; Cycles renders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen, seen = [], set()
    for k, e in enumerate(test):
        if e["item"]["category"] not in seen and "base_color" not in (e["item"]["pbr"].get("textures") or {}):
            seen.add(e["item"]["category"])
            chosen.append(k)
    chosen = chosen[:rows]
    keys = [(test[k]["item"]["asset_sha256"], test[k]["item"]["object"]) for k in chosen]
    meshes = object_meshes(meshes_ref, set(keys))
    columns = ("model", "model on object", "retrieval", "reference", "reference on object")
    jobs = []
    for k, key in zip(chosen, keys, strict=True):
        reference = graph_to_material(test[k]["graph"])
        mesh = meshes.get(key)
        jobs += [
            {"material": generated[k]},
            {"material": generated[k], "mesh": mesh},
            {"material": graph_to_material(graphs["retrieval"][k])},
            {"material": reference},
            {"material": reference, "mesh": mesh},
        ]
    renders = out_dir / "renders"
    (out_dir / "renders.json").write_text(json.dumps(jobs))
    started = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "blender_worker.render_materials",
            str(out_dir / "renders.json"),
            str(renders),
            "--size",
            "128",
            "--samples",
            "16",
        ],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    warnings = json.loads((renders / "warnings.json").read_text())
    fig, axes = plt.subplots(
        len(chosen), len(columns), figsize=(2.4 * len(columns), 2.5 * len(chosen)), squeeze=False
    )
    for r, k in enumerate(chosen):
        for c, name in enumerate(columns):
            ax = axes[r][c]
            ax.imshow(plt.imread(renders / f"{r * len(columns) + c}.png"))
            ax.set_xticks([])
            ax.set_yticks([])
            if name.endswith("object") and keys[r] not in meshes:
                name += " (no mesh: sphere)"
            title = name if c else f'"{requests[k]["prompt"]}"\n({requests[k]["noun"]}) {name}'
            ax.set_title(title, fontsize=7)
    fig.tight_layout()
    fig.savefig(out_dir / "grid.png", dpi=90)
    plt.close(fig)
    model_warnings = warnings[0 :: len(columns)] + warnings[1 :: len(columns)]
    return {
        "png": str(out_dir / "grid.png"),
        "rows": len(chosen),
        "seconds": time.perf_counter() - started,
        "built_without_warning_share": float(np.mean([not w for w in model_warnings])),
        "warnings": [w for w in warnings if w],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m services.trainer.evaluate_material")
    parser.add_argument(
        "--dataset", default="full", help="material dataset: name, manifest sha256, file or folder"
    )
    parser.add_argument("--checkpoint", default="models/material/tiny/model.pt")
    parser.add_argument("--out", default="var/eval/material")
    parser.add_argument("--no-render", action="store_true", help="skip the Blender render grid")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--split", default="test", choices=["val", "test"], help="val: to choose a checkpoint"
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    limit = int(os.environ["EVAL_LIMIT"]) if os.environ.get("EVAL_LIMIT") else None
    metrics = evaluate_material(
        args.checkpoint, args.dataset, args.out, limit, render=not args.no_render, split=args.split
    )
    print(json.dumps({k: v for k, v in metrics.items() if not isinstance(v, dict)}, indent=2))


if __name__ == "__main__":
    main()
