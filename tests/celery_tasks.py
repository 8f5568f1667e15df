"""Tasks used only by the queue tests; a test worker loads them with ``-I tests.celery_tasks``."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from services.trainer.tasks import claim_run, finish_run
from shared.blobs import get_blob_store
from shared.db import session_scope
from shared.db.models import Job
from shared.queue import TrackedTask, TransientError, app
from tests.asset_support import local_provenance, register_asset


@app.task(name="scrape.test_register_after_release", base=TrackedTask, bind=True)
def register_after_release(self, payload: str, control_dir: str) -> dict:
    """Stores a blob, then waits for the test's go-ahead before recording the asset row.

    Killing the worker while it waits leaves the effect half done (blob stored, no row): the
    redelivered attempt must finish it without duplicating anything.
    """
    control = Path(control_dir)
    attempt = attempt_number(self)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(payload)
    store = get_blob_store()
    store.put_file(f.name)
    (control / f"started-{attempt}").touch()
    wait_for_release(control)
    with session_scope() as session:
        asset, created = register_asset(session, store, f.name, "txt", local_provenance(f.name, "CC0-1.0"))
        sha = asset.sha256
    Path(f.name).unlink()
    (control / f"finished-{attempt}").touch()
    return {"sha256": sha, "created": created}


def attempt_number(task: TrackedTask) -> int:
    with session_scope() as session:
        return session.get(Job, task.request.id).attempts


def wait_for_release(control: Path) -> None:
    deadline = time.monotonic() + 120
    while not (control / "release").exists():
        if time.monotonic() > deadline:
            raise TimeoutError("the test never released the task")
        time.sleep(0.1)


@app.task(name="train.test_run_after_release", base=TrackedTask, bind=True)
def run_after_release(self, control_dir: str) -> dict:
    """The bookkeeping of train.geometry around a pause instead of minutes of training: claims the
    run's row, waits for the test's go-ahead, then stores a checkpoint and finishes the row."""
    control = Path(control_dir)
    run_dir = control / "run"
    run_id, finished = claim_run(
        "test", run_dir, preset="tiny", dataset=None, code_version=None, config={"job": self.request.id}
    )
    if finished is not None:
        return finished
    attempt = attempt_number(self)
    (control / f"started-{attempt}").touch()
    wait_for_release(control)
    run_dir.mkdir(exist_ok=True)
    (run_dir / "checkpoint.pt").write_text(f"weights of the run in {run_dir}")
    metrics = {"steps": 1}
    return {"run_dir": str(run_dir), **finish_run(run_id, run_dir / "checkpoint.pt", metrics), **metrics}


@app.task(name="scrape.test_flaky", base=TrackedTask, bind=True)
def flaky(self, fail_times: int) -> int:
    """Fails with a transient error ``fail_times`` times, then succeeds."""
    self.progress(0.5, "half way")
    if self.request.retries < fail_times:
        raise TransientError(f"server away (try {self.request.retries + 1})")
    return self.request.retries


@app.task(name="scrape.test_broken", base=TrackedTask, bind=True)
def broken(self) -> None:
    raise ValueError("this asset is not a Blender file")
