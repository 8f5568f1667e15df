"""FastAPI application: health, readiness and job status. Routes stay thin; work happens in tasks."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from pydantic import BaseModel
from sqlalchemy import text

from shared.blobs import get_blob_store
from shared.db import get_engine, session_scope
from shared.db.models import Job
from shared.settings import get_settings


class JobOut(BaseModel):
    id: str
    kind: str
    state: str
    progress: float
    message: str | None
    error: str | None
    attempts: int
    result: dict | None


def require_api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    expected = get_settings().api_key
    if expected and not secrets.compare_digest(x_api_key or "", expected):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


def create_app() -> FastAPI:
    app = FastAPI(title="BlenderModelTraining gateway", version="0.1.0")

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

    return app
