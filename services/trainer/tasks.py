"""Celery tasks of the train queue. torch is imported inside the task, so any worker can load this.

``train.geometry`` is idempotent: the run folder is keyed by the hash of what determines the run
(preset, dataset, steps, code version), so a redelivered task resumes the same run from its last
checkpoint, and a finished run returns its recorded result without training again.
"""

from __future__ import annotations

import hashlib
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
    from services.trainer.geometry import TrainConfig, code_version, train

    key = run_key(preset, dataset, max_steps, code_version()["commit"])
    run_dir = Path(get_settings().data_dir) / "runs" / f"geometry-{preset}-{key}"
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
            specialist="geometry",
            dataset_id=dataset_row.id if dataset_row else None,
            preset=preset,
            config={
                "max_steps": max_steps,
                "max_minutes": max_minutes,
                "run_dir": str(run_dir),
                "job": self.request.id,
            },
            code_version=code_version()["commit"],
            status=RunStatus.RUNNING,
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        run_id = run.id
    try:
        record = train(
            TrainConfig(
                preset=preset,
                dataset=dataset,
                run_dir=str(run_dir),
                max_steps=max_steps,
                max_minutes=max_minutes,
                resume=(run_dir / "checkpoint.pt").is_file(),
            ),
            progress=self.progress,
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


@app.task(name="train.modifier", base=TrackedTask, bind=True)
def train_modifier(
    self, preset: str = "tiny", dataset: str = "full", epochs: int = 60, max_minutes: float = 10.0
) -> dict:
    """The modifier model on a derived modifier dataset (labeler modifiers-derive), keyed like
    train.geometry: a redelivered task resumes its run, a finished one returns its record."""
    from services.trainer.geometry import code_version
    from services.trainer.modifier import TrainConfig, train

    key = run_key(preset, dataset, epochs, code_version()["commit"])
    run_dir = Path(get_settings().data_dir) / "runs" / f"modifier-{preset}-{key}"
    record_path = run_dir / "run.json"
    if record_path.is_file() and json.loads(record_path.read_text())["result"]["epochs"] >= epochs:
        return {"run_dir": str(run_dir), **json.loads(record_path.read_text())["result"]}
    with session_scope() as session:
        run = TrainingRun(
            specialist="modifier",
            preset=preset,
            config={"dataset": dataset, "epochs": epochs, "run_dir": str(run_dir), "job": self.request.id},
            code_version=code_version()["commit"],
            status=RunStatus.RUNNING,
            started_at=utcnow(),
        )
        session.add(run)
        session.flush()
        run_id = run.id
    config = TrainConfig(
        preset=preset,
        dataset=dataset,
        run_dir=str(run_dir),
        epochs=epochs,
        max_minutes=max_minutes,
        resume=(run_dir / "checkpoint.pt").is_file(),
    )
    try:
        record = train(config, progress=self.progress)
    except BaseException:
        with session_scope() as session:
            failed = session.get(TrainingRun, run_id)
            failed.status, failed.finished_at = RunStatus.FAILED, utcnow()  # type: ignore[union-attr]
        raise
    from shared.blobs import get_blob_store

    checkpoint_key = get_blob_store().put_file(run_dir / "best.pt")
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
