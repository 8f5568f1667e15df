"""The Celery app, its queues, and the job bookkeeping every task shares.

One queue per worker kind; a task's queue is the prefix of its name (``extract.asset`` runs on
``extract``). Run a worker with ``celery -A shared.queue worker -Q extract``. With the embedded
default (``BMT_QUEUE_URL=memory://``) tasks run in the calling process instead.

Delivery is at-least-once: tasks are acknowledged after they finish (``acks_late``) and a task
whose worker died is redelivered, so every task must be idempotent (keyed by content hash).
"""

from __future__ import annotations

import importlib
import logging
import uuid
from typing import Any

from celery import Celery, Task

from shared.db import session_scope
from shared.db.models import Job, JobState, utcnow
from shared.settings import Settings, get_settings

log = logging.getLogger(__name__)

QUEUES = ("scrape", "extract", "label", "dataset", "train")

# Modules that define tasks, imported by every worker. They must import heavy libraries (bpy,
# torch) inside the task functions, so that any worker can load every module.
TASK_MODULES: tuple[str, ...] = (
    "services.scraper.tasks",
    "blender_worker.tasks",
    "services.labeler.tasks",
    "services.trainer.tasks",
)


class TransientError(Exception):
    """A failure worth retrying later (a server away, a rate limit); tasks retry with backoff."""


def route_by_name(
    name: str, args: Any, kwargs: Any, options: Any, task: Any = None, **kw: Any
) -> dict | None:
    queue = name.split(".", 1)[0]
    return {"queue": queue} if queue in QUEUES else None


def make_app(settings: Settings) -> Celery:
    app = Celery("bmt", broker=settings.queue_url, backend=settings.result_url or None)
    app.conf.update(
        task_routes=(route_by_name,),
        task_default_queue="default",
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # a worker holds one unacknowledged task, not a batch
        worker_cancel_long_running_tasks_on_connection_loss=True,
        task_time_limit=settings.task_time_limit_s,
        task_soft_time_limit=settings.task_soft_time_limit_s,
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": settings.redelivery_sweep_s,
            "unacked_restore_throttle": 1,
            "global_keyprefix": settings.queue_key_prefix,
        },
        result_backend_transport_options={"global_keyprefix": settings.queue_key_prefix},
        broker_connection_retry_on_startup=True,
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        result_expires=7 * 24 * 3600,
        task_always_eager=settings.embedded_queue,
        imports=TASK_MODULES,
    )
    return app


app = make_app(get_settings())


class TrackedTask(Task):
    """Base for every task: records state, attempts, progress and errors in the jobs table."""

    autoretry_for = (TransientError, ConnectionError, TimeoutError)
    retry_backoff = True
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = get_settings().task_max_retries

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        with session_scope() as session:
            job = session.get(Job, task_id) or _new_job(session, task_id, self.name, args, kwargs)
            job.state = JobState.RUNNING
            job.attempts += 1
            job.error = None

    def progress(self, fraction: float, message: str = "") -> None:
        """Record how far the task is (0..1), for the jobs API and progress bars."""
        task_id = self.request.id
        with session_scope() as session:
            job = session.get(Job, task_id)
            if job is not None:
                job.progress = min(1.0, max(0.0, float(fraction)))
                job.message = message or job.message

    def on_success(self, retval: Any, task_id: str, args: Any, kwargs: Any) -> None:
        self._finish(
            task_id, JobState.SUCCEEDED, result=retval if isinstance(retval, dict) else {"value": retval}
        )

    def on_retry(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self._finish(task_id, JobState.RETRYING, error=_describe(exc))

    def on_failure(self, exc: BaseException, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        self._finish(task_id, JobState.FAILED, error=_describe(exc))

    def _finish(
        self, task_id: str, state: JobState, *, result: dict | None = None, error: str | None = None
    ) -> None:
        with session_scope() as session:
            job = session.get(Job, task_id)
            if job is None:
                return
            job.state = state
            job.error = error
            if state is JobState.SUCCEEDED:
                job.progress = 1.0
                job.result = result
            job.updated_at = utcnow()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _new_job(session: Any, job_id: str, name: str, args: Any, kwargs: Any) -> Job:
    job = Job(
        id=job_id,
        kind=name,
        state=JobState.QUEUED,
        args={"args": list(args or ()), "kwargs": dict(kwargs or {})},
    )
    session.add(job)
    session.flush()
    return job


def submit(name: str, *args: Any, **kwargs: Any) -> str:
    """Queue task ``name`` and return its job id (the Celery task id).

    Embedded mode runs it here and now, so the task's module is imported; with Redis only the
    name travels, so a producer never needs the worker's dependencies (bpy, torch).
    """
    job_id = str(uuid.uuid4())
    with session_scope() as session:
        _new_job(session, job_id, name, args, kwargs)
    if app.conf.task_always_eager:
        for module in TASK_MODULES:
            importlib.import_module(module)
        if name not in app.tasks:
            raise LookupError(f"no task named {name!r}; known: {sorted(t for t in app.tasks if '.' in t)}")
        # apply() records the failure in the job row first; get() then re-raises it here.
        app.tasks[name].apply(args, kwargs, task_id=job_id).get()
    else:
        app.send_task(name, args, kwargs, task_id=job_id)
    return job_id
