"""Training of the animation model: examples, augmentation, the loop, checkpoints and run records.

    python -m services.trainer animation --preset tiny [--dataset full] [--resume]

An example is one action of an animation dataset item on that item's target (its rig, or the
object), with prompts made of the item's noun and the action's name ("goblin walk animation"),
plus procedural object motions (shared.ml.synthetic_motions). Each draw resamples the action at
KEYS evenly spread frames; a cycle starts at a random phase. The run folder (runs/<name>/) holds
TensorBoard logs, checkpoint.pt (resumable), best.pt (lowest val loss) and run.json (dataset
version, code version, configuration, results).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from services.trainer.geometry import _lr, code_version, synthetic_counts
from shared import names
from shared.ml.animation_model import (
    AnimationModel,
    AnimationModelConfig,
    Target,
    batch_inputs,
    load_weights,
    save_checkpoint,
)
from shared.ml.animation_tokens import KEYS, PROPS, Motion, MotionLayout, action_range, bone_path
from shared.ml.datasets import dataset_version, iter_split
from shared.ml.synthetic_motions import synthetic_motions
from shared.ml.text_embedding import default_cache_dir, embed

PHASES = 8 * (KEYS - 1)  # phases a cycle may start at, KEYS - 1 of them apart per key


@dataclass
class TrainConfig:
    preset: str = "tiny"
    dataset: str | None = "full"
    run_dir: str = "runs/animation-tiny"
    max_steps: int = 3000
    max_minutes: float = 15.0
    batch_tokens: int = 6144
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.05
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 1
    schedule_minutes: float | None = None
    resume: bool = False
    synthetic: int = 1000  # procedural object motions added to train (a twentieth as many to val)
    model_overrides: dict = field(default_factory=dict)


@dataclass
class Example:
    prompts: list[str]
    layout: MotionLayout
    target: Target
    motion: Motion
    cycle: np.ndarray | None = None  # a loop sampled at PHASES frames: where draws take other phases


def item_noun(item: dict[str, Any]) -> str:
    """What the item is, from its first caption: "fish armature of goldfish" -> "goldfish"."""
    caption = (item.get("captions") or [""])[0]
    caption = caption.split(" of ")[-1]
    words = [w for w in caption.split() if w not in ("armature", "a", "an", "the")]
    return " ".join(words) or item.get("category") or "object"


def action_words(action_name: str) -> str:
    """An action's name as words, without the rig's prefix: "Fish_Armature|Swimming_Fast" -> "swimming fast"."""
    return names.phrase(action_name.split("|")[-1]) or "motion"


def action_prompts(item: dict[str, Any], action: dict[str, Any]) -> list[str]:
    noun, motion = item_noun(item), action_words(action["name"])
    return [f"{noun} {motion} animation", f"{noun} {motion}", motion, f"{motion} animation"]


def item_layout(item: dict[str, Any]) -> MotionLayout | None:
    """The item's target as a layout: its rig, or the object; None for what has neither."""
    bones = (item.get("armature") or {}).get("bones")
    if item.get("object_type") == "ARMATURE":
        return MotionLayout(item["armature"]) if bones else None
    return MotionLayout(None)


def drives(action: dict[str, Any], layout: MotionLayout) -> bool:
    """Whether the action moves any channel of the layout."""
    paths = {bone_path(b, p) for b in layout.names for p in PROPS} if layout.is_rig else set(PROPS)
    return any(f["data_path"] in paths for f in action.get("fcurves", []))


def examples_of(items: list[dict[str, Any]], max_tokens: int) -> tuple[list[Example], int]:
    """(examples, actions skipped: on no channel of their target, or too long)."""
    out, skipped = [], 0
    for item in items:
        layout = item_layout(item)
        if layout is None:
            skipped += len(item.get("actions", []))
            continue
        target = Target.of(layout)
        for action in item.get("actions", []):
            if not drives(action, layout) or layout.sequence_length() > max_tokens:
                skipped += 1
                continue
            motion = layout.motion_from_action(action)
            cycle = None
            if motion.loop:
                start, end = action_range(action)
                cycle = layout.motion_values(action, start + np.arange(PHASES) / PHASES * (end - start))
            out.append(Example(action_prompts(item, action), layout, target, motion, cycle))
    return out, skipped


def synthetic_examples(count: int, seed: int) -> list[Example]:
    layout = MotionLayout(None)
    target = Target.of(layout)
    return [Example(p, layout, target, m) for p, m in synthetic_motions(count, seed)]


def load_items(dataset: str | None, split: str) -> list[dict]:
    return [] if dataset is None else list(iter_split(dataset, split, "animation"))


def draw(example: Example, rng: np.random.Generator, augment: bool) -> Motion:
    """The example's motion; augmented, a cycle from a random phase and amplitudes scaled a little."""
    motion = example.motion
    if augment and example.cycle is not None:
        rows = (int(rng.integers(PHASES)) + np.arange(KEYS) * (PHASES // (KEYS - 1))) % PHASES
        values = example.cycle[rows]
        if not example.layout.is_rig:  # object channels are offsets from the first key
            values = np.concatenate(
                [values[:, :6] - values[0, :6], (1 + values[:, 6:]) / (1 + values[0, 6:]) - 1], 1
            )
        motion = Motion(True, motion.duration, values)
    if augment:
        motion = Motion(
            motion.loop, motion.duration * rng.uniform(0.9, 1.1), motion.values * rng.uniform(0.9, 1.1)
        )
    return motion


class Batches:
    def __init__(self, examples: list[Example], cache_dir: Path | None):
        if not examples:
            raise ValueError("no training examples")
        self.examples = examples
        self.lengths = np.array([e.layout.sequence_length() for e in examples])
        prompts = sorted({p for e in examples for p in e.prompts})
        self.vectors = dict(zip(prompts, embed(prompts, cache_dir), strict=True))

    def batch(self, rng: np.random.Generator, batch_tokens: int, augment: bool, indices=None):
        if indices is None:
            anchor = int(rng.integers(len(self.examples)))
            similar = np.flatnonzero(
                np.abs(self.lengths - self.lengths[anchor]) <= 0.25 * self.lengths[anchor] + 16
            )
            size = max(1, batch_tokens // int(self.lengths[similar].max()))
            indices = [anchor, *rng.choice(similar, size=size - 1).tolist()]
        chosen = [self.examples[i] for i in indices]
        text = torch.from_numpy(
            np.stack([self.vectors[e.prompts[rng.integers(len(e.prompts))]] for e in chosen])
        )
        sequences = [e.layout.encode(draw(e, rng, augment)) for e in chosen]
        tokens, roles, groups, keys, features, targets = batch_inputs([e.target for e in chosen], sequences)
        return text, tokens, roles, groups, keys, features, targets


def training_examples(
    config: TrainConfig, max_tokens: int
) -> tuple[dict[str, list[Example]], dict[str, int]]:
    """Per split (train, val): the dataset's examples that fit max_tokens plus the procedural
    object motions; and per split how many actions were skipped."""
    splits, skipped = {}, {}
    for split in ("train", "val"):
        found, skipped[split] = examples_of(load_items(config.dataset, split), max_tokens)
        if config.synthetic:
            found += synthetic_examples(
                synthetic_counts(config.synthetic)[split], seed=config.seed + (split == "val") * 1000
            )
        splits[split] = found
    return splits, skipped


def cache_prompt_embeddings(dataset: str | None) -> int:
    """Embeds every prompt training would see (dataset and procedural, both splits) into the on-disk
    cache, for a machine without the encoder (a lent GPU box); returns the number of prompts."""
    config = TrainConfig(dataset=dataset)
    splits, _ = training_examples(config, AnimationModelConfig.preset(config.preset).max_tokens)
    prompts = sorted({p for examples in splits.values() for e in examples for p in e.prompts})
    embed(prompts, default_cache_dir())
    return len(prompts)


def data_version(config: TrainConfig) -> dict:
    out = dataset_version(config.dataset, "animation") if config.dataset else {"ref": None}
    if config.synthetic:
        out["synthetic_object_motions"] = synthetic_counts(config.synthetic)
    return out


def train(config: TrainConfig, progress=None) -> dict:
    """Trains (or resumes) a run; returns the run record also written to run.json."""
    torch.set_num_threads(config.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    run_dir = Path(config.run_dir)
    model_config = AnimationModelConfig.preset(config.preset, **config.model_overrides)
    checkpoint_path = run_dir / "checkpoint.pt"
    state = None
    if config.resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model_config = AnimationModelConfig.from_dict(state["model_config"])
    splits, skipped = training_examples(config, model_config.max_tokens)
    cache_dir = default_cache_dir()
    train_batches, val_batches = Batches(splits["train"], cache_dir), Batches(splits["val"], cache_dir)
    model = AnimationModel(model_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    step, minutes_before, best_val, best_step = 0, 0.0, math.inf, None
    rng = np.random.default_rng(config.seed)
    if state is not None:
        load_weights(model, state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        step, minutes_before = state["step"], state.get("minutes_trained", 0.0)
        best_val, best_step = state.get("best_val_loss", math.inf), state.get("best_step")
        rng.bit_generator.state = state["rng"]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    record: dict[str, Any] = {
        "specialist": "animation",
        "preset": config.preset,
        "train_config": asdict(config),
        "model_config": model_config.to_dict(),
        "parameters": model.num_parameters(),
        "dataset": data_version(config),
        "code": code_version(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "examples": {k: len(v) for k, v in splits.items()},
        "actions_skipped": skipped,
    }
    from torch.utils.tensorboard import SummaryWriter

    run_dir.mkdir(parents=True, exist_ok=True)
    writer = SummaryWriter(str(run_dir))
    started, tokens_seen, losses, first_step = time.monotonic(), 0, [], step

    def minutes_trained() -> float:
        return minutes_before + (time.monotonic() - started) / 60

    def save() -> None:
        extra = {
            "optimizer": optimizer.state_dict(),
            "step": step,
            "minutes_trained": minutes_trained(),
            "best_val_loss": best_val,
            "best_step": best_step,
            "rng": rng.bit_generator.state,
            "run": record,
        }
        save_checkpoint(checkpoint_path.with_suffix(".tmp"), model, extra)
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)

    def validate() -> float:
        nonlocal best_val, best_step
        val = evaluate_loss(model, val_batches, config, device)
        writer.add_scalar("val/loss", val, step)
        if val < best_val:
            best_val, best_step = val, step
            save_checkpoint(run_dir / "best.pt", model, {"step": step, "val_loss": val, "run": record})
        return val

    bar = tqdm(total=config.max_steps, initial=step, desc="animation")
    while step < config.max_steps and time.monotonic() - started < 60 * config.max_minutes:
        model.train()
        batch = [t.to(device) for t in train_batches.batch(rng, config.batch_tokens, True)]
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, minutes_trained(), config)  # type: ignore[arg-type]
        with autocast:
            _, loss = model(*batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens_seen += int((batch[-1] != 0).sum())
        losses.append(loss.item())
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.3f}")
        writer.add_scalar("train/loss", losses[-1], step)
        if progress:
            done = max(step / config.max_steps, (time.monotonic() - started) / (60 * config.max_minutes))
            progress(min(1.0, done), f"step {step} loss {losses[-1]:.3f}")
        if step % config.checkpoint_every == 0:
            validate()
            save()
    bar.close()
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
        "best_val_loss": best_val if best_step is not None else None,
        "best_step": best_step,
    }
    save()
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    writer.close()
    return record


@torch.no_grad()
def evaluate_loss(
    model: AnimationModel, batches: Batches, config: TrainConfig, device, rounds: int = 4
) -> float:
    """Mean loss over every val example (un-augmented, fixed prompts draw), so values compare across steps."""
    model.eval()
    rng = np.random.default_rng(1234)
    out = []
    order = np.argsort(batches.lengths, kind="stable")
    for start in range(0, len(order), 8):
        batch = batches.batch(rng, config.batch_tokens, False, order[start : start + 8].tolist())
        out.append(float(model(*[t.to(device) for t in batch])[1]))
    return float(np.mean(out)) if out else math.nan


def export_model(run_dir: str | Path, out: str | Path, best: bool = False) -> dict:
    """Saves a run's weights in fp16 with its run record (no optimizer state); returns what it wrote."""
    from shared.ml.animation_model import load_model

    model, ckpt = load_model(Path(run_dir) / ("best.pt" if best else "checkpoint.pt"))
    record_path = Path(run_dir) / "run.json"
    run = json.loads(record_path.read_text()) if record_path.is_file() else ckpt["run"]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, {"step": ckpt["step"], "run": run}, half=True)
    return {"out": str(out), "step": ckpt["step"], "bytes": Path(out).stat().st_size}


def add_parser(subparsers) -> None:
    """Registers `python -m services.trainer animation` (train) and `animation-export`."""
    parser = subparsers.add_parser("animation", help="train the prompt-to-action model")
    parser.add_argument("--preset", default="tiny", choices=["tiny", "base"])
    parser.add_argument(
        "--dataset", default="full", help="animation dataset: name, manifest sha256, file or folder"
    )
    parser.add_argument("--run-dir", help="default runs/animation-<preset>")
    parser.add_argument("--resume", action="store_true", help="continue from <run-dir>/checkpoint.pt")
    parser.add_argument("--max-steps", type=int, default=TrainConfig.max_steps)
    parser.add_argument("--max-minutes", type=float, default=TrainConfig.max_minutes)
    parser.add_argument("--batch-tokens", type=int, default=TrainConfig.batch_tokens)
    parser.add_argument("--lr", type=float, default=TrainConfig.lr)
    parser.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every)
    parser.add_argument("--threads", type=int, default=TrainConfig.threads)
    parser.add_argument("--schedule-minutes", type=float)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--synthetic", type=int, default=TrainConfig.synthetic, help="procedural object motions (0: none)"
    )
    parser.set_defaults(handler=_run)
    captions = subparsers.add_parser(
        "animation-embed-prompts",
        help="cache every training prompt's embedding (for a machine without the encoder)",
    )
    captions.add_argument(
        "--dataset", default="full", help="animation dataset: name, manifest sha256 or folder"
    )
    captions.set_defaults(
        handler=lambda args: print(f"{cache_prompt_embeddings(args.dataset)} prompts cached")
    )
    export = subparsers.add_parser("animation-export", help="a run's weights as a small fp16 model file")
    export.add_argument("--run-dir", default="runs/animation-tiny")
    export.add_argument("--out", default="models/animation/tiny/model.pt")
    export.add_argument("--best", action="store_true", help="the weights of the lowest val loss (best.pt)")
    export.set_defaults(
        handler=lambda args: print(json.dumps(export_model(args.run_dir, args.out, args.best)))
    )


def _run(args: argparse.Namespace) -> None:
    config = TrainConfig(
        preset=args.preset,
        dataset=args.dataset or None,
        run_dir=args.run_dir or f"runs/animation-{args.preset}",
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        batch_tokens=args.batch_tokens,
        lr=args.lr,
        checkpoint_every=args.checkpoint_every,
        threads=args.threads,
        schedule_minutes=args.schedule_minutes,
        seed=args.seed,
        resume=args.resume,
        synthetic=args.synthetic,
    )
    print(json.dumps(train(config)["result"], indent=2))
