"""Generation requests: accepted at once, run on a worker thread, state kept in the generations table.

The table is the source of truth, so status, progress and cancellation work across gateway
replicas: a DELETE marks the row cancelled and the runner checks the row between variations.
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Literal

from pydantic import BaseModel, Field

from services.gateway.inference import geometry_backend
from shared.blobs import get_blob_store
from shared.db import session_scope
from shared.db.models import Generation, RunStatus
from shared.scene import SCHEMA_VERSION, parse_scene
from shared.settings import get_settings

log = logging.getLogger(__name__)

Specialist = Literal["geometry", "materials", "modifiers", "animation"]
AVAILABLE_SPECIALISTS = {"geometry"}
SPACING_M = 2.5  # variations stand side by side along X


class GenerationRequest(BaseModel):
    prompt: str = Field(min_length=1)
    specialists: list[Specialist] = Field(default_factory=lambda: ["geometry"], min_length=1)
    face_budget: int = Field(200, ge=1)
    seed: int | None = None
    variations: int = Field(1, ge=1)
    temperature: float = Field(0.8, ge=0.0, le=2.0)


def object_name(prompt: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", prompt)[:4]
    return "_".join(w.capitalize() for w in words) or "Generated"


def build_scene(request: GenerationRequest, index: int, mesh: dict, warnings: list[str]) -> dict:
    """One variation as a scene document; the add-on places it at the 3D cursor."""
    name = object_name(request.prompt)
    return {
        "schema_version": SCHEMA_VERSION,
        "name": f"{name} {index + 1}",
        "objects": [
            {
                "name": name,
                "type": "MESH",
                "transform": {"location": [index * SPACING_M, 0.0, 0.0]},
                "mesh": {"name": name, "vertices": mesh["vertices"], "faces": mesh["faces"]},
            }
        ],
        "warnings": warnings,
    }


class GenerationRunner:
    def __init__(self, workers: int = 1):
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="generation")

    def submit(self, request: GenerationRequest) -> str:
        generation_id = str(uuid.uuid4())
        with session_scope() as session:
            session.add(
                Generation(
                    id=generation_id,
                    prompt=request.prompt,
                    options=request.model_dump(),
                    status=RunStatus.QUEUED,
                    progress=0.0,
                    message="queued",
                )
            )
        self.pool.submit(self._run, generation_id, request)
        return generation_id

    def cancel(self, generation_id: str) -> Generation | None:
        with session_scope() as session:
            generation = session.get(Generation, generation_id)
            if generation is not None and generation.status in (RunStatus.QUEUED, RunStatus.RUNNING):
                generation.status = RunStatus.CANCELLED
                generation.message = "cancelled"
            return generation

    def _update(self, generation_id: str, **fields: object) -> RunStatus | None:
        """Write fields unless the generation was cancelled meanwhile; returns its status."""
        with session_scope() as session:
            generation = session.get(Generation, generation_id)
            if generation is None:
                return None
            if generation.status is not RunStatus.CANCELLED:
                for key, value in fields.items():
                    setattr(generation, key, value)
            return generation.status

    def _run(self, generation_id: str, request: GenerationRequest) -> None:
        start = time.perf_counter()
        settings = get_settings()
        warnings = [
            f"the {s} specialist is not available yet; skipped"
            for s in request.specialists
            if s not in AVAILABLE_SPECIALISTS
        ]
        seed = request.seed if request.seed is not None else uuid.uuid4().int % (2**31)
        try:
            if (
                self._update(generation_id, status=RunStatus.RUNNING, message="loading model")
                is RunStatus.CANCELLED
            ):
                return
            scenes = []
            if "geometry" in request.specialists:
                backend = geometry_backend(settings.inference_url, settings.geometry_checkpoint)
                for index in range(request.variations):
                    status = self._update(
                        generation_id, message=f"variation {index + 1} of {request.variations}"
                    )
                    if status is RunStatus.CANCELLED:
                        return
                    mesh = backend.generate_mesh(
                        request.prompt, request.face_budget, seed + index, request.temperature
                    )
                    scene = parse_scene(build_scene(request, index, mesh, warnings))
                    # Defaults are implied by the format; the version never is.
                    compact = scene.model_dump(mode="json", exclude_defaults=True)
                    scenes.append({"schema_version": SCHEMA_VERSION, **compact})
                    self._update(generation_id, progress=(index + 1) / request.variations)
            key = get_blob_store().put_bytes(json.dumps({"scenes": scenes}).encode())
            self._update(
                generation_id,
                status=RunStatus.SUCCEEDED,
                progress=1.0,
                result_key=key,
                message="; ".join(warnings) or "done",
                latency_ms=(time.perf_counter() - start) * 1000,
            )
        except Exception as exc:  # recorded for the client; the gateway keeps serving
            log.exception("generation %s failed", generation_id)
            self._update(
                generation_id,
                status=RunStatus.FAILED,
                error=f"{type(exc).__name__}: {exc}",
                message="failed",
                latency_ms=(time.perf_counter() - start) * 1000,
            )


def scenes_of(generation: Generation) -> list[dict]:
    if generation.status is not RunStatus.SUCCEEDED or not generation.result_key:
        return []
    return json.loads(get_blob_store().get_bytes(generation.result_key))["scenes"]
