"""Training of structure-first geometry (shared.ml.parts_model): the structure model, then the part model.

    python -m services.trainer geometry --model parts --preset tiny [--dataset D] [--resume]

Every object is decomposed into parts (shared.ml.part_decomposition) once; the decompositions of
a split are cached in <BMT_DATA_DIR>/cache/parts/, keyed by the dataset's manifest, the split and
the rule, so later runs read them back. The run folder holds structure/ and part/, each a
complete run of services.trainer.geometry's loop (checkpoint.pt, best.pt, run.json,
TensorBoard logs), and run.json with both records. Each model trains for at most
``--max-minutes`` (and ``--max-steps``); ``--resume`` continues both; ``--stages part`` trains one
(two sessions may train the two side by side). ``export_parts`` writes one
checkpoint file holding both models.

An object too dense for a layout's ``max_parts`` parts (24 of the 1,492 train objects of ``full``,
dense buildings) is decimated (quadric error, fast-simplification) until its parts fit, so every
object of the dataset trains both models; its record keeps the share of triangles it kept.

Augmentation: the layouts get a per-axis scale (then are put back in the unit cube); the parts
need none, since each is written in its own box's frame.

``--layout-exemplars`` trains an exemplar structure model (shared.ml.layout_exemplars): each
layout is conditioned on the prompt and on the grid of one of the nearest training layouts of
another pack; the run keeps the library in structure/layout_exemplars.pkl for the export.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from functools import partial
from pathlib import Path

import fast_simplification
import numpy as np
import torch

from services.trainer.geometry import (
    LengthBucketedSource,
    TrainConfig,
    data_version,
    load_items,
    train_model,
)
from shared.ml.datasets import dataset_version
from shared.ml.geometry_model import GeometryModel, GeometryModelConfig, load_model, model_from_state
from shared.ml.layout_exemplars import EXEMPLAR_CONDITION_DIM, TRAINING_CHOICES, LayoutExemplars
from shared.ml.layout_tokens import LayoutBox, LayoutVocabulary, descriptor, occupancy, part_condition
from shared.ml.part_decomposition import (
    RULE_VERSION,
    Decomposition,
    DecompositionConfig,
    decompose,
    quantize_box,
)
from shared.ml.parts_model import MAX_PARTS, MODEL_KIND, preset_configs, save_parts_checkpoint
from shared.ml.text_embedding import default_cache_dir, embed

# 2: objects carry their pack (exemplars are drawn from other packs); 3: dense objects decimated to fit
CACHE_FORMAT = 3
# A decimated object aims at this share of the parts and tokens a layout holds (they shrink about
# with its triangles, not exactly), trying again with what is left at most DECIMATION_TRIES times.
DECIMATION_FILL, DECIMATION_TRIES = 0.8, 4
EXEMPLARS_FILE = "layout_exemplars.pkl"


def decomposed_to_fit(vertices, faces, config: DecompositionConfig) -> tuple[Decomposition, float]:
    """The mesh's decomposition and the share of its triangles kept: all (1.0) where its parts fit,
    else those of the mesh decimated to about DECIMATION_FILL of the parts and tokens a layout holds."""
    d, kept = decompose(vertices, faces, config), 1.0
    if d.fits:  # 98% of objects: no triangulation needed
        return d, kept
    points = np.asarray(vertices, dtype=np.float64)
    triangles = np.array([(f[0], b, c) for f in faces for b, c in zip(f[1:-1], f[2:], strict=True)])
    capacity = config.max_parts * config.max_part_tokens
    for _ in range(DECIMATION_TRIES):
        tokens = sum(len(p.tokens) for p in d.parts)
        # Parts that cannot merge (each near max_part_tokens) overflow before the tokens do.
        kept *= DECIMATION_FILL * min(1.0, capacity / tokens, config.max_parts / len(d.parts))
        points_left, triangles_left = fast_simplification.simplify(points, triangles, 1 - kept)
        d = decompose(points_left, triangles_left.tolist(), config)
        if d.fits:
            break
    return d, kept


def _decomposed(item: dict, config: DecompositionConfig) -> dict:
    d, kept = decomposed_to_fit(item["mesh"]["vertices"], item["mesh"]["faces"], config)
    parts = []
    for p in d.parts:
        q_centre, q_size = quantize_box(p.centre, p.size, config.tokenizer.bits)
        parts.append(
            {
                "centre": q_centre,
                "size": q_size,
                "descriptor": descriptor(p.face_count),
                "tokens": np.array(p.tokens, dtype=np.int16),
            }
        )
    return {
        "id": item["id"],
        "pack": item.get("pack"),
        "captions": item["captions"],
        "fits": d.fits,
        "triangles_kept": kept,
        "parts": parts,
    }


def decompositions(
    dataset: str | None, split: str, config: DecompositionConfig, processes: int = 1
) -> list[dict]:
    """Per item of a split: its captions and parts (quantised box, descriptor, tokens), and
    whether it fits; from the cache when this dataset, split and rule were decomposed before.
    Decomposing takes about 0.2 s an object on one core: ``processes`` share the work."""
    version = "synthetic-1" if dataset is None else dataset_version(dataset)["manifest_sha256"]
    key = hashlib.sha256(
        json.dumps([version, split, RULE_VERSION, config.to_dict(), CACHE_FORMAT], sort_keys=True).encode()
    ).hexdigest()[:16]
    path = Path(os.environ.get("BMT_DATA_DIR", "var")) / "cache" / "parts" / f"{split}-{key}.pkl"
    if path.is_file():
        return pickle.loads(path.read_bytes())
    items = load_items(dataset, split)
    if processes > 1:
        with ProcessPoolExecutor(processes) as pool:
            out = list(pool.map(partial(_decomposed, config=config), items, chunksize=8))
    else:
        out = [_decomposed(item, config) for item in items]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.with_suffix(".tmp").write_bytes(pickle.dumps(out))
    path.with_suffix(".tmp").replace(path)
    return out


def cache_decompositions(dataset: str, preset: str, processes: int) -> dict[str, int]:
    """Decomposes the train and val splits for a preset's rule into the cache (for a machine whose
    time is dearer, a lent GPU box); returns each split's object count."""
    rule = preset_configs(preset)[2]
    return {split: len(decompositions(dataset, split, rule, processes)) for split in ("train", "val")}


def _caption_vectors(objects: list[dict]) -> dict[str, np.ndarray]:
    captions = sorted({c for o in objects for c in o["captions"]})
    return dict(zip(captions, embed(captions, default_cache_dir()), strict=True))


def layout_boxes(parts: list[dict], vocab: LayoutVocabulary) -> list[LayoutBox]:
    """A decomposed object's parts (quantised boxes and descriptors) as its dequantised layout."""
    return [vocab.dequantize([*p["centre"], *p["size"], p["descriptor"]]) for p in parts]


def training_layouts(objects: list[dict], bits: int) -> LayoutExemplars:
    """The layout library of a split's decomposed objects, found by their captions: those that fit
    as authored. A decimated object's layout (45 to 64 parts of a dense building) spreads a 400-face
    budget over too many parts to shape them: on the prompt sheet "a house" became shards (models/geometry
    README, "Every object fits")."""
    fitting = [o for o in objects if o["fits"] and o["triangles_kept"] == 1.0]
    return LayoutExemplars.from_objects(fitting, _caption_vectors(fitting), bits)


def scaled_layout(
    parts: list[dict], factors: np.ndarray, bits: int
) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """The parts' quantised boxes scaled per axis, then centred and scaled back into the unit cube."""
    top = (1 << bits) - 1
    centres = np.array([p["centre"] for p in parts], dtype=np.float64) / top - 0.5
    sizes = np.array([p["size"] for p in parts], dtype=np.float64) / top
    centres, sizes = centres * factors, sizes * factors
    lo, hi = (centres - sizes / 2).min(0), (centres + sizes / 2).max(0)
    scale = float((hi - lo).max()) or 1.0
    centres, sizes = (centres - (lo + hi) / 2) / scale, sizes / scale
    boxes = []
    for c, s, p in zip(centres, sizes, parts, strict=True):
        boxes.append((*quantize_box(c, s, bits), p["descriptor"]))
    return boxes


class LayoutSource(LengthBucketedSource):
    """Objects as layouts (the structure model's data): prompt embedding -> layout tokens; for an
    exemplar structure model, the prompt's embedding and an exemplar's grid -> layout tokens."""

    def __init__(
        self,
        objects: list[dict],
        model_config: GeometryModelConfig,
        bits: int,
        exemplars: LayoutExemplars | None = None,
    ):
        if (model_config.text_dim == EXEMPLAR_CONDITION_DIM) != (exemplars is not None):
            raise ValueError("an exemplar structure model trains with a layout library, and only it")
        self.exemplars = exemplars
        self._choices: dict[tuple[str, str], list[int]] = {}  # (caption, pack) -> exemplar items
        self.vocab = LayoutVocabulary(bits, MAX_PARTS)
        self.bits = bits
        self.items = [o for o in objects if o["fits"]]
        self.skipped = len(objects) - len(self.items)
        if not self.items:
            raise ValueError(f"no object fits the parts model ({self.skipped} skipped)")
        if self.vocab.max_tokens > model_config.max_tokens:
            raise ValueError("the structure model's context is shorter than the longest layout")
        self.lengths = np.array([2 + 7 * len(o["parts"]) for o in self.items])
        self._index_lengths()
        self.caption_vectors = _caption_vectors(self.items)

    def sample(self, rng, augment_mesh: bool, train: TrainConfig, index: int) -> tuple[np.ndarray, list[int]]:
        obj = self.items[index]
        factors = rng.uniform(*train.scale_range, size=3) if augment_mesh else np.ones(3)
        tokens = self.vocab.encode(scaled_layout(obj["parts"], factors, self.bits))
        caption = obj["captions"][rng.integers(len(obj["captions"]))]
        if self.exemplars is None:
            return self.caption_vectors[caption], tokens
        pack = obj.get("pack") or obj["id"]
        key = (caption, pack)
        if key not in self._choices:
            self._choices[key] = self.exemplars.nearest(self.caption_vectors[caption], TRAINING_CHOICES, pack)
        exemplar = self._choices[key][rng.integers(len(self._choices[key]))]
        return self.exemplars.condition(self.caption_vectors[caption], exemplar), tokens


class PartSource(LengthBucketedSource):
    """Every part of every object (the part model's data): part condition -> the part's mesh tokens."""

    def __init__(self, objects: list[dict], bits: int):
        vocab = LayoutVocabulary(bits, MAX_PARTS)
        fitting = [o for o in objects if o["fits"]]
        self.skipped = len(objects) - len(fitting)
        self.objects = fitting
        self.layouts = []
        for o in fitting:
            boxes = layout_boxes(o["parts"], vocab)
            self.layouts.append((boxes, occupancy(boxes)))
        self.items = [(k, i) for k, o in enumerate(fitting) for i in range(len(o["parts"]))]
        if not self.items:
            raise ValueError(f"no object fits the parts model ({self.skipped} skipped)")
        self.lengths = np.array([len(fitting[k]["parts"][i]["tokens"]) for k, i in self.items])
        self._index_lengths()
        self.caption_vectors = _caption_vectors(fitting)

    def sample(self, rng, augment_mesh: bool, train: TrainConfig, index: int) -> tuple[np.ndarray, list[int]]:
        k, i = self.items[index]
        obj = self.objects[k]
        caption = obj["captions"][rng.integers(len(obj["captions"]))]
        boxes, grid = self.layouts[k]
        condition = part_condition(self.caption_vectors[caption], boxes, i, grid)
        return condition, obj["parts"][i]["tokens"].tolist()


def train_parts(config: TrainConfig, progress=None) -> dict:
    """Trains (or resumes) the structure model, then the part model; returns both run records,
    also written to <run_dir>/run.json."""
    structure_config, part_config, decomposition = preset_configs(config.preset)
    overrides = config.model_overrides
    structure_config = replace(structure_config, **overrides.get("structure", {}))
    if config.layout_exemplars:
        structure_config = replace(structure_config, text_dim=EXEMPLAR_CONDITION_DIM)
    part_config = replace(part_config, **overrides.get("part", {}))
    bits = decomposition.tokenizer.bits
    splits = {
        split: decompositions(config.dataset, split, decomposition, max(1, config.workers))
        for split in ("train", "val")
    }
    extra = {"decomposition": decomposition.to_dict(), "model_kind": "parts"}
    run_dir = Path(config.run_dir)

    def stage(share: float, offset: float):
        if progress is None:
            return None
        return lambda done, message: progress(offset + share * done, message)

    def layout_sources(c: GeometryModelConfig) -> tuple[LayoutSource, LayoutSource]:
        exemplars = None
        if c.text_dim == EXEMPLAR_CONDITION_DIM:  # also a resumed run's, whose config is its checkpoint's
            exemplars = training_layouts(splits["train"], bits)
            (run_dir / "structure").mkdir(parents=True, exist_ok=True)
            (run_dir / "structure" / EXEMPLARS_FILE).write_bytes(pickle.dumps(exemplars.state()))
        return (
            LayoutSource(splits["train"], c, bits, exemplars),
            LayoutSource(splits["val"], c, bits, exemplars),
        )

    sources = {
        "structure": layout_sources,
        "part": lambda c: (PartSource(splits["train"], bits), PartSource(splits["val"], bits)),
    }
    configs = {"structure": structure_config, "part": part_config}
    if config.resume and not any((run_dir / name / "checkpoint.pt").is_file() for name in config.stages):
        raise FileNotFoundError(f"--resume: no checkpoint in {run_dir}/structure or {run_dir}/part")
    for k, name in enumerate(("structure", "part")):
        if name in config.stages:
            # A run stopped during its structure model resumes that and starts its part model.
            resume = config.resume and (run_dir / name / "checkpoint.pt").is_file()
            train_model(
                replace(config, run_dir=str(run_dir / name), resume=resume),
                configs[name],
                sources[name],
                stage(0.5, 0.5 * k),
                name,
                extra,
            )
    return parts_record(run_dir)


def parts_record(run_dir: Path, inherited: dict[str, dict] | None = None) -> dict:
    """The run record of a parts run, from its two models' records (either may have been trained
    by another session, or ``inherited`` from the checkpoint a one-model run started from), also
    written to <run_dir>/run.json."""
    records = {
        name: json.loads((run_dir / name / "run.json").read_text())
        for name in ("structure", "part")
        if (run_dir / name / "run.json").is_file()
    }
    records = {**(inherited or {}), **records}
    first = next(iter(records.values()))
    record = {
        "specialist": "geometry",
        "model_kind": "parts",
        "preset": first["preset"],
        "dataset": first["dataset"],
        "decomposition": first["decomposition"],
        **records,
        "result": {
            "minutes_trained": sum(r["result"]["minutes_trained"] for r in records.values()),
            **{f"{name}_val_loss": r["result"]["val_loss"] for name, r in records.items()},
            **{f"{name}_steps": r["result"]["steps"] for name, r in records.items()},
        },
    }
    (run_dir / "run.json").write_text(json.dumps(record, indent=2, sort_keys=True, default=str))
    return record


def _untrained_half(
    run_dir: Path, trained: str, missing: str, named: str | Path | None = None
) -> tuple[GeometryModel, dict]:
    """The model a one-model run (``--stages part``, say) did not train, and the parts file it is
    in: ``named``, or else the checkpoint the run started from, checked to be the file it started from."""
    if named is not None:
        ckpt = torch.load(named, map_location="cpu", weights_only=False)
        if ckpt.get("model_kind") != MODEL_KIND:
            raise ValueError(f"{named} is not a parts checkpoint: it holds no {missing} model")
        return model_from_state(ckpt[missing]), ckpt
    source = json.loads((run_dir / trained / "run.json").read_text()).get("initialised_from") or {}
    if not source.get("checkpoint"):
        raise FileNotFoundError(
            f"{run_dir}/{missing}: not trained here, and the run started from no checkpoint"
        )
    ckpt = torch.load(source["checkpoint"], map_location="cpu", weights_only=False)
    if ckpt.get("model_kind") != MODEL_KIND or ckpt["step"][trained] != source["step"]:
        raise ValueError(
            f"{source['checkpoint']} is no longer the checkpoint {run_dir}/{trained} started from "
            f"(step {source['step']}): export the run with that file's {missing} model some other way"
        )
    return model_from_state(ckpt[missing]), ckpt


def export_parts(
    run_dir: str | Path,
    out: str | Path,
    best: bool = False,
    layout_guidance: float = 1.0,
    untrained_from: str | Path | None = None,
) -> dict:
    """One fp16 checkpoint holding both models (model_kind "parts") with the run record. A model
    the run did not train comes from the parts file ``untrained_from``, or else from the parts
    checkpoint the run was initialised from."""
    run_dir = Path(run_dir)
    name = "best.pt" if best else "checkpoint.pt"
    models, steps, inherited = {}, {}, {}
    exemplars = None
    for half, other in (("structure", "part"), ("part", "structure")):
        if (run_dir / half / name).is_file():
            models[half], ckpt = load_model(run_dir / half / name)
            steps[half] = ckpt["step"]
            if half == "structure" and (run_dir / half / EXEMPLARS_FILE).is_file():
                exemplars = pickle.loads((run_dir / half / EXEMPLARS_FILE).read_bytes())
        else:
            models[half], parts_file = _untrained_half(run_dir, other, half, untrained_from)
            steps[half], inherited[half] = parts_file["step"][half], parts_file["run"][half]
            if half == "structure":
                exemplars = parts_file.get("layout_exemplars")
    run = parts_record(run_dir, inherited)
    decomposition = DecompositionConfig.from_dict(run["decomposition"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_parts_checkpoint(
        out,
        models["structure"],
        models["part"],
        decomposition,
        {"step": steps, "run": run},
        half=True,
        layout_guidance=layout_guidance,
        exemplars=None if exemplars is None else LayoutExemplars.from_state(exemplars),
    )
    return {"out": str(out), "step": steps, "bytes": Path(out).stat().st_size}


def with_nearest_layouts(parts_file: str | Path, dataset: str, out: str | Path) -> dict:
    """A copy of a parts file whose layouts are the training layouts nearest the prompt (by
    caption) rather than its structure model's: the library is built from ``dataset``'s train
    split, decomposed by the file's own rule."""
    ckpt = torch.load(parts_file, map_location="cpu", weights_only=False)
    if ckpt.get("model_kind") != MODEL_KIND:
        raise ValueError(f"{parts_file} is not a parts checkpoint")
    rule = DecompositionConfig.from_dict(ckpt["decomposition"])
    library = training_layouts(decompositions(dataset, "train", rule), rule.tokenizer.bits)
    ckpt.update(layouts="nearest", layout_exemplars=library.state())
    ckpt["run"] = {
        **ckpt.get("run", {}),
        "nearest_layouts": {"from": str(parts_file), "dataset": data_version(dataset)},
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, out)
    return {"out": str(out), "layouts": len(library), "bytes": Path(out).stat().st_size}
