"""Celery tasks of the labeller: ``label.extraction`` on the label queue and ``dataset.build`` on
the dataset queue. Thin: decode arguments, call the plain function, return a small result."""

from __future__ import annotations

from typing import Any

from services.labeler.dataset import build_dataset
from services.labeler.labeller import label_extraction
from shared.blobs import get_blob_store
from shared.db import session_scope
from shared.queue import TrackedTask, app
from shared.settings import get_settings


@app.task(name="label.extraction", base=TrackedTask, bind=True)
def label_extraction_task(self: TrackedTask, extraction_id: int) -> dict[str, Any]:
    """Idempotent: labelling again overwrites the previous labels with the same result."""
    with session_scope() as session:
        return label_extraction(session, get_blob_store(), int(extraction_id), get_settings())


@app.task(name="dataset.build", base=TrackedTask, bind=True)
def build_dataset_task(self: TrackedTask, name: str, specialist: str, seed: int = 0) -> dict[str, Any]:
    """Idempotent: the same inputs give the same version, found instead of built twice."""
    with session_scope() as session:
        result = build_dataset(
            session, get_blob_store(), get_settings(), name=name, specialist=specialist, seed=int(seed)
        )
        return {
            "dataset_id": result.dataset_id,
            "version": result.version,
            "manifest_key": result.manifest_key,
            "items": {s: v["items"] for s, v in result.manifest["splits"].items()},
            "created": result.created,
        }
