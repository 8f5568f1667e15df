"""Training of the geometry model: data, augmentation, the loop, checkpoints and run records.

    python -m services.trainer geometry --preset tiny [--dataset MANIFEST] [--resume]

Data is a geometry dataset split (see shared.ml.datasets) or, without --dataset, synthetic
captioned primitives. Each sample is augmented (scale 0.75-1.25 per axis, a rotation about the up
axis Z, vertex jitter), quantised and tokenized on the fly, and paired with the embedding of one of
its captions; with --workers, DataLoader processes prepare the batches (a GPU outruns one
process). On a GPU the loop runs in bfloat16 autocast; under torchrun (WORLD_SIZE > 1) it is
wrapped in DistributedDataParallel and each rank draws its own samples. The run folder
(runs/<name>/) holds TensorBoard logs, checkpoint.pt (resumable), best.pt (the weights of the
lowest val loss) and run.json (dataset version, git code version, configuration, results).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from services.trainer.geometry_prompt_sheet import PROMPT_SHEET
from shared.ml.datasets import SPLITS, dataset_version, iter_split
from shared.ml.geometry_model import (
    GeometryModel,
    GeometryModelConfig,
    load_weights,
    save_checkpoint,
    to_tensor,
)
from shared.ml.mesh_tokenizer import TokenizerError, encode, quantize_mesh
from shared.ml.synthetic_meshes import synthetic_items
from shared.ml.text_embedding import default_cache_dir, embed

REPO_ROOT = Path(__file__).resolve().parents[2]
SYNTHETIC_ITEMS = {"train": 2000, "val": 64, "test": 64}


@dataclass
class TrainConfig:
    model: str = "flat"  # "flat": one sequence per object; "parts": structure, then parts (geometry_parts)
    stages: tuple[str, ...] = ("structure", "part")  # which of a parts run's models to train
    preset: str = "tiny"
    dataset: str | None = None
    run_dir: str = "runs/geometry-tiny"
    max_steps: int = 3000
    max_minutes: float = 20.0
    batch_tokens: int = 8192  # padded tokens per batch; each batch holds items of similar length
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    checkpoint_every: int = 200
    seed: int = 0
    threads: int = 2
    workers: int = 0  # processes preparing batches; a GPU outruns one process's tokenizer
    schedule_minutes: float | None = None  # decay lr over minutes of training, not max_steps
    resume: bool = False
    init_from: str | None = None  # fine-tune: start from this checkpoint's weights (fresh optimizer, step 0)
    scale_range: tuple[float, float] = (0.75, 1.25)
    jitter: float = 0.002
    rotation: str = "right"
    model_overrides: dict = field(default_factory=dict)  # e.g. a smaller model for tests
    dropout: float | None = None  # the trained model's dropout, also when fine-tuning (None: its config's)
    # Share of training rows whose conditioning vector is zeroed, so the model also learns the
    # unconditional distribution that classifier-free guidance steers away from (decode_batch).
    condition_dropout: float = 0.0
    # A parts run's structure model also conditioned on a retrieved training layout (layout_exemplars).
    layout_exemplars: bool = False


def load_items(dataset: str | None, split: str) -> list[dict]:
    if dataset is None:
        return synthetic_items(SYNTHETIC_ITEMS[split], seed=0, split=split)
    return list(iter_split(dataset, split))


def cache_caption_embeddings(dataset: str | None) -> int:
    """Embeds every caption of a dataset's splits and of the synthetic items, and the evaluation's
    prompt sheet, into the on-disk cache (default_cache_dir), so that training, evaluation and
    benchmarks on a machine without the encoder (a lent GPU box) need none; returns the number of
    texts."""
    refs = [None] if dataset is None else [dataset, None]
    captions = {
        c for ref in refs for split in SPLITS for it in load_items(ref, split) for c in it["captions"]
    } | {prompt for prompt, _ in PROMPT_SHEET}
    embed(sorted(captions), default_cache_dir())
    return len(captions)


def data_version(dataset: str | None) -> dict:
    if dataset is None:
        return {"ref": None, "name": "synthetic-primitives", "version": "1", "items": SYNTHETIC_ITEMS}
    return dataset_version(dataset)


def synthetic_counts(train: int) -> dict[str, int]:
    """Procedural examples a trainer adds per split: ``train`` to train, a twentieth as many (at
    least one) to val."""
    return {"train": train, "val": max(1, train // 20)}


def code_version() -> dict:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True
            ).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            return ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def augment(
    vertices: np.ndarray,
    rng: np.random.Generator,
    scale_range=(0.75, 1.25),
    jitter=0.002,
    rotation: str = "right",
) -> np.ndarray:
    """Per-axis scale, a random rotation about Z (Blender's up axis), then small per-vertex noise.

    rotation "right" turns by a multiple of 90 degrees, which keeps the axis-aligned structure of
    modelled objects (and of the references they are scored against); "any" picks any angle.
    """
    if rotation not in ("right", "any"):
        raise ValueError(f"rotation must be 'right' or 'any', not {rotation!r}")
    low, high = scale_range
    v = vertices * rng.uniform(low, high, size=3)
    a = rng.uniform(0, 2 * np.pi) if rotation == "any" else rng.integers(4) * np.pi / 2
    rot = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    v = v @ rot.T
    extent = float(np.ptp(v, axis=0).max()) or 1.0
    return v + rng.normal(0, jitter * extent, size=v.shape)


class LengthBucketedSource:
    """Training sequences of known lengths; draws batches of similar lengths.

    A batch is a random item plus others of similar length (its neighbours in length order), as
    many as fit ``batch_tokens`` once padded: real meshes range from tens to a thousand tokens, and
    batches of mixed lengths spent most of their compute on padding. Subclasses set ``items``,
    ``skipped`` and ``lengths`` (then call ``_index_lengths``) and say how to draw one sample.
    """

    items: list
    skipped: int
    lengths: np.ndarray

    def _index_lengths(self) -> None:
        self.by_length = np.argsort(self.lengths, kind="stable")
        self.rank = np.empty_like(self.by_length)
        self.rank[self.by_length] = np.arange(len(self.by_length))

    def sample(
        self, rng: np.random.Generator, augment_mesh: bool, train: TrainConfig, index: int
    ) -> tuple[np.ndarray, list[int]]:
        """(conditioning vector, tokens BOS .. EOS) of item ``index``."""
        raise NotImplementedError

    def batch_indices(self, rng: np.random.Generator, batch_tokens: int) -> np.ndarray:
        def fitting(length: int) -> int:  # 10% headroom: augmentation changes lengths a little
            return max(1, int(batch_tokens // (1.1 * (length + 1))))

        anchor = int(rng.integers(len(self.items)))
        window = max(2 * fitting(self.lengths[anchor]), len(self.items) // 50)
        start = int(np.clip(self.rank[anchor] - window // 2, 0, max(0, len(self.items) - window)))
        neighbours = self.by_length[start : start + window]
        size = fitting(self.lengths[neighbours].max())
        others = rng.choice(neighbours, size=size - 1, replace=len(neighbours) < size - 1)
        return np.concatenate([[anchor], others]).astype(int)

    def batch(self, rng, augment_mesh: bool, train: TrainConfig):
        indices = self.batch_indices(rng, train.batch_tokens)
        pairs = [self.sample(rng, augment_mesh, train, int(i)) for i in indices]
        text = torch.from_numpy(np.stack([p[0] for p in pairs]))
        if augment_mesh and train.condition_dropout > 0:
            text[torch.from_numpy(rng.random(len(pairs)) < train.condition_dropout)] = 0.0
        tokens = to_tensor([p[1] for p in pairs])
        return text, tokens[:, :-1], tokens[:, 1:]


class TokenSource(LengthBucketedSource):
    """Whole objects with their caption embeddings; draws augmented, tokenized batches."""

    def __init__(self, items: list[dict], model_config: GeometryModelConfig, cache_dir: Path | None = None):
        self.config = model_config
        self.tokenizer = model_config.tokenizer
        self.items, self.skipped, lengths = [], 0, []
        for item in items:
            q = quantize_mesh(item["mesh"]["vertices"], item["mesh"]["faces"], self.tokenizer)
            # Every face costs at least two tokens: dense meshes are skipped without encoding them.
            fits = 0 < 2 * len(q.faces) + 2 <= 0.9 * model_config.max_tokens
            length = len(encode(q, self.tokenizer)) if fits else 0
            # Rotation can lengthen a sequence a little: keep a margin below the context.
            if fits and length <= 0.9 * model_config.max_tokens:
                self.items.append(item)
                lengths.append(length)
            else:
                self.skipped += 1
        if not self.items:
            raise ValueError(f"no item fits max_tokens={model_config.max_tokens} ({self.skipped} skipped)")
        self.lengths = np.array(lengths)
        self._index_lengths()
        captions = sorted({c for it in self.items for c in it["captions"]})
        vectors = embed(captions, cache_dir)
        self.caption_vectors = dict(zip(captions, vectors, strict=True))

    def sample(
        self, rng: np.random.Generator, augment_mesh: bool, train: TrainConfig, index: int
    ) -> tuple[np.ndarray, list[int]]:
        item = self.items[index]
        verts = np.asarray(item["mesh"]["vertices"], dtype=np.float64)
        for _ in range(4):  # an augmented copy that no longer fits is redrawn
            v = (
                augment(verts, rng, train.scale_range, train.jitter, train.rotation)
                if augment_mesh
                else verts
            )
            try:
                tokens = encode(quantize_mesh(v, item["mesh"]["faces"], self.tokenizer), self.tokenizer)
            except TokenizerError:
                continue
            if len(tokens) <= self.config.max_tokens:
                break
        else:
            tokens = encode(quantize_mesh(verts, item["mesh"]["faces"], self.tokenizer), self.tokenizer)
        caption = item["captions"][rng.integers(len(item["captions"]))]
        return self.caption_vectors[caption], tokens


def _lr(step: int, minutes: float, train: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to 10% of the peak by max_steps or, with
    schedule_minutes, by that many minutes of training (when throughput is unknown beforehand)."""
    if step < train.warmup_steps:
        return train.lr * (step + 1) / train.warmup_steps
    if train.schedule_minutes:
        progress = min(1.0, minutes / train.schedule_minutes)
    else:
        progress = min(1.0, (step - train.warmup_steps) / max(1, train.max_steps - train.warmup_steps))
    return train.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


class _WorkerBatches(torch.utils.data.IterableDataset):
    """Endless augmented batches, one stream per DataLoader worker, each with its own seed."""

    def __init__(self, source: LengthBucketedSource, train: TrainConfig, seed: list[int]):
        self.source, self.train, self.seed = source, train, seed

    def __iter__(self):
        worker = torch.utils.data.get_worker_info()
        rng = np.random.default_rng([*self.seed, worker.id if worker else 0])
        while True:
            yield self.source.batch(rng, True, self.train)


def _train_batches(
    source: LengthBucketedSource, train: TrainConfig, rng: np.random.Generator, seed: list[int]
):
    """In-process batches from ``rng`` (saved in checkpoints, so a resumed run draws the same
    batches), or with workers, batches prepared in parallel from per-worker seeds."""
    if train.workers == 0:
        while True:
            yield source.batch(rng, True, train)
    yield from torch.utils.data.DataLoader(
        _WorkerBatches(source, train, seed),
        batch_size=None,
        num_workers=train.workers,
        prefetch_factor=4,
        pin_memory=torch.cuda.is_available(),
    )


def _distributed() -> tuple[int, int, torch.device]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if torch.cuda.is_available():
        device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return torch.distributed.get_rank(), world, device
    return 0, 1, device


def train(config: TrainConfig, progress=None) -> dict:
    """Trains (or resumes) a run; returns the run record also written to run.json."""
    if config.model == "parts":
        from services.trainer.geometry_parts import train_parts

        return train_parts(config, progress)
    if config.model != "flat":
        raise ValueError(f"model must be 'flat' or 'parts', not {config.model!r}")
    if config.layout_exemplars:
        raise ValueError("layout exemplars condition a parts model's structure model: use --model parts")

    def sources(model_config: GeometryModelConfig) -> tuple[TokenSource, TokenSource]:
        cache_dir = default_cache_dir()
        return (
            TokenSource(load_items(config.dataset, "train"), model_config, cache_dir),
            TokenSource(load_items(config.dataset, "val"), model_config, cache_dir),
        )

    model_config = GeometryModelConfig.preset(config.preset, **config.model_overrides)
    return train_model(config, model_config, sources, progress)


def widened_condition(state: dict, text_dim: int) -> dict:
    """A model's weights with its condition projection (text_proj) taking ``text_dim`` inputs, the
    new ones weighted zero."""
    weight = state["text_proj.weight"]
    if weight.shape[1] == text_dim:
        return state
    wider = weight.new_zeros(weight.shape[0], text_dim)
    wider[:, : weight.shape[1]] = weight
    return {**state, "text_proj.weight": wider}


def train_model(
    config: TrainConfig,
    model_config: GeometryModelConfig,
    sources: Callable[[GeometryModelConfig], tuple[LengthBucketedSource, LengthBucketedSource]],
    progress=None,
    name: str = "geometry",
    record_extra: dict | None = None,
) -> dict:
    """Trains (or resumes) one GeometryModel in config.run_dir on the (train, val) sources that
    ``sources`` builds for its config; returns the run record also written to run.json."""
    torch.set_num_threads(config.threads)
    rank, world, device = _distributed()
    run_dir = Path(config.run_dir)
    checkpoint_path = run_dir / "checkpoint.pt"
    state, init, initialised_from = None, None, None
    if config.resume:
        if not checkpoint_path.is_file():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint_path}")
        state = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        model_config = GeometryModelConfig.from_dict(state["model_config"])
        initialised_from = state.get("run", {}).get("initialised_from")
    elif config.init_from:
        init = torch.load(config.init_from, map_location="cpu", weights_only=False)
        if init.get("model_kind") == "parts":  # an exported parts file holds both models: take this one
            init = {**init[name], "step": init["step"][name], "run": init["run"].get(name, {})}
        start_config = GeometryModelConfig.from_dict(init["model_config"])
        if model_config.text_dim < start_config.text_dim:
            raise ValueError(
                f"{config.init_from}: its {name} model takes a {start_config.text_dim}-wide condition, "
                f"wider than this run's {model_config.text_dim}"
            )
        # A wider condition (an exemplar structure model from a plain one) starts with zero weights
        # on its new inputs, so the fine-tune starts from the model as it was.
        model_config = replace(start_config, text_dim=model_config.text_dim)
        init["state_dict"] = widened_condition(init["state_dict"], model_config.text_dim)
        # The starting weights' own data belong to this model's provenance.
        initialised_from = {
            "checkpoint": config.init_from,
            "step": init.get("step"),
            "dataset": init.get("run", {}).get("dataset"),
        }
    # Dropout changes no weight, so a fine-tune may set its own.
    if not 0.0 <= config.condition_dropout < 1.0:
        raise ValueError(f"condition_dropout must be in [0, 1), not {config.condition_dropout}")
    if config.dropout is not None and not config.resume:
        model_config = replace(model_config, dropout=config.dropout)
    train_source, val_source = sources(model_config)
    model = GeometryModel(model_config).to(device)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.9, 0.95)
    )
    step, minutes_before, best_val, best_step = 0, 0.0, math.inf, None
    rng = np.random.default_rng([config.seed, rank])
    if init is not None:
        load_weights(model, init["state_dict"])
    if state is not None:
        load_weights(model, state["state_dict"])
        optimizer.load_state_dict(state["optimizer"])
        step = state["step"]
        minutes_before = state.get("minutes_trained", 0.0)
        best_val, best_step = state.get("best_val_loss", math.inf), state.get("best_step")
        rng.bit_generator.state = state["rng"][rank] if rank < len(state["rng"]) else rng.bit_generator.state
    net = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)  # type: ignore[assignment]
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")
    record = {
        "specialist": "geometry",
        "model": name,
        "preset": config.preset,
        "train_config": asdict(config),
        "model_config": model_config.to_dict(),
        "parameters": model.num_parameters(),
        "dataset": data_version(config.dataset),
        "code": code_version(),
        "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        "world_size": world,
        "items": {"train": len(train_source.items), "val": len(val_source.items)},
        "skipped_too_long": {"train": train_source.skipped, "val": val_source.skipped},
    }
    if initialised_from:
        record["initialised_from"] = initialised_from
    record.update(record_extra or {})
    writer = None
    if rank == 0:
        from torch.utils.tensorboard import SummaryWriter

        run_dir.mkdir(parents=True, exist_ok=True)
        writer = SummaryWriter(str(run_dir))

    def minutes_trained() -> float:  # over every session of the run
        return minutes_before + (time.monotonic() - started) / 60

    def save() -> None:
        if rank != 0:
            return
        rngs = [rng.bit_generator.state]
        extra = {
            "optimizer": optimizer.state_dict(),
            "step": step,
            "minutes_trained": minutes_trained(),
            "best_val_loss": best_val,
            "best_step": best_step,
            "rng": rngs,
            "run": record,
        }
        save_checkpoint(checkpoint_path.with_suffix(".tmp"), model, extra)
        checkpoint_path.with_suffix(".tmp").replace(checkpoint_path)  # never a half-written checkpoint

    def validate() -> float:
        nonlocal best_val, best_step
        val = evaluate_loss(model, val_source, config, device)
        if writer:
            writer.add_scalar("val/loss", val, step)
        if val < best_val and rank == 0:  # long runs on small data overfit: keep the best weights
            best_val, best_step = val, step
            save_checkpoint(run_dir / "best.pt", model, {"step": step, "val_loss": val, "run": record})
        return val

    started, tokens_seen, losses = time.monotonic(), 0, []
    first_step = step
    batches = _train_batches(train_source, config, rng, [config.seed, rank, step])

    def share_done() -> float:
        """Of this session: the step limit's share or the minute limit's, whichever ends it first."""
        by_steps = (step - first_step) / max(1, config.max_steps - first_step)
        return min(1.0, max(by_steps, (time.monotonic() - started) / (60 * config.max_minutes)))

    # In percent of share_done, so the time left is right whether steps or minutes end the run.
    bar = tqdm(
        total=100,
        desc=name,
        bar_format="{l_bar}{bar}| {elapsed}<{remaining}{postfix}",
        disable=rank != 0,
    )
    while step < config.max_steps and time.monotonic() - started < 60 * config.max_minutes:
        net.train()
        text, inputs, targets = next(batches)
        text, inputs, targets = (t.to(device, non_blocking=True) for t in (text, inputs, targets))
        for group in optimizer.param_groups:
            group["lr"] = _lr(step, minutes_trained(), config)
        with autocast:
            _, loss = net(text, inputs, targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        step += 1
        tokens_seen += int((targets != 0).sum()) * world
        losses.append(loss.item())
        done = share_done()
        bar.update(round(100 * done) - bar.n)
        bar.set_postfix(step=step, loss=f"{losses[-1]:.3f}")
        if writer:
            writer.add_scalar("train/loss", losses[-1], step)
            writer.add_scalar("train/lr", optimizer.param_groups[0]["lr"], step)
        if progress:
            progress(done, f"step {step} loss {losses[-1]:.3f}")
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
        "train_tokens_per_s": tokens_seen / elapsed if elapsed else None,
        "minutes": elapsed / 60,
        "minutes_trained": minutes_trained(),
        "best_val_loss": best_val if best_step is not None else None,
        "best_step": best_step,
    }
    save()
    if rank == 0:
        (run_dir / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
        writer.close()  # type: ignore[union-attr]
    if world > 1:
        torch.distributed.destroy_process_group()
    return record


@torch.no_grad()
def evaluate_loss(
    model: GeometryModel, source: LengthBucketedSource, config: TrainConfig, device, batches: int = 4
) -> float:
    """Mean loss on un-augmented samples drawn with a fixed seed, so values compare across steps."""
    model.eval()
    rng = np.random.default_rng(1234)
    out = []
    for _ in range(batches):
        text, inputs, targets = source.batch(rng, False, config)
        out.append(float(model(text.to(device), inputs.to(device), targets.to(device))[1]))
    return float(np.mean(out))


def export_model(
    run_dir: str | Path,
    out: str | Path,
    best: bool = False,
    layout_guidance: float = 1.0,
    untrained_from: str | Path | None = None,
) -> dict:
    """Saves a run's weights in fp16 with its run record (no optimizer state); returns the record.

    best: the weights of the lowest validation loss (best.pt) instead of the last ones. A parts
    run's options: layout_guidance, its structure model's guidance scale (1: none);
    untrained_from, the parts file whose model completes a run that trained one of the two."""
    from shared.ml.geometry_model import load_model

    if any((Path(run_dir) / half).is_dir() for half in ("structure", "part")):  # a parts run
        from services.trainer.geometry_parts import export_parts

        return export_parts(run_dir, out, best, layout_guidance, untrained_from)
    if layout_guidance != 1.0 or untrained_from is not None:
        raise ValueError("layout_guidance and untrained_from are a parts run's; this run is a flat model")
    model, ckpt = load_model(Path(run_dir) / ("best.pt" if best else "checkpoint.pt"))
    run = (
        json.loads((Path(run_dir) / "run.json").read_text())
        if (Path(run_dir) / "run.json").is_file()
        else ckpt["run"]
    )
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(out, model, {"step": ckpt["step"], "run": run}, half=True)
    return {"out": str(out), "step": ckpt["step"], "bytes": Path(out).stat().st_size}
