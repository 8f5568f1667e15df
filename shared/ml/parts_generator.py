"""Prompt -> mesh with structure-first geometry (shared.ml.parts_model): the sampling side, with the
same requests and results as GeometryGenerator, so serving loads either (``load_generator``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from shared.inference import DEFAULT_FACE_BUDGET
from shared.ml.geometry_generator import OUTPUT_SIZE_M, MeshRequest, mesh_requests
from shared.ml.parts_model import load_parts_model
from shared.ml.text_embedding import embed


class PartsGenerator:
    """``generate_many(requests)`` -> one dict per MeshRequest: ``vertices`` (metres, Z up, centred
    on the origin, longest side OUTPUT_SIZE_M), ``faces`` (each part a loose piece), ``tokens``
    (layout and parts), ``parts``, ``seconds`` and ``batch`` (requests decoded together)."""

    def __init__(self, checkpoint: str | Path, device: str | None = None, half_precision: bool = True):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, meta = load_parts_model(checkpoint, self.device, half_precision)
        self.checkpoint = str(checkpoint)
        self.meta = {k: v for k, v in meta.items() if k not in ("structure", "part", "optimizer")}
        self._lock = threading.Lock()  # one generation at a time per model instance

    def generate(
        self,
        prompt: str,
        face_budget: int = DEFAULT_FACE_BUDGET,
        seed: int = 0,
        temperature: float = 0.8,
        top_p: float = 0.95,
    ) -> dict:
        return self.generate_many([MeshRequest(prompt, face_budget, seed, temperature, top_p)])[0]

    def run_many(self, requests: list[dict]) -> list[dict]:
        """The specialists' common interface (shared.inference), as GeometryGenerator's."""
        return self.generate_many(mesh_requests(requests))

    def generate_many(self, requests: list[MeshRequest]) -> list[dict]:
        """Requests with the same sampling settings decode side by side (their layouts, then all
        their parts), each from its own seed, so a request gets the object it would get alone (up
        to rounding)."""
        groups: dict[tuple[float, float], list[int]] = {}
        for i, request in enumerate(requests):
            groups.setdefault((request.temperature, request.top_p), []).append(i)
        meshes: list[dict] = [{} for _ in requests]
        for (temperature, top_p), rows in groups.items():
            start = time.perf_counter()
            # One prompt per call: a batched encoder pads, which may move the embedding's last bits.
            texts = torch.stack([torch.from_numpy(embed([requests[i].prompt])[0]) for i in rows])
            generators = [
                torch.Generator(device=self.device).manual_seed(int(requests[i].seed)) for i in rows
            ]
            with self._lock:
                objects = self.model.generate_batch(
                    texts,
                    face_budget=[requests[i].face_budget for i in rows],
                    temperature=temperature,
                    top_p=top_p,
                    generator=generators,
                )
            seconds = round(time.perf_counter() - start, 4)
            for i, obj in zip(rows, objects, strict=True):
                meshes[i] = {
                    "vertices": [[round(float(c) * OUTPUT_SIZE_M, 6) for c in v] for v in obj.vertices],
                    "faces": [list(map(int, f)) for f in obj.faces],
                    "tokens": obj.tokens,
                    "parts": len(obj.layout),
                    "seconds": seconds,
                    "batch": len(rows),
                }
        return meshes
