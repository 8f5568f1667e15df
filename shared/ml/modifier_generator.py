"""Mesh + prompt -> a modifier stack with the modifier model: the sampling side, loaded alike
in-process and inside Triton (issue 18's generic JSON model calls ``run_many``)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from shared.ml.modifier_model import load_model
from shared.ml.modifier_structure import MeshArrays, features, peel_stack
from shared.ml.modifier_tokens import TYPES, from_slots
from shared.ml.text_embedding import embed

# Modifiers that rebuild the mesh from a simpler base (which the result then carries).
PEELED = {"MIRROR", "ARRAY", "SOLIDIFY"}
# The types a user's own mesh may get (keep_mesh): they work on the whole mesh as it is.
WHOLE_MESH = tuple(t for t in TYPES if t not in PEELED)


class ModifierGenerator:
    """Predicts an ordered modifier stack for a finished mesh (a generated one, say).

    Request (JSON-able dict)::

        {"prompt": "a symmetric low-poly chair",        # required, non-empty
         "mesh": {"vertices": [[x, y, z], ...], "faces": [[i, j, k, ...], ...]},   # required
         "keep_mesh": false,                             # optional: the mesh is the user's own and
                                                         # stays as it is, so no stack rebuilds it
         "at_least_one": false,                          # optional: a stack is wanted (the user
                                                         # asked for modifiers): where no type
                                                         # passes the threshold, the most probable
                                                         # of those that work on the mesh as it is
                                                         # (Bevel, Subdivision: always kept)
         "seed": 0}                                      # optional; the model is deterministic

    Result (JSON-able dict, payload in the scene format of shared/scene/models.py)::

        {"modifiers": [{"name", "type", "params"}, ...],  # Modifier dicts, first applied first
         "base_mesh": {"vertices", "faces"},              # only when the stack rebuilds the mesh
                                                          # from a simpler base (Mirror: the half,
                                                          # Array: one element, Solidify: one sheet)
         "base_location": [x, y, z],                      # with base_mesh: where the object goes so
                                                          # base + stack lands on the given mesh
         "dropped": ["ARRAY", ...],                       # predicted, but the mesh does not carry
                                                          # its structure, so left out
         "left_out": ["MIRROR", ...],                     # with keep_mesh: predicted and found, but
                                                          # only a base mesh takes them (on the whole
                                                          # mesh a Mirror would double it)
         "seconds": 0.01}

    Mirror, Array and Solidify take their exact parameters from the mesh (the model says whether,
    the structure says how much); Bevel and Subdivision keep the model's quantised parameters and
    apply to the mesh as it is. A bad request raises ValueError naming the problem.
    """

    def __init__(self, checkpoint: str | Path, device: str | None = None):
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model, meta = load_model(checkpoint, self.device)
        self.checkpoint = str(checkpoint)
        self.meta = {k: v for k, v in meta.items() if k != "state_dict"}
        self._lock = threading.Lock()

    def run_many(self, requests: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One result per request; all requests go through the model in one batch."""
        start = time.perf_counter()
        meshes, prompts, keep, wanted = [], [], [], []
        for k, request in enumerate(requests):
            if not isinstance(request, dict):
                raise ValueError(f"request {k}: expected an object with prompt and mesh")
            prompt = request.get("prompt")
            if not isinstance(prompt, str) or not prompt.strip():
                raise ValueError(f"request {k}: the prompt is empty")
            mesh = request.get("mesh")
            if not isinstance(mesh, dict):
                raise ValueError(f"request {k}: mesh must be an object with vertices and faces")
            try:
                meshes.append(MeshArrays.from_dict(mesh).welded())
            except (TypeError, ValueError) as exc:
                raise ValueError(f"request {k}: {exc}") from exc
            prompts.append(prompt)
            keep.append(bool(request.get("keep_mesh", False)))
            wanted.append(bool(request.get("at_least_one")))
        if not requests:
            return []
        values = np.stack([features(m) for m in meshes])
        text = np.stack([embed([p])[0] for p in prompts])
        with self._lock:  # a kept mesh loses what would rebuild it: it needs a whole-mesh type
            slots = self.model.predict(
                values,
                text,
                at_least_one=[WHOLE_MESH if w and k else False for w, k in zip(wanted, keep, strict=True)],
            )
        stacks = [peel_stack(m, from_slots(s, m.diagonal)) for m, s in zip(meshes, slots, strict=True)]
        # Asked for a stack and none held (nothing passed the threshold, or what passed needs a
        # structure the mesh lacks): the most probable type that works on the mesh as it is.
        bare = [i for i, p in enumerate(stacks) if wanted[i] and not keep[i] and not p.stack]
        if bare:
            with self._lock:
                again = self.model.predict(values[bare], text[bare], at_least_one=[WHOLE_MESH] * len(bare))
            for i, slot in zip(bare, again, strict=True):
                stacks[i] = peel_stack(meshes[i], from_slots(slot, meshes[i].diagonal))
        results = []
        for peeled, keep_mesh in zip(stacks, keep, strict=True):
            result: dict[str, Any] = {"modifiers": peeled.stack, "dropped": sorted(peeled.rejections)}
            rebuilding = sorted({m["type"] for m in peeled.stack if m["type"] in PEELED})
            if keep_mesh:  # only the modifiers that work on the whole mesh (Bevel, Subdivision...)
                result["modifiers"] = [m for m in peeled.stack if m["type"] not in PEELED]
                result["left_out"] = rebuilding
            elif rebuilding:
                result["base_mesh"] = peeled.base.to_dict()
                result["base_location"] = [round(float(c), 6) for c in peeled.origin]
            results.append(result)
        seconds = round(time.perf_counter() - start, 4)
        for result in results:
            result["seconds"] = seconds
        return results
