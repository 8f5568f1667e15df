"""The extract.asset task on the embedded defaults: blob in, document, preview and rows out,
idempotent by content hash and extractor version."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from shared import queue
from shared.blobs import get_blob_store
from shared.db import ensure_schema, session_scope
from shared.db.models import Asset, AssetStatus, Extraction, ExtractionStatus, Job, SceneObject
from shared.scene import parse_scene
from tests.asset_support import local_provenance, register_asset
from tests.extract_support import CORPUS

TOY_CAR = CORPUS / "blend" / "zeyu_free_blender_models" / "blend_toy_car.blend"


def _register(path: Path, fmt: str, license: str, **provenance: str) -> str:
    with session_scope() as session:
        asset, _ = register_asset(
            session, get_blob_store(), path, fmt, local_provenance(path, license, **provenance)
        )
        return asset.sha256


def test_extract_asset_stores_document_preview_and_object_rows() -> None:
    ensure_schema()
    sha = _register(
        TOY_CAR,
        "blend",
        license="CC-BY-4.0",
        attribution="Zeyu Li, free-blender-models",
        source_path="x.blend",
    )
    job_id = queue.submit("extract.asset", sha)
    store = get_blob_store()
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.state == "succeeded" and job.result["created"] is True
        extraction = session.scalar(select(Extraction))
        assert extraction.status == ExtractionStatus.OK and extraction.extractor_version
        scene = parse_scene(store.get_bytes(extraction.scene_key))
        assert store.get_bytes(extraction.preview_key).startswith(b"\x89PNG")
        assert scene.provenance.sha256 == sha and scene.provenance.license == "CC-BY-4.0"
        assert scene.provenance.attribution == "Zeyu Li, free-blender-models"
        rows = {o.name: o for o in extraction.objects}
        assert set(rows) == {o.name for o in scene.objects}
        cube = rows["Cube"]
        assert (cube.modifier_count, cube.vertex_count) == (1, 56)  # the evaluated (bevelled) mesh
        assert cube.bbox_min == [-1.0, -1.0, -1.0] and cube.bbox_max == [1.0, 1.0, 1.0]
        assert session.scalar(select(Asset)).status == AssetStatus.EXTRACTED
        # The new scene went straight on to the labeller (in-process on the embedded default).
        labelled = session.scalars(select(Job).where(Job.kind == "label.extraction")).one()
        assert labelled.state == "succeeded" and labelled.args["args"] == [extraction.id]
        assert cube.labels and cube.category

    again = queue.submit("extract.asset", sha)
    with session_scope() as session:
        assert session.get(Job, again).result["created"] is False
        assert session.scalar(select(func.count()).select_from(Extraction)) == 1
        assert session.scalar(select(func.count()).select_from(SceneObject)) == len(rows)


def test_extract_asset_records_a_rejection(tmp_path: Path) -> None:
    ensure_schema()
    page = tmp_path / "page.blend"
    page.write_text("<!DOCTYPE html><html><body>moved</body></html>")
    sha = _register(page, "blend", license="CC0-1.0")
    job_id = queue.submit("extract.asset", sha, preview=False)
    with session_scope() as session:
        assert session.get(Job, job_id).result["status"] == "rejected"
        extraction = session.scalar(select(Extraction))
        assert extraction.status == ExtractionStatus.REJECTED
        assert extraction.error.startswith("not a .blend file: starts with b'<!DOCTYPE html>")
        assert extraction.scene_key is None and not extraction.objects
        assert session.scalar(select(Asset)).status == AssetStatus.REJECTED
