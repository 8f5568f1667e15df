"""Prompt -> mesh with the geometry model: the sampling side, loaded alike in-process (embedded
default) and inside Triton (services/serving).

Every kind of geometry generator answers ``generate_many(requests: list[MeshRequest]) -> list[dict]``
(each dict a mesh in metres: ``vertices``, ``faces``); ``load_generator`` picks the class from the
checkpoint's ``model_kind``, so the evaluation and the serving code never look inside a model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from shared.inference import DEFAULT_FACE_BUDGET
from shared.ml.geometry_model import load_model
from shared.ml.text_embedding import embed

# Generated meshes live in the unit cube; this makes them Blender-sized (the default cube is 2 m).
OUTPUT_SIZE_M = 2.0


@dataclass(frozen=True)
class MeshRequest:
    """One prompt and its sampling settings; refuses what cannot be generated."""

    prompt: str
    face_budget: int = DEFAULT_FACE_BUDGET
    seed: int = 0
    temperature: float = 0.8
    top_p: float = 0.95

    def __post_init__(self) -> None:
        if not self.prompt.strip():
            raise ValueError("the prompt is empty")
        if self.face_budget < 1:
            raise ValueError("face_budget must be at least 1")


def mesh_requests(requests: list[dict]) -> list[MeshRequest]:
    """The specialists' common request format (shared.inference) for geometry: each request a dict
    with ``prompt`` and optionally ``face_budget``, ``seed``, ``temperature``, ``top_p``. A request
    with other keys or bad values raises ValueError naming it."""
    parsed = []
    for index, request in enumerate(requests):
        try:
            parsed.append(MeshRequest(**request))
        except (TypeError, AttributeError) as exc:  # an unknown key, a value of the wrong type
            raise ValueError(f"geometry request {index}: {exc}") from None
    return parsed


class MeshGenerator(Protocol):
    """What every geometry generator offers, whatever its model kind."""

    checkpoint: str
    meta: dict

    def generate_many(self, requests: list[MeshRequest]) -> list[dict]: ...

    def run_many(self, requests: list[dict]) -> list[dict]: ...


class GeometryGenerator:
    """The flat model (model_kind "flat"): one token sequence per object."""

    def __init__(self, checkpoint: str | Path, device: str | None = None, half_precision: bool = True):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, meta = load_model(checkpoint, self.device, half_precision=half_precision)
        self.checkpoint = str(checkpoint)
        self.meta = {k: v for k, v in meta.items() if k not in ("state_dict", "optimizer")}
        self._lock = threading.Lock()  # one generation at a time per model instance

    def generate(
        self,
        prompt: str,
        face_budget: int = DEFAULT_FACE_BUDGET,
        seed: int = 0,
        temperature: float = 0.8,
        top_p: float = 0.95,
    ) -> dict:
        """A mesh dict {vertices, faces} in metres, Z up, centred on the origin, plus timings."""
        return self.generate_many([MeshRequest(prompt, face_budget, seed, temperature, top_p)])[0]

    def run_many(self, requests: list[dict]) -> list[dict]:
        """The specialists' common interface (shared.inference): see ``mesh_requests``; each
        result the mesh dict of ``generate``."""
        return self.generate_many(mesh_requests(requests))

    def generate_many(self, requests: list[MeshRequest]) -> list[dict]:
        """A mesh dict per request. Requests with the same face budget and sampling settings are
        decoded side by side, each with its own seeded generator, so a request gets the mesh it
        would get alone (up to rounding) in a fraction of the time."""
        groups: dict[tuple[int, float, float], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.face_budget, request.temperature, request.top_p), []).append(i)
        meshes: list[dict] = [{} for _ in requests]
        for (face_budget, temperature, top_p), rows in groups.items():
            start = time.perf_counter()
            # One prompt per call: a batched encoder pads, which may move the embedding's last bits.
            texts = torch.stack([torch.from_numpy(embed([requests[i].prompt])[0]) for i in rows])
            generators = [
                torch.Generator(device=self.device).manual_seed(int(requests[i].seed)) for i in rows
            ]
            with self._lock:
                samples = self.model.generate_batch(
                    texts, face_budget=face_budget, temperature=temperature, top_p=top_p, generator=generators
                )
            seconds = round(time.perf_counter() - start, 4)
            for i, (tokens, mesh) in zip(rows, samples, strict=True):
                vertices = mesh.unit_vertices() * OUTPUT_SIZE_M
                meshes[i] = {
                    "vertices": [[round(float(c), 6) for c in v] for v in vertices],
                    "faces": [list(map(int, f)) for f in mesh.faces],
                    "tokens": len(tokens),
                    "seconds": seconds,
                    "batch": len(rows),  # requests decoded together with this one, itself included
                }
        return meshes


GENERATOR_KINDS = ("flat", "parts")  # a checkpoint without model_kind is flat (written before parts)


def load_generator(
    checkpoint: str | Path, device: str | None = None, half_precision: bool = True
) -> MeshGenerator:
    """The generator a checkpoint holds, chosen by its metadata key ``model_kind``: "flat"
    (GeometryGenerator) or "parts" (PartsGenerator: a layout, then each part's faces).

    half_precision: fp16 weights on a CPU (faster one row at a time; off where samples must not
    depend on the batch size, as in the evaluation)."""
    kind = torch.load(checkpoint, map_location="cpu", weights_only=False).get("model_kind", "flat")
    if kind == "flat":
        return GeometryGenerator(checkpoint, device, half_precision=half_precision)
    if kind == "parts":
        from shared.ml.parts_generator import PartsGenerator  # it builds on this module

        return PartsGenerator(checkpoint, device, half_precision=half_precision)
    raise ValueError(
        f"{checkpoint}: unknown model_kind {kind!r} for a geometry checkpoint; this code knows {GENERATOR_KINDS}"
    )
