"""FastAPI application: health, readiness, metrics, job status and generations. Routes stay thin:
generations run in services.gateway.generations, models are reached through shared.inference."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from functools import lru_cache
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import select, text
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.gateway import operations
from services.gateway.generations import (
    TERMINAL,
    VISIBLE,
    GenerationRunner,
    ResultCache,
    request_models,
    sweep_abandoned,
)
from shared.blobs import BlobStore, open_blob_store
from shared.db import get_engine, session_scope
from shared.db.models import Generation, Job, RunStatus
from shared.inference import get_inference
from shared.queue import mark_lost_jobs
from shared.settings import get_settings

log = logging.getLogger(__name__)
RETRY_AFTER_S = "1"
GenerationId = Annotated[uuid.UUID, Path(description="The id POST /v1/generations returned.")]
JobId = Annotated[str, Path(pattern=r"^[A-Za-z0-9._:-]{1,64}$", description="A task id.")]


class ErrorOut(BaseModel):
    detail: str | list[dict[str, Any]] | dict[str, str | None]


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
    stage: str | None = None
    stages: dict[str, dict[str, Any]] = {}
    message: str | None
    error: str | None
    latency_ms: float | None = None
    scenes: list[dict] = []


class Accepted(BaseModel):
    id: str
    status: str


def errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    descriptions = {
        400: "The body is not JSON (or not UTF-8).",
        401: "Missing or wrong X-API-Key.",
        404: "No such generation or job.",
        410: "The generation was cancelled.",
        413: "Request body too large.",
        422: "The request is invalid, or asks for a specialist that is not available (the reason says which).",
        429: "Too many new generations for this key, or the replica is full; see Retry-After.",
        503: "A part the gateway needs is down; see Retry-After.",
    }
    return {code: {"model": ErrorOut, "description": descriptions[code]} for code in codes}


@lru_cache(maxsize=4)
def cached_blob_store(url: str, max_bytes: int) -> BlobStore:
    """One client per store for the process (building an S3 client costs tens of milliseconds)."""
    return open_blob_store(url, max_bytes)


class ServiceUnavailable(HTTPException):
    def __init__(self, detail: Any):
        super().__init__(503, detail, headers={"Retry-After": RETRY_AFTER_S})


class BodyLimit:
    """Refuses a body over ``max_bytes`` (413) before anything reads it (authentication included):
    by Content-Length when sent, else by counting a chunked body as it arrives."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "DELETE", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = JSONResponse({"detail": f"request body over {self.max_bytes} bytes"}, status_code=413)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await too_large(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                operations.REJECTED.labels("body_too_large").inc()
                await too_large(scope, receive, send)
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


class RequestContext:
    """A request id for every request (the caller's X-Request-ID when sane), in the logs and the
    response; the request's latency in the metrics and one access-log line."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        sent = dict(scope["headers"]).get(operations.REQUEST_ID_HEADER.encode())
        rid = operations.incoming_request_id(sent.decode("latin-1") if sent is not None else None)
        token = operations.request_id.set(rid)
        start = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", rid.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", "unmatched")
            operations.REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(seconds)
            log.info(
                "%s %s %d",
                scope["method"],
                route,
                status,
                extra={"status": status, "ms": round(seconds * 1000, 2)},
            )
            operations.request_id.reset(token)


async def require_api_key(x_api_key: Annotated[str | None, Header()] = None) -> None:
    # async: it only compares strings, so FastAPI runs it on the event loop, not in a worker thread
    # (a thread hop per request, the sync endpoint's own hop aside).
    expected = get_settings().api_key
    # Compared as bytes: a header can carry any byte, and compare_digest refuses non-ASCII str.
    given = (x_api_key or "").encode("utf-8", "surrogateescape")
    if expected and not secrets.compare_digest(given, expected.encode()):
        raise HTTPException(status_code=401, detail="missing or wrong X-API-Key")


def create_app() -> FastAPI:
    settings = get_settings()
    inference = get_inference
    results = ResultCache()

    def blobs() -> BlobStore:
        return cached_blob_store(settings.blob_url, settings.max_upload_bytes)

    def check_database() -> None:
        with get_engine().connect() as conn:
            conn.execute(text("SELECT 1"))

    def check_inference() -> dict[str, str | None]:
        return inference().available()

    local = {
        "database": settings.database_url.startswith("sqlite"),
        "blobs": settings.blob_url.startswith("file:"),
        "inference": settings.inference_url == "local",
    }
    health = operations.DependencyHealth(
        {"database": check_database, "blobs": lambda: blobs().check(0.8), "inference": check_inference},
        inline=frozenset(part for part, is_local in local.items() if is_local),
    )
    runner = GenerationRunner(settings, inference, blobs, results)
    GenerationRequest, ApplyRequest = request_models(settings)
    limiter = operations.RateLimiter(settings.gateway_rate_per_minute)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Generations a dead replica left open are failed now, not only by the next lease round.
        await run_in_threadpool(sweep_abandoned, settings.generation_lease_s)
        stop_probing = health.keep_fresh()
        runner.start()
        yield
        stop_probing()
        await run_in_threadpool(runner.shutdown, 10.0)

    app = FastAPI(
        title="BlenderModelTraining gateway",
        version="0.2.0",
        lifespan=lifespan,
        description="Prompt in, Blender scene data out. POST a generation, then follow it with GET "
        "(polling) or the server-sent events stream; the scenes come with the final state.",
    )
    app.state.runner = runner
    app.add_middleware(BodyLimit, max_bytes=settings.gateway_max_body_bytes)
    app.add_middleware(RequestContext)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_request: Request, exc: RequestValidationError) -> JSONResponse:
        # Without the input: it may hold what cannot be encoded back (lone surrogates) or be large.
        detail = [
            {"loc": list(error.get("loc", ())), "msg": error.get("msg", ""), "type": error.get("type", "")}
            for error in exc.errors()
        ]
        operations.REJECTED.labels("invalid").inc()
        return JSONResponse({"detail": detail}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(exc.headers or {})
        if exc.status_code == 405:  # name every method of the path, not only the first route's
            methods = set()
            for route in app.router.routes:
                match, _ = route.matches({**request.scope, "method": "GET"})
                if match is not Match.NONE:
                    methods |= set(getattr(route, "methods", None) or ())
            headers["Allow"] = ", ".join(sorted(methods))
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code, headers=headers)

    @app.get("/healthz")
    def healthz() -> dict:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz", responses=errors(503))
    def readyz() -> dict:
        """Readiness: the database, the blob store and the inference side answer (within a second);
        lists which specialists are available and why the others are not."""
        problems, values = health.status()
        down = {part: reason for part, reason in problems.items() if reason is not None}
        if down:
            raise ServiceUnavailable(down)
        return {"status": "ready", "specialists": values["inference"]}

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/jobs/{job_id}", dependencies=[Depends(require_api_key)], responses=errors(401, 404, 422))
    def get_job(job_id: JobId) -> JobOut:
        with session_scope() as session:
            # The sweep runs in the workers: with every worker gone, the reader finds the loss.
            mark_lost_jobs(session, settings.job_lost_after_s, job_id)
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

    def accept(request: Any, http: Request) -> Accepted:
        key = http.headers.get("x-api-key") or (http.client.host if http.client else "")
        if (wait := limiter.retry_after(key)) > 0:
            operations.REJECTED.labels("rate_limited").inc()
            raise HTTPException(
                429, "too many new generations for this key", headers={"Retry-After": str(int(wait) + 1)}
            )
        problems, values = health.status()
        down = {part: reason for part, reason in problems.items() if reason is not None}
        if down:
            operations.REJECTED.labels("dependency_down").inc()
            raise ServiceUnavailable(down)
        wanted = set(request.specialists) | ({"geometry"} if not hasattr(request, "object") else set())
        missing = {
            name: values["inference"][name] for name in sorted(wanted) if values["inference"].get(name)
        }
        if missing:
            operations.REJECTED.labels("specialist_missing").inc()
            raise HTTPException(422, {name: f"not available: {why}" for name, why in missing.items()})
        if runner.in_flight() >= settings.generation_max_queued:
            # Back-pressure, not a fault: the client slows down (429), as with the rate limit.
            operations.REJECTED.labels("full").inc()
            raise HTTPException(
                429,
                f"this replica holds {settings.generation_max_queued} generations; send it again later",
                headers={"Retry-After": RETRY_AFTER_S},
            )
        return Accepted(id=runner.submit(request), status="queued")

    # The endpoints on the hot path are async and send only their blocking part (the database) to
    # a worker thread: FastAPI runs a sync endpoint in one thread hop and then checks the model it
    # returned in a second one.
    async def create_generation(request: Any, http: Request) -> Accepted:
        """Start a generation: geometry, then the parts asked for, one scene per variation. Follow it
        with GET /v1/generations/{id} or its events stream."""
        return await run_in_threadpool(accept, request, http)

    async def apply_to_selection(request: Any, http: Request) -> Accepted:
        """Apply to selection: material, modifiers and/or animation for the object sent. Follow it
        like a generation; its one scene holds the object with the parts to add."""
        return await run_in_threadpool(accept, request, http)

    # The bodies' models are built from the settings, so they are named here, not in the signatures.
    create_generation.__annotations__["request"] = GenerationRequest
    apply_to_selection.__annotations__["request"] = ApplyRequest
    for path, endpoint in (("/v1/generations", create_generation), ("/v1/apply", apply_to_selection)):
        app.post(
            path,
            status_code=202,
            dependencies=[Depends(require_api_key)],
            responses=errors(400, 401, 413, 422, 429, 503),
        )(endpoint)

    def visible(row: Mapping[str, Any]) -> GenerationOut:
        """A generation's state from its VISIBLE columns, without the scenes."""
        return GenerationOut(
            id=row["id"],
            status=row["status"].value,
            progress=row["progress"],
            stage=row["stage"],
            stages=row["stages"] or {},
            message=row["message"],
            error=row["error"],
            latency_ms=row["latency_ms"],
        )

    def read_generation(generation_id: str) -> tuple[GenerationOut, Mapping[str, Any]]:
        """The state, scenes included, and the row it was made of."""
        with session_scope() as session:
            row = session.execute(select(*VISIBLE).where(Generation.id == generation_id)).mappings().first()
        if row is None:
            raise HTTPException(404, f"no generation {generation_id!r}")
        out = visible(row)
        key = row["result_key"] if row["status"] is RunStatus.SUCCEEDED else None
        if key:

            def load(k: str) -> dict:
                if health.status()[0].get("blobs"):  # known down: say so now, not after the retries
                    raise ConnectionError("the readiness probe finds it down")
                return json.loads(blobs().get_bytes(k))

            try:
                out.scenes = results.get(key, load)["scenes"]
            except Exception as exc:  # the store is down or slow: say so, the result is not lost
                raise ServiceUnavailable(
                    f"the result is stored but the blob store does not answer ({type(exc).__name__})"
                ) from exc
        return out, row

    @app.get(
        "/v1/generations/{generation_id}",
        dependencies=[Depends(require_api_key)],
        responses=errors(401, 404, 410, 422, 503),
    )
    async def get_generation(generation_id: GenerationId) -> GenerationOut:
        """Status, stage and progress; the scenes once it succeeded. A cancelled one answers 410."""
        out, row = await run_in_threadpool(read_generation, str(generation_id))
        if row["status"] is RunStatus.CANCELLED:
            raise HTTPException(410, f"generation {generation_id} was cancelled")
        return out

    @app.get(
        "/v1/generations/{generation_id}/events",
        dependencies=[Depends(require_api_key)],
        responses={
            200: {
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
                "description": "Server-sent events: `state` with a GenerationOut (JSON) at every change; "
                "the last one (status succeeded, failed or cancelled) carries the scenes and ends the stream.",
            },
            **errors(401, 404, 410, 422, 503),
        },
        response_class=StreamingResponse,
    )
    async def generation_events(generation_id: GenerationId) -> StreamingResponse:
        """The generation's state as server-sent events, one at every change, until it ends."""
        gid = str(generation_id)
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        told: dict[str, Mapping[str, Any] | None] = {}  # "row": the newest change told of, if any

        def on_change(row: Mapping[str, Any] | None) -> None:
            # A row that ends the generation stays: a stage write that raced a cancel may tell of
            # itself after the cancel did.
            newest = told.get("row")
            if newest is None or newest["status"] not in TERMINAL:
                told["row"] = row
            changed.set()

        def wake(row: Mapping[str, Any] | None) -> None:
            loop.call_soon_threadsafe(on_change, row)

        def as_written(row: Mapping[str, Any] | None) -> GenerationOut | None:
            """The state a write of this replica left, when it needs nothing read: no database
            read and no thread hop between the runner's last write and the final event."""
            if row is None:
                return None
            out = visible(row)
            if row["status"] is RunStatus.SUCCEEDED:
                result = results.peek(row["result_key"])
                if result is None:  # no longer in memory: read through the blob store
                    return None
                out.scenes = result["scenes"]
            return out

        # Listening before the first read: a change between the two wakes the stream at once
        # (after it, the stream slept until its 0.25 s look: the p99 of bench-serving's overhead).
        stop = runner.listen(gid, wake)
        try:
            first, first_row = await run_in_threadpool(read_generation, gid)
            if first_row["status"] is RunStatus.CANCELLED:
                raise HTTPException(410, f"generation {generation_id} was cancelled")
        except BaseException:
            stop()
            raise

        async def stream() -> AsyncIterator[str]:
            out, shown_at = first, first_row["updated_at"]
            last = ""
            try:
                while True:
                    payload = out.model_dump_json()
                    if payload != last:
                        yield f"event: state\ndata: {payload}\n\n"
                        last = payload
                    if out.status in ("succeeded", "failed", "cancelled"):
                        return
                    # This replica tells of its own changes; another replica's are read every 0.25 s.
                    timeout = 15.0 if runner.holds(gid) else 0.25
                    try:
                        await asyncio.wait_for(changed.wait(), timeout)
                    except TimeoutError:
                        yield ": waiting\n\n"
                    changed.clear()  # before reading: a change from now on wakes the next wait
                    row = told.pop("row", None)
                    if row is not None and row["status"] not in TERMINAL and row["updated_at"] < shown_at:
                        continue  # older than the state shown (it raced the first read): a newer follows
                    written = as_written(row)
                    if written is None:
                        written, row = await run_in_threadpool(read_generation, gid)
                    out, shown_at = written, row["updated_at"]
            finally:
                stop()

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"}
        )

    @app.delete(
        "/v1/generations/{generation_id}",
        status_code=202,
        dependencies=[Depends(require_api_key)],
        responses=errors(401, 404, 422),
    )
    def cancel_generation(generation_id: GenerationId) -> Accepted:
        """Cancel: a queued or running generation stops at its next stage; later reads answer 410."""
        status = runner.cancel(str(generation_id))
        if status is None:
            raise HTTPException(404, f"no generation {generation_id}")
        return Accepted(id=str(generation_id), status=status.value)

    return app
