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


def run_key(preset: str, dataset: str | None, max_steps: int, commit: str | None, model: str = "flat") -> str:
    fields = {"preset": preset, "dataset": dataset, "max_steps": max_steps, "code": commit}
    if model != "flat":  # a flat run keeps the key it had before parts existed
        fields["model"] = model
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@app.task(name="train.geometry", base=TrackedTask, bind=True)
def train_geometry(
    self,
    preset: str = "tiny",
    dataset: str | None = None,
    max_steps: int = 3000,
    max_minutes: float = 20.0,
    model: str = "flat",
) -> dict:
    from services.trainer.geometry import TrainConfig, code_version, train

    if model not in ("flat", "parts"):
        raise ValueError(f"model must be 'flat' or 'parts', not {model!r}")
    key = run_key(preset, dataset, max_steps, code_version()["commit"], model)
    kind = "parts-" if model == "parts" else ""
    run_dir = Path(get_settings().data_dir) / "runs" / f"geometry-{kind}{preset}-{key}"
    record_path = run_dir / "run.json"
    if record_path.is_file() and _finished(json.loads(record_path.read_text()), max_steps):
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
                "model": model,
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
                model=model,
                preset=preset,
                dataset=dataset,
                run_dir=str(run_dir),
                max_steps=max_steps,
                max_minutes=max_minutes,
                resume=_resumable(run_dir, model),
            ),
            progress=self.progress,
        )
    except BaseException:
        with session_scope() as session:
            failed = session.get(TrainingRun, run_id)
            failed.status, failed.finished_at = RunStatus.FAILED, utcnow()  # type: ignore[union-attr]
        raise
    from shared.blobs import get_blob_store

    if model == "parts":  # one file holding both models, as served
        from services.trainer.geometry import export_model

        export_model(run_dir, run_dir / "model.pt")
        checkpoint_key = get_blob_store().put_file(run_dir / "model.pt")
    else:
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


def _finished(record: dict, max_steps: int) -> bool:
    """A recorded run that reached max_steps (a parts run: both of its models)."""
    if record.get("model_kind") == "parts":
        return all(
            record.get(m, {}).get("result", {}).get("steps") == max_steps for m in ("structure", "part")
        )
    return record.get("result", {}).get("steps") == max_steps


def _resumable(run_dir: Path, model: str) -> bool:
    """A redelivered task resumes what its first delivery saved."""
    if model == "parts":  # the structure model trains first
        return (run_dir / "structure" / "checkpoint.pt").is_file()
    return (run_dir / "checkpoint.pt").is_file()
