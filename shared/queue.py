"""The Celery app, its queues, and the job bookkeeping every task shares.

One queue per worker kind; a task's queue is the prefix of its name (``extract.asset`` runs on
``extract``). Run a worker with ``celery -A shared.queue worker -Q extract``. With the embedded
default (``BMT_QUEUE_URL=memory://``) tasks run in the calling process instead.

Delivery is at-least-once: tasks are acknowledged after they finish (``acks_late``) and a task
whose worker died is redelivered, so every task must be idempotent (keyed by content hash). A job
that succeeded keeps its result: a later delivery of the same task id answers with the recorded
result instead of running again. A running task beats a heartbeat into its job row; every worker
marks the jobs whose heartbeat stopped ``worker_lost``, so a dead worker shows within
``job_lost_after_s`` rather than at redelivery (the visibility timeout, an hour or more).

The jobs table is also the outbox: ``submit`` records a job ``unsent`` before handing it to the
broker, and a job the broker did not take (it was down) stays so until a worker's sweep sends it.
"""

from __future__ import annotations

import importlib
import logging
import threading
import uuid
from datetime import timedelta
from typing import Any

from celery import Celery, Task, signals
from kombu.exceptions import OperationalError
from sqlalchemy import create_engine, select, update
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

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

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        recorded = _succeeded_result(self.request.id)
        if recorded is not None:
            log.warning(
                "job %s already succeeded: this delivery returns its recorded result", self.request.id
            )
            return recorded
        return super().__call__(*args, **kwargs)

    def before_start(self, task_id: str, args: Any, kwargs: Any) -> None:
        with session_scope() as session:
            job = session.get(Job, task_id) or _new_job(session, task_id, self.name, args, kwargs)
            if job.state is JobState.SUCCEEDED:
                return  # a duplicate delivery: __call__ answers with the recorded result
            job.state = JobState.RUNNING
            job.attempts += 1
            job.error = None
        self.request.heartbeat = Heartbeat(task_id, get_settings().job_heartbeat_s)
        self.request.heartbeat.start()

    def after_return(self, *args: Any, **kwargs: Any) -> None:
        heartbeat = getattr(self.request, "heartbeat", None)
        if heartbeat is not None:
            heartbeat.stop()

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
            if job is None or job.state is JobState.SUCCEEDED:
                return  # a finished result is final: a late or duplicate copy never replaces it
            job.state = state
            job.error = error
            if state is JobState.SUCCEEDED:
                job.progress = 1.0
                job.result = result
            job.updated_at = utcnow()


def _succeeded_result(job_id: str | None) -> dict | None:
    if job_id is None:  # called as a plain function, not as a task
        return None
    with session_scope() as session:
        job = session.get(Job, job_id)
        return job.result if job is not None and job.state is JobState.SUCCEEDED else None


class Heartbeat:
    """Marks a running job alive every ``interval`` seconds until stopped. A job the other workers
    marked worker_lost while this one was merely slow to beat is set running again."""

    def __init__(self, job_id: str, interval: float) -> None:
        self.job_id, self.interval = job_id, interval
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{job_id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()
        self._thread.join(timeout=self.interval + 5)

    def _run(self) -> None:
        while not self._stopped.wait(self.interval):
            try:
                with session_scope() as session:
                    session.execute(
                        update(Job)
                        .where(Job.id == self.job_id, Job.state.in_((JobState.RUNNING, JobState.WORKER_LOST)))
                        .values(state=JobState.RUNNING, error=None, updated_at=utcnow())
                    )
            except Exception:  # the database away for a moment: the next beat tries again
                log.warning("heartbeat of job %s failed", self.job_id, exc_info=True)


def mark_lost_jobs(session: Session, lost_after_s: float, job_id: str | None = None) -> list[str]:
    """Marks worker_lost every running job (or only ``job_id``) without a heartbeat for
    ``lost_after_s``; their ids."""
    cutoff = utcnow() - timedelta(seconds=lost_after_s)
    query = select(Job).where(Job.state == JobState.RUNNING, Job.updated_at < cutoff)
    if job_id is not None:
        query = query.where(Job.id == job_id)
    lost = session.scalars(query.with_for_update()).all()
    for job in lost:
        job.state = JobState.WORKER_LOST
        job.error = (
            f"WorkerLost: no heartbeat since {job.updated_at:%Y-%m-%d %H:%M:%S} UTC; the worker "
            "running it died or lost the database, and the task runs again once redelivered"
        )
    return [job.id for job in lost]


def resend_unsent_jobs(session: Session, older_than_s: float, lost_for_s: float | None = None) -> list[str]:
    """Hands the broker every job recorded unsent at least ``older_than_s`` ago (younger ones may
    be in the middle of their own submit) and, with ``lost_for_s``, every job marked worker_lost
    that long ago and never redelivered (a task cancelled while Redis restarted can lose its
    message; tasks are idempotent, so a late redelivery as well only repeats finished work);
    their ids. Stops at the first the broker refuses."""
    now = utcnow()
    waiting = Job.state == JobState.UNSENT
    waiting &= Job.updated_at <= now - timedelta(seconds=older_than_s)
    if lost_for_s is not None:
        waiting |= (Job.state == JobState.WORKER_LOST) & (
            Job.updated_at <= now - timedelta(seconds=lost_for_s)
        )
    jobs = session.scalars(select(Job).where(waiting).order_by(Job.created_at)).all()
    sent = []
    for job in jobs:
        if not _send(job.id, job.kind, job.args.get("args", ()), job.args.get("kwargs", {})):
            break
        _mark_sent(session, job.id)
        session.commit()
        sent.append(job.id)
    return sent


class JobSweeper:
    """A worker's thread that, every heartbeat interval, marks lost jobs and sends unsent ones. It
    runs in the worker's main process, which forks pool children: its engine keeps no pooled
    connection for them to inherit."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopped.set()

    def _run(self) -> None:
        engine = create_engine(self.settings.database_url, poolclass=NullPool)
        while not self._stopped.wait(self.settings.job_heartbeat_s):
            try:
                with Session(engine) as session, session.begin():
                    for job_id in mark_lost_jobs(session, self.settings.job_lost_after_s):
                        log.warning("job %s: its worker stopped sending heartbeats", job_id)
                with Session(engine) as session:
                    # A lost job's own message comes back after the visibility timeout; one that
                    # has not by then, and a sweep later, is sent again.
                    lost_for = self.settings.visibility_timeout_s + 2 * self.settings.redelivery_sweep_s
                    for job_id in resend_unsent_jobs(session, self.settings.job_lost_after_s, lost_for):
                        log.info("job %s: sent to the broker from the outbox", job_id)
            except Exception:
                log.warning("sweeping the jobs table failed", exc_info=True)


_sweeper: JobSweeper | None = None


@signals.worker_ready.connect
def _start_sweeper(**_: Any) -> None:
    global _sweeper
    _sweeper = JobSweeper(get_settings())
    _sweeper.start()


@signals.worker_shutdown.connect
def _stop_sweeper(**_: Any) -> None:
    if _sweeper is not None:
        _sweeper.stop()


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _new_job(
    session: Any, job_id: str, name: str, args: Any, kwargs: Any, state: JobState = JobState.QUEUED
) -> Job:
    job = Job(
        id=job_id,
        kind=name,
        state=state,
        args={"args": list(args or ()), "kwargs": dict(kwargs or {})},
    )
    session.add(job)
    session.flush()
    return job


def submit(name: str, *args: Any, **kwargs: Any) -> str:
    """Queue task ``name`` and return its job id (the Celery task id).

    Embedded mode runs it here and now, so the task's module is imported; with Redis only the
    name travels, so a producer never needs the worker's dependencies (bpy, torch). A job the
    broker does not take (it is down) is kept unsent, and sent later by a worker's sweep.
    """
    job_id = str(uuid.uuid4())
    eager = app.conf.task_always_eager
    with session_scope() as session:
        _new_job(session, job_id, name, args, kwargs, JobState.QUEUED if eager else JobState.UNSENT)
    if eager:
        for module in TASK_MODULES:
            importlib.import_module(module)
        if name not in app.tasks:
            raise LookupError(f"no task named {name!r}; known: {sorted(t for t in app.tasks if '.' in t)}")
        # apply() records the failure in the job row first; get() then re-raises it here.
        app.tasks[name].apply(args, kwargs, task_id=job_id).get()
    elif _send(job_id, name, args, kwargs):
        with session_scope() as session:
            _mark_sent(session, job_id)
    return job_id


def _send(job_id: str, name: str, args: Any, kwargs: Any) -> bool:
    """Hands an unsent job to the broker; False (the job stays unsent) when the broker is away."""
    try:
        app.send_task(name, args, kwargs, task_id=job_id)
    except (OperationalError, ConnectionError, TimeoutError) as exc:
        log.warning("job %s (%s) kept unsent, the broker is away: %s", job_id, name, exc)
        return False
    return True


def _mark_sent(session: Session, job_id: str) -> None:
    # Only while unsent or lost: a worker may have started the job already.
    session.execute(
        update(Job)
        .where(Job.id == job_id, Job.state.in_((JobState.UNSENT, JobState.WORKER_LOST)))
        .values(state=JobState.QUEUED)
    )
