"""Celery over real Redis with a real worker process: routing, job records, retries, a worker
killed with SIGKILL mid-task whose task is redelivered and takes effect exactly once, the job of a
dead worker marked worker_lost by the others, and duplicate deliveries that change nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from kombu import pools
from sqlalchemy import func, select

from services.gateway.app import create_app
from shared import queue
from shared.blobs import get_blob_store
from shared.db import ensure_schema, session_scope
from shared.db.models import Asset, Extraction, ExtractionStatus, Job, JobState, RunStatus, TrainingRun
from shared.settings import Settings, get_settings
from tests.conftest import free_port
from tools.servers import start_celery_worker, stop_process_group


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
    postgres_url: str,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> Iterator[dict]:
    """Production-shaped settings (PostgreSQL, Redis) for this process and for worker processes;
    a test changes some with ``@pytest.mark.parametrize("distributed", [{...}], indirect=True)``."""
    env = {
        "BMT_DATABASE_URL": postgres_url,
        "BMT_QUEUE_URL": redis_url,
        "BMT_BLOB_URL": f"file://{tmp_path / 'blobs'}",
        "BMT_VISIBILITY_TIMEOUT_S": "6",  # redeliver quickly after the kill
        "BMT_TASK_TIME_LIMIT_S": "5",  # the settings refuse a visibility timeout below the limit
        "BMT_TASK_SOFT_TIME_LIMIT_S": "4",
        "BMT_REDELIVERY_SWEEP_S": "1",
        "BMT_JOB_HEARTBEAT_S": "0.5",
        "BMT_JOB_LOST_AFTER_S": "2",
        **getattr(request, "param", {}),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    ensure_schema()
    previous = {key: queue.app.conf[key] for key in BROKER_KEYS}
    use_settings(get_settings())
    yield env
    queue.app.conf.update(previous)
    reconnect()


BROKER_KEYS = (
    "broker_url",
    "result_backend",
    "task_always_eager",
    "broker_transport_options",
    "result_backend_transport_options",
)


def use_settings(settings: Settings) -> None:
    """Point the app (broker, result backend, eager or not) where ``settings`` say."""
    fresh = queue.make_app(settings).conf
    queue.app.conf.update({key: fresh[key] for key in BROKER_KEYS})
    reconnect()


def reconnect() -> None:
    """Drop the app's cached connections and producers so the next send uses the new broker URL.

    kombu keeps producer pools in a process-wide registry keyed by connection, so that goes too.
    """
    pools.reset()
    queue.app._pool = None
    queue.app.amqp._producer_pool = None


def start_worker(env: dict, queues: str = "scrape") -> subprocess.Popen:
    return start_celery_worker(env, queues, "tests.celery_tasks", os.environ.get("BMT_TEST_WORKER_LOG"))


def stop(worker: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    stop_process_group(worker, sig)


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


def test_settings_refuse_a_visibility_timeout_within_the_task_time_limit():
    with pytest.raises(
        ValueError, match=r"visibility_timeout_s \(600\) must be above task_time_limit_s \(3600\)"
    ):
        Settings(visibility_timeout_s=600)
    with pytest.raises(ValueError, match="must be above task_time_limit_s"):
        Settings(visibility_timeout_s=3600, task_time_limit_s=3600, task_soft_time_limit_s=3000)
    with pytest.raises(ValueError, match=r"job_lost_after_s \(5.0\) must be above job_heartbeat_s"):
        Settings(job_lost_after_s=5, job_heartbeat_s=10)
    assert Settings(visibility_timeout_s=3601).visibility_timeout_s == 3601


def test_the_gateway_says_a_job_is_lost_when_no_worker_is_left_to_notice(distributed: dict, tmp_path: Path):
    """The workers' sweep cannot run with every worker dead: reading the job says it."""
    control = tmp_path / "control"
    control.mkdir()
    only = start_worker(distributed, "train")
    job_id = queue.submit("train.test_run_after_release", str(control))
    try:
        wait_for(lambda: (control / "started-1").exists(), 60, "the task to start")
    finally:
        stop(only, signal.SIGKILL)
    client = TestClient(create_app())
    assert client.get(f"/v1/jobs/{job_id}").json()["state"] == "running"  # heartbeats are recent
    body = wait_for(
        lambda: (body := client.get(f"/v1/jobs/{job_id}").json())["state"] == "worker_lost" and body,
        15,
        "the gateway to report the dead worker",
    )
    assert body["error"].startswith("WorkerLost: no heartbeat since")


def test_a_dead_workers_job_is_marked_lost_and_its_redelivery_reuses_the_run_row(
    distributed: dict, tmp_path: Path
):
    """train.geometry's run bookkeeping (claim_run / finish_run) in a worker killed mid-run; a
    second worker on another queue notices, a third takes the redelivered task over."""
    control = tmp_path / "control"
    control.mkdir()
    first = start_worker(distributed, "train")
    watcher = start_worker(distributed, "scrape")  # any live worker marks lost jobs
    job_id = queue.submit("train.test_run_after_release", str(control))
    workers = [first, watcher]
    try:
        wait_for(lambda: (control / "started-1").exists(), 60, "the first attempt to start")
        stop(first, signal.SIGKILL)
        assert job(job_id).state is JobState.RUNNING
        lost = wait_for(
            lambda: (record := job(job_id)).state is JobState.WORKER_LOST and record,
            15,
            "the job of the killed worker to be marked worker_lost",
        )
        assert lost.error.startswith("WorkerLost: no heartbeat since")
        (control / "release").touch()
        workers.append(start_worker(distributed, "train"))
        wait_for(lambda: job(job_id).state is JobState.SUCCEEDED, 90, "the redelivered task to finish")
        result = job(job_id).result
        with session_scope() as session:
            runs = session.scalars(select(TrainingRun)).all()
            assert len(runs) == 1, "the redelivery left the dead worker's run row behind"
            assert runs[0].status is RunStatus.SUCCEEDED and runs[0].id == result["training_run_id"]
            assert runs[0].checkpoint_key == result["checkpoint_key"] is not None
        assert job(job_id).attempts == 2

        # The same delivery again (as Redis does when a visibility timeout passes), then a fresh job
        # for the same run behind it on the same one-slot queue: the duplicate changes nothing.
        queue.app.send_task("train.test_run_after_release", (str(control),), task_id=job_id)
        again = queue.submit("train.test_run_after_release", str(control))
        wait_for(lambda: job(again).state is JobState.SUCCEEDED, 60, "the job behind the duplicate")
    finally:
        for worker in workers:
            stop(worker, signal.SIGKILL)
    record = job(job_id)
    assert record.result == result and record.attempts == 2
    assert job(again).result == result
    assert not (control / "started-3").exists()
    with session_scope() as session:
        assert session.scalar(select(func.count()).select_from(TrainingRun)) == 1


# Starting bpy and extracting take more than the few seconds the kill tests allow a task.
@pytest.mark.parametrize(
    "distributed",
    [
        {
            "BMT_TASK_TIME_LIMIT_S": "300",
            "BMT_TASK_SOFT_TIME_LIMIT_S": "290",
            "BMT_VISIBILITY_TIMEOUT_S": "310",
        }
    ],
    indirect=True,
)
def test_an_asset_registered_while_the_broker_is_down_still_reaches_extraction(distributed: dict):
    from services.scraper.ingest import hand_to_extract
    from tests.asset_support import local_provenance, register_asset
    from tests.extract_support import CORPUS

    wrench = CORPUS / "blend" / "zeyu_free_blender_models" / "blend_wrench.blend"
    with session_scope() as session:
        asset, _ = register_asset(
            session, get_blob_store(), wrench, "blend", local_provenance(wrench, "CC0-1.0")
        )
        sha = asset.sha256
    down = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    use_settings(get_settings().model_copy(update={"queue_url": down, "result_url": down}))
    hand_to_extract([sha])  # the broker outage costs a log line, not the asset
    with session_scope() as session:
        (unsent,) = session.scalars(select(Job).where(Job.kind == "extract.asset")).all()
        assert unsent.state is JobState.UNSENT and unsent.args["args"] == [sha]
        job_id = unsent.id
    use_settings(get_settings())
    with session_scope() as session:
        assert queue.resend_unsent_jobs(session, older_than_s=0) == [job_id]
    assert job(job_id).state is JobState.QUEUED
    worker = start_worker(distributed, "extract")
    try:
        wait_for(lambda: job(job_id).state is JobState.SUCCEEDED, 120, "the extraction to finish")
    finally:
        stop(worker)
    with session_scope() as session:
        extraction = session.scalars(select(Extraction)).one()
        assert extraction.asset.sha256 == sha and extraction.status is ExtractionStatus.OK


def test_a_lost_job_whose_message_never_comes_back_is_sent_again(distributed: dict):
    """A task cancelled while Redis restarted can lose its message (bench-faults found one in 16):
    past the visibility timeout a worker's sweep sends the lost job again."""
    job_id = "lost-" + os.urandom(6).hex()
    with session_scope() as session:
        queue._new_job(session, job_id, "scrape.test_flaky", (0,), {}, JobState.WORKER_LOST)
    with session_scope() as session:
        assert queue.resend_unsent_jobs(session, older_than_s=0) == []  # not lost long enough
        assert queue.resend_unsent_jobs(session, older_than_s=0, lost_for_s=0) == [job_id]
    worker = start_worker(distributed)
    try:
        wait_for(lambda: job(job_id).state is JobState.SUCCEEDED, 60, "the job sent again to finish")
    finally:
        stop(worker)
