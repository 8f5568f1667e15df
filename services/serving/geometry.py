"""Prompt -> mesh with the geometry model. Loaded in-process (embedded default) or inside Triton."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import torch

from shared.ml.geometry_model import load_model
from shared.ml.text_embedding import embed

# Generated meshes live in the unit cube; this makes them Blender-sized (the default cube is 2 m).
OUTPUT_SIZE_M = 2.0


class GeometryGenerator:
    def __init__(self, checkpoint: str | Path, device: str | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, meta = load_model(checkpoint, self.device)
        self.checkpoint = str(checkpoint)
        self.meta = {k: v for k, v in meta.items() if k not in ("state_dict", "optimizer")}
        self._lock = threading.Lock()  # one generation at a time per model instance

    def generate(
        self,
        prompt: str,
        face_budget: int = 200,
        seed: int = 0,
        temperature: float = 0.8,
        top_p: float = 0.95,
    ) -> dict:
        """A mesh dict {vertices, faces} in metres, Z up, centred on the origin, plus timings."""
        if not prompt.strip():
            raise ValueError("the prompt is empty")
        if face_budget < 1:
            raise ValueError("face_budget must be at least 1")
        start = time.perf_counter()
        text = torch.from_numpy(embed([prompt])[0])
        generator = torch.Generator(device=self.device).manual_seed(int(seed))
        with self._lock:
            tokens, mesh = self.model.generate(
                text, face_budget=face_budget, temperature=temperature, top_p=top_p, generator=generator
            )
        vertices = mesh.unit_vertices() * OUTPUT_SIZE_M
        return {
            "vertices": [[round(float(c), 6) for c in v] for v in vertices],
            "faces": [list(map(int, f)) for f in mesh.faces],
            "tokens": len(tokens),
            "seconds": round(time.perf_counter() - start, 4),
        }
