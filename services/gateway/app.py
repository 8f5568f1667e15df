"""FastAPI application: health, readiness and job status. Routes stay thin; work happens in tasks."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from services.gateway.generations import GenerationRequest, GenerationRunner, scenes_of
from shared.blobs import get_blob_store
from shared.db import get_engine, session_scope
from shared.db.models import Generation, Job
from shared.settings import get_settings

MAX_BODY_BYTES = 64 * 1024


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    progress: float
    message: str | None
    error: str | None
    attempts: int
    result: dict | None


class GenerationOut(BaseModel):
    id: str
    status: str
    progress: float
    message: str | None
    error: str | None
    latency_ms: float | None = None
    scenes: list[dict] = []


def generation_out(generation: Generation, with_scenes: bool = True) -> GenerationOut:
    return GenerationOut(
        id=generation.id,
        status=generation.status.value,
        progress=generation.progress,
        message=generation.message,
        error=generation.error,
        latency_ms=generation.latency_ms,
        scenes=scenes_of(generation) if with_scenes else [],
    )


def require_api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    expected = get_settings().api_key
    if expected and not secrets.compare_digest(x_api_key or "", expected):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


def create_app() -> FastAPI:
    app = FastAPI(title="BlenderModelTraining gateway", version="0.1.0")
    runner = GenerationRunner()

    @app.middleware("http")
    async def limit_body_size(request: Request, call_next):  # type: ignore[no-untyped-def]
        length = request.headers.get("content-length")
        if length is not None and int(length) > MAX_BODY_BYTES:
            return JSONResponse({"detail": f"request body over {MAX_BODY_BYTES} bytes"}, status_code=413)
        return await call_next(request)

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> dict:
        """Readiness: the metadata database and the blob store answer."""
        problems = {}
        try:
            with get_engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # any failure means not ready; say which part and why
            problems["database"] = f"{type(exc).__name__}: {exc}"
        try:
            get_blob_store().exists("0" * 64)
        except Exception as exc:
            problems["blobs"] = f"{type(exc).__name__}: {exc}"
        if problems:
            raise HTTPException(status_code=503, detail=problems)
        return {"status": "ready"}

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(require_api_key)])
    def get_job(job_id: str) -> JobOut:
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is None:
                raise HTTPException(status_code=404, detail=f"no job {job_id!r}")
            return JobOut(
                id=job.id,
                kind=job.kind,
                state=job.state.value,
                progress=job.progress,
                message=job.message,
                error=job.error,
                attempts=job.attempts,
                result=job.result,
            )

    @app.post("/v1/generations", status_code=202, dependencies=[Depends(require_api_key)])
    def create_generation(request: GenerationRequest) -> dict:
        settings = get_settings()
        if len(request.prompt) > settings.generation_max_prompt_chars:
            raise HTTPException(413, f"prompt longer than {settings.generation_max_prompt_chars} characters")
        if request.face_budget > settings.generation_max_face_budget:
            raise HTTPException(
                422, f"face_budget above the maximum of {settings.generation_max_face_budget}"
            )
        if request.variations > settings.generation_max_variations:
            raise HTTPException(422, f"variations above the maximum of {settings.generation_max_variations}")
        return {"id": runner.submit(request), "status": "queued"}

    @app.get("/v1/generations/{generation_id}", dependencies=[Depends(require_api_key)])
    def get_generation(generation_id: str) -> GenerationOut:
        with session_scope() as session:
            generation = session.get(Generation, generation_id)
            if generation is None:
                raise HTTPException(404, f"no generation {generation_id!r}")
            return generation_out(generation)

    @app.delete("/v1/generations/{generation_id}", status_code=202, dependencies=[Depends(require_api_key)])
    def cancel_generation(generation_id: str) -> dict:
        generation = runner.cancel(generation_id)
        if generation is None:
            raise HTTPException(404, f"no generation {generation_id!r}")
        return {"id": generation.id, "status": generation.status.value}

    return app
