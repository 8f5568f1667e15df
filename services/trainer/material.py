"""Training of the material model on a material dataset (shared.ml.datasets, specialist "material").

    python -m services.trainer material --preset tiny --dataset full [--resume]

Each item is a material on an object: its graph at the grid (shared.ml.material_tokens) is the
target; one of its captions is the prompt; "noun, category" and the numbers of
shared.ml.material_model.context_features are the object context. Material items do not carry
the object's size or the slot's index: the size comes from the object's mesh in the geometry
dataset of the same build when it is there (``--geometry-dataset``; unknown otherwise), and the
slot is the material's rank by name among its object's materials (the slot order itself is not
recorded). Procedural colour-word materials (shared.ml.synthetic_materials) join the train split,
a twentieth as many the val split (``synthetic``; their count is in the run record's dataset).
The run folder holds checkpoint.pt (resumable), best.pt (the lowest val base-colour error of
greedy samples), run.json.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from services.trainer.geometry import _lr, code_version, synthetic_counts
from shared.ml.datasets import DatasetError, dataset_version, iter_split
from shared.ml.geometry_model import to_tensor
from shared.ml.material_generator import object_text
from shared.ml.material_model import (
    MaterialModel,
    MaterialModelConfig,
    context_features,
    load_weights,
    save_checkpoint,
)
from shared.ml.material_tokens import canonical_graph, encode, summarise
from shared.ml.synthetic_materials import synthetic_materials
from shared.ml.text_embedding import default_cache_dir, embed

_FOR_A = re.compile(r" for an? (.+)$")


@dataclass
class TrainConfig:
    preset: str = "tiny"
    dataset: str = "full"
    geometry_dataset: str | None = None  # object sizes; default: the geometry dataset beside --dataset
    run_dir: str = "runs/material-tiny"
    max_steps: int = 1500
    max_minutes: float = 15.0
    batch_size: int = 32
    lr: float = 2e-3
    warmup_steps: int = 100
    weight_decay: float = 0.1
    checkpoint_every: int = 250
    seed: int = 0
    threads: int = 1
    schedule_minutes: float | None = None
    resume: bool = False
    model_overrides: dict | None = None
    synthetic: int = 450  # procedural colour-word materials added to train (a twentieth as many to val)


def item_noun(item: dict) -> str:
    """The object's noun, as the captions name it ("... material for a chair"), else its name."""
    for caption in item.get("captions") or []:
        match = _FOR_A.search(caption)
        if match:
            return match.group(1)
    return re.sub(r"[_.\d]+", " ", item.get("object") or "").strip().lower()


def prompt_variants(captions: list[str], noun: str) -> list[str]:
    """The captions and the shorter ways a person types them: "red material for a chair" also as
    "red chair", "red wood material" also as "red wood" and "red wood chair"."""
    out = list(captions)
    for caption in captions:
        head, sep, _ = caption.partition(" material for a")
        if sep:
            out.append(f"{head} {noun}")
        elif caption.endswith(" material"):
            out.append(caption.removesuffix(" material"))
            if noun:
                out.append(f"{caption.removesuffix(' material')} {noun}")
    return list(dict.fromkeys(out))


def geometry_ref(dataset: str, geometry_dataset: str | None) -> str | None:
    if geometry_dataset is not None:
        return geometry_dataset
    path = Path(dataset)
    if path.is_dir():
        sibling = path.parent / "geometry"
        return str(sibling) if sibling.is_dir() else None
    return dataset  # a dataset name: the geometry dataset built under the same name


def _geometry_items(ref: str | None):
    """(asset sha256, object name) and mesh of every item of a geometry dataset (none if absent)."""
    if ref is None:
        return
    try:
        for split in ("train", "val", "test"):
            for item in iter_split(ref, split, "geometry"):
                yield (item["asset_sha256"], item["object"]), item["mesh"]
    except DatasetError:
        return


def object_sizes(ref: str | None) -> dict[tuple[str, str], list[float]]:
    """(asset sha256, object name) -> bounding-box size of the object's mesh, from a geometry dataset."""
    sizes = {}
    for key, mesh in _geometry_items(ref):
        vertices = np.asarray(mesh["vertices"], dtype=np.float64)
        if len(vertices):
            sizes[key] = np.ptp(vertices, axis=0).tolist()
    return sizes


def object_meshes(ref: str | None, keys: set[tuple[str, str]]) -> dict[tuple[str, str], dict]:
    """The meshes of these objects that a geometry dataset holds."""
    return {key: mesh for key, mesh in _geometry_items(ref) if key in keys}


def split_items(config: TrainConfig, split: str) -> list[dict]:
    """The dataset's items of ``split`` and, for train and val, the synthetic colour-word materials."""
    items = list(iter_split(config.dataset, split, "material"))
    if config.synthetic:
        items += synthetic_materials(
            synthetic_counts(config.synthetic)[split], seed=config.seed + (split == "val") * 1000
        )
    return items


def data_version(config: TrainConfig) -> dict:
    out = dataset_version(config.dataset, "material")
    if config.synthetic:
        out["synthetic_colour_materials"] = synthetic_counts(config.synthetic)
    return out


def material_examples(items: list[dict], sizes: dict) -> list[dict]:
    """Per item: its target tokens, captions, object text and context numbers."""
    by_object: dict[tuple[str, str], list[str]] = defaultdict(list)
    for item in items:
        by_object[(item["asset_sha256"], item["object"])].append(item["material"])
    examples = []
    for item in items:
        key = (item["asset_sha256"], item["object"])
        names = sorted(by_object[key])
        material = {"name": item["material"], "pbr": item["pbr"], "node_tree": item["node_tree"]}
        graph = canonical_graph(material, item["node_groups"])
        examples.append(
            {
                "item": item,
                "graph": graph,
                "tokens": encode(graph),
                "captions": item["captions"],
                "prompts": prompt_variants(item["captions"], item_noun(item)),
                "object_text": object_text(item_noun(item), item["category"]),
                "numbers": context_features(sizes.get(key), names.index(item["material"]), len(names)),
            }
        )
    return examples


class Batches:
    def __init__(self, examples: list[dict], max_tokens: int):
        self.examples = [e for e in examples if len(e["tokens"]) <= max_tokens]
        self.skipped = len(examples) - len(self.examples)
        if not self.examples:
            raise ValueError(f"no material fits max_tokens={max_tokens}")
        texts = sorted(
            {c for e in self.examples for c in e["prompts"]} | {e["object_text"] for e in self.examples}
        )
        self.vectors = dict(zip(texts, embed(texts, default_cache_dir()), strict=True))
        self.by_length = np.argsort([len(e["tokens"]) for e in self.examples], kind="stable")

    def batch(self, rng: np.random.Generator, size: int, indices=None):
        """A batch of ``size`` examples of similar length (padding would cost most of the compute:
        half the graphs are 12 tokens, a few over 100), or of the given indices."""
        if indices is None:
            window = min(len(self.examples), 3 * size)
            start = int(rng.integers(len(self.examples) - window + 1))
            indices = rng.choice(self.by_length[start : start + window], size=size, replace=window < size)
        chosen = [self.examples[int(i)] for i in indices]
        text = np.stack([self.vectors[e["prompts"][rng.integers(len(e["prompts"]))]] for e in chosen])
        objects = np.stack([self.vectors[e["object_text"]] for e in chosen])
        numbers = np.stack([e["numbers"] for e in chosen])
        tokens = to_tensor([e["tokens"] for e in chosen])
        return (
            torch.from_numpy(text),
            torch.from_numpy(objects),
            torch.from_numpy(numbers),
            tokens[:, :-1],
            tokens[:, 1:],
        )


@torch.no_grad()
def validation_loss(model: MaterialModel, batches: Batches, batch_size: int) -> float:
    """Mean loss over every val example (fixed captions by a fixed seed), so values compare across steps."""
    model.eval()
    rng = np.random.default_rng(1234)
    losses, weights = [], []
    for start in range(0, len(batches.examples), batch_size):
        indices = np.arange(start, min(start + batch_size, len(batches.examples)))
        *inputs, targets = batches.batch(rng, len(indices), indices)
        losses.append(float(model(*inputs, targets)[1]))
        weights.append(int((targets != 0).sum()))
    return float(np.average(losses, weights=weights))


def delta_e(linear_a, linear_b) -> float:
    """CIEDE2000 between two linear-sRGB colours."""
    import colour

    def lab(rgb):
        xyz = colour.sRGB_to_XYZ(np.clip(np.asarray(rgb[:3], float), 0, 1), apply_cctf_decoding=False)
        return colour.XYZ_to_Lab(xyz)

    return float(colour.delta_E(lab(linear_a), lab(linear_b), method="CIE 2000"))


def evaluation_prompt(item: dict) -> str:
    """The caption a test or val item is asked with: finish, colour and the material's name words."""
    captions = item["captions"]
    return captions[1] if len(captions) > 1 else captions[0]


@torch.no_grad()
def validation_colour_error(model: MaterialModel, batches: Batches, batch_size: int = 64) -> float:
    """Median CIEDE2000 between the base colour of greedy samples and the val references."""
    errors = []
    for start in range(0, len(batches.examples), batch_size):
        chosen = batches.examples[start : start + batch_size]
        text = torch.from_numpy(
            np.stack(embed([evaluation_prompt(e["item"]) for e in chosen], default_cache_dir()))
        )
        objects = torch.from_numpy(np.stack([batches.vectors[e["object_text"]] for e in chosen]))
        numbers = torch.from_numpy(np.stack([e["numbers"] for e in chosen]))
        samples = model.generate_batch(text, objects, numbers, temperature=0.0)
        for e, (_, graph) in zip(chosen, samples, strict=True):
            produced, reference = summarise(graph), summarise(e["graph"])
            errors.append(delta_e(produced["base_color"], reference["base_color"]))
    return float(np.median(errors))


def train(config: TrainConfig, progress=None) -> dict:
    """Trains (or resumes) a run; returns the run record also written to run.json."""
    torch.set_num_threads(config.threads)
    run_dir = Path(config.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    checkpoint_path = run_dir / "checkpoint.pt"
    state = None
    model_config = MaterialModelConfig.preset(config.preset, **(config.model_overrides or {}))
    if config.resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model_config = MaterialModelConfig.from_dict(state["model_config"])
    sizes = object_sizes(geometry_ref(config.dataset, config.geometry_dataset))
    train_batches, val_batches = (
        Batches(material_examples(split_items(config, split), sizes), model_config.max_tokens)
        for split in ("train", "val")
    )
    model = MaterialModel(model_config)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    step, minutes_before, best_val, best_step = 0, 0.0, math.inf, None
    rng = np.random.default_rng(config.seed)
    if state is not None:
        load_weights(model, state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        step, minutes_before = state["step"], state.get("minutes_trained", 0.0)
        best_val, best_step = state.get("best_val_colour_error", math.inf), state.get("best_step")
        rng.bit_generator.state = state["rng"]
    record = {
        "specialist": "material",
        "preset": config.preset,
        "train_config": asdict(config),
        "model_config": model_config.to_dict(),
        "parameters": model.num_parameters(),
        "dataset": data_version(config),
        "code": code_version(),
        "device": "cpu",
        "items": {"train": len(train_batches.examples), "val": len(val_batches.examples)},
        "skipped_too_long": {"train": train_batches.skipped, "val": val_batches.skipped},
        "objects_with_size": sum(1 for e in train_batches.examples if e["numbers"][3] > 0),
    }
    started, tokens_seen, losses = time.monotonic(), 0, []
    first_step = step

    def minutes_trained() -> float:
        return minutes_before + (time.monotonic() - started) / 60

    def save() -> None:
        extra = {
            "optimizer": optimizer.state_dict(),
            "step": step,
            "minutes_trained": minutes_trained(),
            "best_val_colour_error": best_val,
            "best_step": best_step,
            "rng": rng.bit_generator.state,
            "run": record,
        }
        save_checkpoint(checkpoint_path.with_suffix(".tmp"), model, extra)
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)

    def validate() -> float:
        """Val loss, and the base-colour error that picks best.pt: the loss rises early (graph
        structure is learnt in a few hundred steps, then over-fitted) while colours keep improving."""
        nonlocal best_val, best_step
        val = validation_loss(model, val_batches, config.batch_size)
        colour_error = validation_colour_error(model, val_batches)
        print(f"step {step} val loss {val:.3f} val colour error {colour_error:.2f}", flush=True)
        if colour_error < best_val:
            best_val, best_step = colour_error, step
            save_checkpoint(
                run_dir / "best.pt",
                model,
                {"step": step, "val_loss": val, "val_colour_error": colour_error, "run": record},
            )
        return val

    while step < config.max_steps and time.monotonic() - started < 60 * config.max_minutes:
        model.train()
        text, objects, numbers, inputs, targets = train_batches.batch(rng, config.batch_size)
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, minutes_trained(), config)  # type: ignore[arg-type]
        _, loss = model(text, objects, numbers, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens_seen += int((targets != 0).sum())
        losses.append(loss.item())
        if progress:
            done = max(
                (step - first_step) / max(1, config.max_steps - first_step),
                (time.monotonic() - started) / (60 * config.max_minutes),
            )
            progress(min(1.0, done), f"step {step} loss {losses[-1]:.3f}")
        if step % config.checkpoint_every == 0:
            print(f"step {step} train loss {np.mean(losses[-50:]):.3f}", flush=True)
            validate()
            save()
    elapsed = time.monotonic() - started
    record["result"] = {
        "steps": step,
        "steps_this_session": step - first_step,
        "train_loss_last50": float(np.mean(losses[-50:])) if losses else None,
        "val_loss": validate(),
        "train_tokens": tokens_seen,
        "train_tokens_per_s": tokens_seen / elapsed if elapsed else None,
        "minutes": elapsed / 60,
        "minutes_trained": minutes_trained(),
        "best_val_colour_error": best_val if best_step is not None else None,
        "best_step": best_step,
    }
    save()
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    return record


def export_model(run_dir: str | Path, out: str | Path, best: bool = True) -> dict:
    """Saves a run's weights (by default best.pt's, of the lowest val colour error) in fp16 with its run record."""
    from shared.ml.material_model import load_model

    model, ckpt = load_model(Path(run_dir) / ("best.pt" if best else "checkpoint.pt"))
    run_json = Path(run_dir) / "run.json"
    run = json.loads(run_json.read_text()) if run_json.is_file() else ckpt["run"]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, {"step": ckpt["step"], "run": run}, half=True)
    return {"out": str(out), "step": ckpt["step"], "bytes": Path(out).stat().st_size}


def add_parser(subparsers) -> None:
    """Registers ``python -m services.trainer material`` and ``material-export``."""
    parser = subparsers.add_parser("material", help="train the prompt-to-node-material model")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "base"])
    parser.add_argument(
        "--dataset",
        default=TrainConfig.dataset,
        help="material dataset: name, manifest sha256, file or folder",
    )
    parser.add_argument(
        "--geometry-dataset", help="for object sizes; default: the geometry dataset beside --dataset"
    )
    parser.add_argument("--run-dir", help="default runs/material-<preset>")
    parser.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    parser.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    parser.add_argument("--max-minutes", type=float, default=TrainConfig.max_minutes)
    parser.add_argument("--batch-size", type=int, default=TrainConfig.batch_size)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument(
        "--schedule-minutes",
        type=float,
        help="decay the learning rate over this many minutes instead of --max-steps",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--synthetic",
        type=int,
        default=TrainConfig.synthetic,
        help="procedural colour-word materials added to train (a twentieth as many to val; 0: none)",
    )
    parser.add_argument("--export", help="after training, write the best weights in fp16 here")
    parser.set_defaults(handler=_run)


def _run(args) -> None:
    config = TrainConfig(
        preset=args.preset,
        dataset=args.dataset,
        geometry_dataset=args.geometry_dataset,
        run_dir=args.run_dir or f"runs/material-{args.preset}",
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        batch_size=args.batch_size,
        lr=args.lr,
        threads=args.threads,
        schedule_minutes=args.schedule_minutes,
        seed=args.seed,
        resume=args.resume,
        synthetic=args.synthetic,
    )
    record = train(config)
    print(json.dumps(record["result"], indent=2))
    if args.export:
        print(export_model(config.run_dir, args.export))
