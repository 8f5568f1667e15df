"""Celery tasks of the train queue. torch is imported inside the task, so any worker can load this.

Every ``train.NAME`` task is idempotent: the run folder is keyed by the hash of what determines
the run (preset, dataset, steps, code version, model design), so a redelivered task resumes the same
run from its last checkpoint in the same training_runs row, and a finished run returns its
recorded result (row id and checkpoint key included) without training again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from collections.abc import Callable
from pathlib import Path

from sqlalchemy import select, text

from shared.db import session_scope
from shared.db.models import Dataset, RunStatus, TrainingRun, utcnow
from shared.queue import TrackedTask, app
from shared.settings import get_settings


def run_key(preset: str, dataset: str | None, max_steps: int, commit: str | None, model: str = "flat") -> str:
    fields = {"preset": preset, "dataset": dataset, "max_steps": max_steps, "code": commit}
    if model != "flat":  # a flat run keeps the key it had before parts existed
        fields["model"] = model
    text = json.dumps(fields, sort_keys=True)
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


def _claimed_by(specialist: str, job_id: str) -> tuple[Path, str | None] | None:
    """(run folder, commit) of the run an earlier delivery of this job claimed, if any."""
    with session_scope() as session:
        run = session.scalars(
            select(TrainingRun)
            .where(TrainingRun.specialist == specialist, TrainingRun.config["job"].as_string() == job_id)
            .order_by(TrainingRun.id)
        ).first()
        return (Path(run.config["run_dir"]), run.code_version) if run is not None else None


def tracked_training(
    task,
    specialist: str,
    preset: str,
    dataset: str | None,
    max_steps: int,
    max_minutes: float,
    run: Callable[[Path], tuple[dict, Path]],
    model: str = "flat",
) -> dict:
    """A training run keyed by what determines it, recorded as one TrainingRun row; ``run(run_dir)``
    trains (resuming what a first delivery saved there) and returns (run record, checkpoint)."""
    from services.trainer.geometry import code_version

    claimed = _claimed_by(specialist, task.request.id)
    if claimed is not None:  # a redelivery resumes where its first delivery trained, whatever
        run_dir, commit = claimed  # commit the worker runs now
    else:
        commit = code_version()["commit"]
        key = run_key(preset, dataset, max_steps, commit, model)
        kind = "" if model == "flat" else f"{model}-"
        run_dir = Path(get_settings().data_dir) / "runs" / f"{specialist}-{kind}{preset}-{key}"
    config = {"max_steps": max_steps, "max_minutes": max_minutes, "job": task.request.id}
    if model != "flat":
        config["model"] = model
    run_id, finished = claim_run(
        specialist, run_dir, preset=preset, dataset=dataset, code_version=commit, config=config
    )
    if finished is not None:
        return finished
    try:
        record, checkpoint = run(run_dir)
    except BaseException:
        finish_run(run_id, None, None)
        raise
    recorded = finish_run(run_id, checkpoint, record["result"])
    return {"run_dir": str(run_dir), **recorded, **record["result"]}


@app.task(name="train.geometry", base=TrackedTask, bind=True)
def train_geometry(
    self,
    preset: str = "tiny",
    dataset: str | None = None,
    max_steps: int = 3000,
    max_minutes: float = 20.0,
    model: str = "flat",
) -> dict:
    from services.trainer.geometry import TrainConfig, export_model, train

    if model not in ("flat", "parts"):
        raise ValueError(f"model must be 'flat' or 'parts', not {model!r}")

    def run(run_dir: Path) -> tuple[dict, Path]:
        # A parts run trains its structure model first: that checkpoint says there is one to resume.
        first = run_dir / "structure" if model == "parts" else run_dir
        config = TrainConfig(
            model=model,
            preset=preset,
            dataset=dataset,
            run_dir=str(run_dir),
            max_steps=max_steps,
            max_minutes=max_minutes,
            resume=(first / "checkpoint.pt").is_file(),
        )
        record = train(config, progress=self.progress)
        if model == "flat":
            return record, run_dir / "checkpoint.pt"
        export_model(run_dir, run_dir / "model.pt")  # one file holding both models, as served
        return record, run_dir / "model.pt"

    return tracked_training(self, "geometry", preset, dataset, max_steps, max_minutes, run, model)


def resumable_run(specialist: str, progress, stored: str = "checkpoint.pt", **fields):
    """``run`` for tracked_training: trains services.trainer.<specialist> (its TrainConfig with
    ``fields``) in the run folder, resuming what a first delivery saved there; returns the run
    record and the file that is stored (``stored``, in the run folder)."""

    def run(run_dir: Path) -> tuple[dict, Path]:
        module = importlib.import_module(f"services.trainer.{specialist}")
        resume = (run_dir / "checkpoint.pt").is_file()
        config = module.TrainConfig(run_dir=str(run_dir), resume=resume, **fields)
        return module.train(config, progress=progress), run_dir / stored

    return run


@app.task(name="train.material", base=TrackedTask, bind=True)
def train_material(
    self, preset: str = "tiny", dataset: str = "full", max_steps: int = 1500, max_minutes: float = 30.0
) -> dict:
    fields = {"preset": preset, "dataset": dataset, "max_steps": max_steps, "max_minutes": max_minutes}
    run = resumable_run("material", self.progress, **fields)
    return tracked_training(self, "material", preset, dataset, max_steps, max_minutes, run)


@app.task(name="train.modifier", base=TrackedTask, bind=True)
def train_modifier(
    self, preset: str = "tiny", dataset: str = "full", epochs: int = 60, max_minutes: float = 10.0
) -> dict:
    """The modifier model on a derived modifier dataset (labeler modifiers-derive); its runs are
    counted in epochs, and the weights stored are the best on val."""
    fields = {"preset": preset, "dataset": dataset, "epochs": epochs, "max_minutes": max_minutes}
    run = resumable_run("modifier", self.progress, stored="best.pt", **fields)
    return tracked_training(self, "modifier", preset, dataset, epochs, max_minutes, run)


@app.task(name="train.animation", base=TrackedTask, bind=True)
def train_animation(
    self, preset: str = "tiny", dataset: str | None = "full", max_steps: int = 3000, max_minutes: float = 15.0
) -> dict:
    fields = {"preset": preset, "dataset": dataset, "max_steps": max_steps, "max_minutes": max_minutes}
    run = resumable_run("animation", self.progress, **fields)
    return tracked_training(self, "animation", preset, dataset, max_steps, max_minutes, run)
