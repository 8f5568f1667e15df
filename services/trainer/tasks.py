"""Celery tasks of the train queue. torch is imported inside the task, so any worker can load this.

Every ``train.NAME`` task is idempotent: the run folder is keyed by the hash of what determines
the run (preset, dataset, steps, code version), so a redelivered task resumes the same run from its last
checkpoint in the same training_runs row, and a finished run returns its recorded result (row id
and checkpoint key included) without training again.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from sqlalchemy import select, text

from shared.db import session_scope
from shared.db.models import Dataset, RunStatus, TrainingRun, utcnow
from shared.queue import TrackedTask, app
from shared.settings import get_settings


def run_key(preset: str, dataset: str | None, max_steps: int, commit: str | None) -> str:
    text = json.dumps(
        {"preset": preset, "dataset": dataset, "max_steps": max_steps, "code": commit}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_run(
    specialist: str,
    run_dir: Path,
    *,
    preset: str,
    dataset: str | None,
    code_version: str | None,
    config: dict,
) -> tuple[int, dict | None]:
    """(id of this run's training_runs row, its recorded result if the run already succeeded).

    One row per run folder: a redelivered or repeated task takes over the row a dead worker left
    running (or a failed attempt left failed) instead of adding another. On PostgreSQL an advisory
    lock on the folder makes the look-up and the insert one step for concurrent copies.
    """
    with session_scope() as session:
        if session.get_bind().dialect.name == "postgresql":
            lock = int.from_bytes(hashlib.sha256(str(run_dir).encode()).digest()[:8], "big", signed=True)
            session.execute(text("SELECT pg_advisory_xact_lock(:lock)"), {"lock": lock})
        run = session.scalars(
            select(TrainingRun)
            .where(
                TrainingRun.specialist == specialist,
                TrainingRun.config["run_dir"].as_string() == str(run_dir),
            )
            .order_by(TrainingRun.id)
        ).first()
        if run is not None and run.status is RunStatus.SUCCEEDED:
            return run.id, {
                "run_dir": str(run_dir),
                "training_run_id": run.id,
                "checkpoint_key": run.checkpoint_key,
                **run.metrics,
            }
        dataset_row = (
            session.query(Dataset).filter_by(manifest_key=dataset).one_or_none() if dataset else None
        )
        if run is None:
            run = TrainingRun(specialist=specialist, preset=preset)
            session.add(run)
        run.dataset_id = dataset_row.id if dataset_row else None
        run.config = {**config, "run_dir": str(run_dir)}
        run.code_version = code_version
        run.status, run.started_at, run.finished_at = RunStatus.RUNNING, utcnow(), None
        session.flush()
        return run.id, None


def finish_run(run_id: int, checkpoint: Path | None, metrics: dict | None) -> dict:
    """Records the run as succeeded (checkpoint stored in the blob store) or, without a
    checkpoint, failed; the task's result fields."""
    checkpoint_key = None
    if checkpoint is not None:
        from shared.blobs import get_blob_store

        checkpoint_key = get_blob_store().put_file(checkpoint)
    with session_scope() as session:
        run = session.get(TrainingRun, run_id)
        assert run is not None, f"training run {run_id} vanished"
        run.status = RunStatus.SUCCEEDED if checkpoint_key else RunStatus.FAILED
        run.finished_at = utcnow()
        if checkpoint_key:
            run.metrics, run.checkpoint_key = metrics or {}, checkpoint_key
    return {"training_run_id": run_id, "checkpoint_key": checkpoint_key}


@app.task(name="train.geometry", base=TrackedTask, bind=True)
def train_geometry(
    self, preset: str = "tiny", dataset: str | None = None, max_steps: int = 3000, max_minutes: float = 20.0
) -> dict:
    from services.trainer.geometry import TrainConfig, train

    def run(run_dir: Path, resume: bool) -> dict:
        config = TrainConfig(
            preset=preset,
            dataset=dataset,
            run_dir=str(run_dir),
            max_steps=max_steps,
            max_minutes=max_minutes,
            resume=resume,
        )
        return train(config, progress=self.progress)

    return tracked_training(self, "geometry", preset, dataset, max_steps, max_minutes, run)


@app.task(name="train.material", base=TrackedTask, bind=True)
def train_material(
    self, preset: str = "tiny", dataset: str = "full", max_steps: int = 1500, max_minutes: float = 30.0
) -> dict:
    from services.trainer.material import TrainConfig, train

    def run(run_dir: Path, resume: bool) -> dict:
        config = TrainConfig(
            preset=preset,
            dataset=dataset,
            run_dir=str(run_dir),
            max_steps=max_steps,
            max_minutes=max_minutes,
            resume=resume,
        )
        return train(config, progress=self.progress)

    return tracked_training(self, "material", preset, dataset, max_steps, max_minutes, run)


def tracked_training(
    task, specialist: str, preset: str, dataset: str | None, max_steps: int, max_minutes: float, run
) -> dict:
    """A training run keyed by what determines it, recorded as a TrainingRun row; ``run(run_dir,
    resume)`` trains and returns the run record."""
    from services.trainer.geometry import code_version

    commit = code_version()["commit"]
    key = run_key(preset, dataset, max_steps, commit)
    run_dir = Path(get_settings().data_dir) / "runs" / f"{specialist}-{preset}-{key}"
    config = {"max_steps": max_steps, "max_minutes": max_minutes, "job": task.request.id}
    run_id, finished = claim_run(
        specialist, run_dir, preset=preset, dataset=dataset, code_version=commit, config=config
    )
    if finished is not None:
        return finished
    try:
        record = run(run_dir, (run_dir / "checkpoint.pt").is_file())
    except BaseException:
        finish_run(run_id, None, None)
        raise
    recorded = finish_run(run_id, run_dir / "checkpoint.pt", record["result"])
    return {"run_dir": str(run_dir), **recorded, **record["result"]}
