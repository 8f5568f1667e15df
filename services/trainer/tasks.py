"""Celery tasks of the train queue. torch is imported inside the task, so any worker can load this.

``train.geometry`` and ``train.animation`` are idempotent: the run folder is keyed by the hash of
what determines the run (specialist, preset, dataset, steps, code version), so a redelivered task
resumes the same run from its last checkpoint, and a finished run returns its recorded result
without training again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from pathlib import Path

from shared.db import session_scope
from shared.db.models import Dataset, RunStatus, TrainingRun, utcnow
from shared.queue import TrackedTask, app
from shared.settings import get_settings


def run_key(preset: str, dataset: str | None, max_steps: int, commit: str | None) -> str:
    text = json.dumps(
        {"preset": preset, "dataset": dataset, "max_steps": max_steps, "code": commit}, sort_keys=True
    )
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@app.task(name="train.geometry", base=TrackedTask, bind=True)
def train_geometry(
    self, preset: str = "tiny", dataset: str | None = None, max_steps: int = 3000, max_minutes: float = 20.0
) -> dict:
    return _tracked_training(self, "geometry", preset, dataset, max_steps, max_minutes)


@app.task(name="train.animation", base=TrackedTask, bind=True)
def train_animation(
    self, preset: str = "tiny", dataset: str | None = "full", max_steps: int = 3000, max_minutes: float = 15.0
) -> dict:
    return _tracked_training(self, "animation", preset, dataset, max_steps, max_minutes)


def _tracked_training(
    task, specialist: str, preset: str, dataset: str | None, max_steps: int, max_minutes: float
) -> dict:
    """Trains services.trainer.<specialist> (its TrainConfig and train) as a TrainingRun row."""
    from services.trainer.geometry import code_version

    module = importlib.import_module(f"services.trainer.{specialist}")
    key = run_key(preset, dataset, max_steps, code_version()["commit"])
    run_dir = Path(get_settings().data_dir) / "runs" / f"{specialist}-{preset}-{key}"
    record_path = run_dir / "run.json"
    if (
        record_path.is_file()
        and json.loads(record_path.read_text()).get("result", {}).get("steps") == max_steps
    ):
        return {"run_dir": str(run_dir), **json.loads(record_path.read_text())["result"]}
    with session_scope() as session:
        dataset_row = (
            session.query(Dataset).filter_by(manifest_key=dataset).one_or_none() if dataset else None
        )
        run = TrainingRun(
            specialist=specialist,
            dataset_id=dataset_row.id if dataset_row else None,
            preset=preset,
            config={
                "max_steps": max_steps,
                "max_minutes": max_minutes,
                "run_dir": str(run_dir),
                "job": task.request.id,
            },
            code_version=code_version()["commit"],
            status=RunStatus.RUNNING,
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        run_id = run.id
    try:
        record = module.train(
            module.TrainConfig(
                preset=preset,
                dataset=dataset,
                run_dir=str(run_dir),
                max_steps=max_steps,
                max_minutes=max_minutes,
                resume=(run_dir / "checkpoint.pt").is_file(),
            ),
            progress=task.progress,
        )
    except BaseException:
        with session_scope() as session:
            failed = session.get(TrainingRun, run_id)
            failed.status, failed.finished_at = RunStatus.FAILED, utcnow()  # type: ignore[union-attr]
        raise
    from shared.blobs import get_blob_store

    checkpoint_key = get_blob_store().put_file(run_dir / "checkpoint.pt")
    with session_scope() as session:
        done = session.get(TrainingRun, run_id)
        done.status, done.finished_at = RunStatus.SUCCEEDED, utcnow()  # type: ignore[union-attr]
        done.metrics, done.checkpoint_key = record["result"], checkpoint_key  # type: ignore[union-attr]
    return {
        "run_dir": str(run_dir),
        "training_run_id": run_id,
        "checkpoint_key": checkpoint_key,
        **record["result"],
    }
