"""Celery task ``extract.asset``: one stored asset -> scene document, preview, Extraction and
SceneObject rows. Idempotent by (asset sha256, extractor version): a retry or a redelivery finds
the row already written and returns it.

The worker process keeps one extraction child alive between tasks (starting bpy takes most of a
second); the child runs each file under the time and memory limits and is replaced when it dies.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from blender_worker.pool import ChildProcess, WorkerStartError
from blender_worker.settings import get_extract_settings
from blender_worker.summary import object_rows
from shared.blobs import get_blob_store
from shared.db import session_scope
from shared.db.models import Asset, AssetStatus, Extraction, ExtractionStatus, SceneObject
from shared.queue import TrackedTask, app, submit

log = logging.getLogger(__name__)

# Bump when the documents this code writes change, so that assets are extracted again.
EXTRACTOR_VERSION = "1.1"

_child: ChildProcess | None = None


@app.task(name="extract.asset", base=TrackedTask, bind=True)
def extract_asset(self: TrackedTask, sha256: str, preview: bool = True) -> dict[str, Any]:
    self.progress(0.05, "extracting")
    result = extract_and_record(sha256, preview=preview)
    if result["status"] == "ok" and result["created"]:
        hand_to_labeller(result["extraction_id"])
    return result


def hand_to_labeller(extraction_id: int) -> None:
    """The next arrow of the data flow: label the new scene (by task name; in-process when embedded)."""
    try:
        submit("label.extraction", extraction_id)
    except Exception:  # embedded mode labels right here: a labelling failure must not undo the extraction
        log.exception(
            "labelling extraction %s failed; `python -m services.labeler label` retries it", extraction_id
        )


def extract_and_record(sha256: str, *, preview: bool = True) -> dict[str, Any]:
    """Extract the asset stored under ``sha256`` unless this extractor version already did."""
    with session_scope() as session:
        asset = session.scalar(select(Asset).where(Asset.sha256 == sha256))
        if asset is None:
            raise LookupError(f"no asset with sha256 {sha256}")
        done = _existing(session, asset.id)
        if done is not None:
            return _describe(done, created=False)
        asset_id, fmt = asset.id, asset.format
        provenance = {
            "source_url": asset.source_url,
            "license": asset.license,
            "attribution": asset.attribution,
        }
        source_path = asset.source_path
    store = get_blob_store()
    with tempfile.TemporaryDirectory(prefix="bmt-extract-") as tmp:
        work = Path(tmp)
        local = store.fetch_to_path(sha256, work / f"asset.{fmt}")
        request: dict[str, Any] = {
            "path": str(local),
            "mode": "extract",
            "out_json": str(work / "scene.json"),
            "source_path": source_path,
            "provenance": {k: v for k, v in provenance.items() if v},
        }
        if preview:
            request["preview_png"] = str(work / "preview.png")
        result = _run(request)
        scene_key = preview_key = None
        rows: list[dict[str, Any]] = []
        if result["status"] == "ok":
            document_path = Path(result["document"])
            scene_key = store.put_file(document_path)
            rows = object_rows(json.loads(document_path.read_bytes()))
            if result.get("preview"):
                preview_key = store.put_file(result["preview"])
    extraction = Extraction(
        asset_id=asset_id,
        extractor_version=EXTRACTOR_VERSION,
        status=ExtractionStatus(result["status"]),
        error=result.get("reason"),
        scene_key=scene_key,
        preview_key=preview_key,
        duration_s=result.get("timings", {}).get("total_s"),
        stats={"counts": result.get("counts", {}), "timings": result.get("timings", {})},
    )
    extraction.objects = [SceneObject(asset_id=asset_id, **row) for row in rows]
    try:
        with session_scope() as session:
            session.add(extraction)
            asset = session.get(Asset, asset_id)
            asset.status = {
                "ok": AssetStatus.EXTRACTED,
                "rejected": AssetStatus.REJECTED,
                "failed": AssetStatus.FAILED,
            }[result["status"]]
            session.flush()
            return _describe(extraction, created=True)
    except IntegrityError:  # another delivery of the same task got there first
        with session_scope() as session:
            return _describe(_existing(session, asset_id), created=False)


def _run(request: dict[str, Any]) -> dict[str, Any]:
    global _child
    settings = get_extract_settings()
    if _child is None or not _child.alive:
        _child = ChildProcess(settings, Path(tempfile.gettempdir()) / f"bmt-extract-task-{os.getpid()}.log")
        try:
            _child.start()
        except WorkerStartError as exc:
            return {"path": request["path"], "status": "failed", "reason": str(exc), "timings": {}}
    return _child.run(request, settings.timeout_s)


def _existing(session: Any, asset_id: int) -> Extraction | None:
    return session.scalar(
        select(Extraction).where(
            Extraction.asset_id == asset_id, Extraction.extractor_version == EXTRACTOR_VERSION
        )
    )


def _describe(extraction: Extraction, *, created: bool) -> dict[str, Any]:
    return {
        "extraction_id": extraction.id,
        "status": str(extraction.status),
        "reason": extraction.error,
        "scene_key": extraction.scene_key,
        "preview_key": extraction.preview_key,
        "objects": len(extraction.objects),
        "created": created,
    }
