"""Celery over real Redis with a real worker process: routing, job records, retries, and a worker
killed with SIGKILL mid-task whose task is redelivered and takes effect exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kombu import pools
from sqlalchemy import func, select

from shared import queue
from shared.db import ensure_schema, session_scope
from shared.db.models import Asset, Job, JobState
from shared.settings import get_settings
from tests.conftest import REPO


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def job(job_id: str) -> Job | None:
    with session_scope() as session:
        return session.get(Job, job_id)


@pytest.fixture
def distributed(
    postgres_url: str, redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict]:
    """Production-shaped settings (PostgreSQL, Redis) for this process and for worker processes."""
    env = {
        "BMT_DATABASE_URL": postgres_url,
        "BMT_QUEUE_URL": redis_url,
        "BMT_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "BMT_VISIBILITY_TIMEOUT_S": "3",  # redeliver quickly after the kill
        "BMT_REDELIVERY_SWEEP_S": "1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    ensure_schema()
    keys = (
        "broker_url",
        "result_backend",
        "task_always_eager",
        "broker_transport_options",
        "result_backend_transport_options",
    )
    previous = {key: queue.app.conf[key] for key in keys}
    fresh = queue.make_app(get_settings()).conf
    queue.app.conf.update({key: fresh[key] for key in keys})
    reconnect()
    yield env
    queue.app.conf.update(previous)
    reconnect()


def reconnect() -> None:
    """Drop the app's cached connections and producers so the next send uses the new broker URL.

    kombu keeps producer pools in a process-wide registry keyed by connection, so that goes too.
    """
    pools.reset()
    queue.app._pool = None
    queue.app.amqp._producer_pool = None


def start_worker(env: dict, queues: str = "scrape") -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "shared.queue",
            "worker",
            "-Q",
            queues,
            "-c",
            "1",
            "-I",
            "tests.celery_tasks",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"test-{os.getpid()}-{time.monotonic_ns()}@%h",
            "--loglevel",
            "WARNING",
        ],
        cwd=REPO,
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(os.environ.get("BMT_TEST_WORKER_LOG", os.devnull), "ab"),
    )


def stop(worker: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, sig)
    worker.wait(timeout=30)


def test_routing_by_task_name():
    assert queue.route_by_name("extract.asset", (), {}, {}) == {"queue": "extract"}
    assert queue.route_by_name("train.geometry", (), {}, {}) == {"queue": "train"}
    assert queue.route_by_name("misc", (), {}, {}) is None


def test_embedded_mode_runs_in_process_and_records_the_job():
    ensure_schema()
    import tests.celery_tasks  # noqa: F401  registers the test tasks

    job_id = queue.submit("scrape.test_flaky", 0)
    record = job(job_id)
    assert record.state is JobState.SUCCEEDED and record.progress == 1.0 and record.attempts == 1
    with pytest.raises(ValueError, match="not a Blender file"):
        queue.submit("scrape.test_broken")
    with session_scope() as session:
        failed = session.scalars(select(Job).where(Job.kind == "scrape.test_broken")).one()
    assert failed.state is JobState.FAILED and "ValueError: this asset is not a Blender file" in failed.error
    with pytest.raises(LookupError, match="no task named 'scrape.nothing'"):
        queue.submit("scrape.nothing")


def test_worker_retries_transient_errors_and_records_failures(distributed: dict):
    worker = start_worker(distributed)
    try:
        flaky_id = queue.submit("scrape.test_flaky", 2)
        broken_id = queue.submit("scrape.test_broken")
        wait_for(lambda: job(flaky_id).state is JobState.SUCCEEDED, 120, "the flaky task to succeed")
        wait_for(lambda: job(broken_id).state is JobState.FAILED, 120, "the broken task to fail")
    finally:
        stop(worker)
    flaky_job = job(flaky_id)
    assert flaky_job.attempts == 3 and flaky_job.result == {"value": 2}
    assert "ValueError: this asset is not a Blender file" in job(broken_id).error


def test_worker_killed_mid_task_redelivers_and_the_effect_happens_once(distributed: dict, tmp_path: Path):
    control = tmp_path / "control"
    control.mkdir()
    first = start_worker(distributed)
    job_id = queue.submit("scrape.test_register_after_release", "a chair, CC0", str(control))
    try:
        wait_for(lambda: (control / "started-1").exists(), 60, "the first attempt to start")
        # Half the effect is done (the blob is stored); kill the whole worker, parent and child.
        stop(first, signal.SIGKILL)
        assert job(job_id).state is JobState.RUNNING
        (control / "release").touch()
        second = start_worker(distributed)
        try:
            wait_for(lambda: job(job_id).state is JobState.SUCCEEDED, 90, "the redelivered task to finish")
        finally:
            stop(second)
    finally:
        stop(first, signal.SIGKILL)
    record = job(job_id)
    assert record.attempts == 2, "the task was not redelivered"
    assert not (control / "finished-1").exists() and (control / "finished-2").exists()
    assert record.result["created"] is True
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Asset)) == 1
