"""Prompt + object -> node material with the material model: the sampling side, loaded alike
in-process and inside Triton (the generic JSON model of issue 18 calls ``run_many``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.ml.material_model import context_features, load_model
from shared.ml.material_tokens import graph_to_material
from shared.ml.text_embedding import embed

REQUEST_KEYS = frozenset(
    {"prompt", "noun", "category", "size", "slot", "slots", "seed", "temperature", "top_p"}
)


def object_text(noun: str | None, category: str | None) -> str:
    """What the model reads about the object: "chair, furniture" ("object" when nothing is known)."""
    return ", ".join(w for w in (noun, category) if w) or "object"


def material_name(prompt: str) -> str:
    return " ".join(prompt.split())[:60].title()


def check_request(request: Any) -> dict:
    """The request with its defaults filled in; ValueError names what is wrong."""
    if not isinstance(request, dict):
        raise ValueError(f"a material request is an object, not {type(request).__name__}")
    unknown = set(request) - REQUEST_KEYS
    if unknown:
        raise ValueError(f"unknown request fields: {', '.join(sorted(unknown))}")
    prompt = request.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("prompt: a non-empty string is required")
    for key in ("noun", "category"):
        if request.get(key) is not None and not isinstance(request[key], str):
            raise ValueError(f"{key}: a string")
    size = request.get("size")
    if size is not None and (
        not isinstance(size, list | tuple)
        or len(size) != 3
        or not all(isinstance(v, int | float) and not isinstance(v, bool) and 0 <= v < 1e6 for v in size)
    ):
        raise ValueError("size: three numbers [x, y, z] in metres, each 0 or more (a plane is flat)")
    slots, slot = request.get("slots", 1), request.get("slot", 0)
    if not isinstance(slots, int) or isinstance(slots, bool) or not 1 <= slots <= 256:
        raise ValueError("slots: an integer from 1 to 256")
    if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < slots:
        raise ValueError(f"slot: an integer from 0 to slots - 1 ({slots - 1})")
    seed = request.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError("seed: a non-negative integer")
    temperature, top_p = request.get("temperature", 0.7), request.get("top_p", 0.9)
    if not isinstance(temperature, int | float) or isinstance(temperature, bool) or not 0 <= temperature <= 2:
        raise ValueError("temperature: a number from 0 (greedy) to 2")
    if not isinstance(top_p, int | float) or isinstance(top_p, bool) or not 0 < top_p <= 1:
        raise ValueError("top_p: a number in (0, 1]")
    return {
        "prompt": prompt.strip(),
        "noun": request.get("noun"),
        "category": request.get("category"),
        "size": None if size is None else [float(v) for v in size],
        "slot": slot,
        "slots": slots,
        "seed": seed,
        "temperature": float(temperature),
        "top_p": float(top_p),
    }


class MaterialGenerator:
    """One node material per request.

    Request (JSON): ``{"prompt": str, "noun"?: str, "category"?: str, "size"?: [x, y, z] metres,
    "slot"?: int (0-based), "slots"?: int, "seed"?: int, "temperature"?: 0..2 (0.7),
    "top_p"?: (0, 1] (0.9)}``.
    Result (JSON): ``{"material": <shared.scene.models.Material as JSON: node_tree, pbr summary,
    source "generated">, "tokens": int, "seconds": float, "batch": int}``. The material's name
    comes from the prompt; a caller putting several on one object renames them as it needs.
    A bad request raises ValueError (before anything is decoded).
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, meta = load_model(checkpoint, self.device)
        self.checkpoint = str(checkpoint)
        self.meta = {k: v for k, v in meta.items() if k not in ("state_dict", "optimizer")}
        self._lock = threading.Lock()

    def run_many(self, requests: list[dict]) -> list[dict]:
        """Results in request order. Requests with the same temperature and top-p are decoded
        side by side, each with its own seeded generator."""
        checked = [check_request(r) for r in requests]
        groups: dict[tuple[float, float], list[int]] = {}
        for i, request in enumerate(checked):
            groups.setdefault((request["temperature"], request["top_p"]), []).append(i)
        results: list[dict] = [{} for _ in checked]
        for (temperature, top_p), rows in groups.items():
            start = time.perf_counter()
            text = torch.from_numpy(np.stack([embed([checked[i]["prompt"]])[0] for i in rows]))
            objects = torch.from_numpy(
                np.stack([embed([object_text(checked[i]["noun"], checked[i]["category"])])[0] for i in rows])
            )
            numbers = torch.from_numpy(
                np.stack(
                    [
                        context_features(checked[i]["size"], checked[i]["slot"], checked[i]["slots"])
                        for i in rows
                    ]
                )
            )
            generators = [torch.Generator(device=self.device).manual_seed(checked[i]["seed"]) for i in rows]
            with self._lock:
                samples = self.model.generate_batch(text, objects, numbers, temperature, top_p, generators)
            seconds = round(time.perf_counter() - start, 4)
            for i, (tokens, graph) in zip(rows, samples, strict=True):
                results[i] = {
                    "material": graph_to_material(graph, material_name(checked[i]["prompt"])),
                    "tokens": len(tokens),
                    "seconds": seconds,
                    "batch": len(rows),
                }
        return results
