"""The scrape queue's tasks, and the hand-off of new assets to the extract queue: skipped in the
embedded mode when no extract task is registered, sent by name to Redis in production mode."""

from __future__ import annotations

import asyncio
import json
import logging

import pytest
import redis
from sqlalchemy import select

from services.scraper.crawl import Crawler
from services.scraper.items import Provenance
from shared import queue
from shared.db import session_scope
from shared.db.models import Asset, Job, JobState, Source
from shared.settings import get_settings
from tests.scraper_fixtures import blend_bytes, glb_bytes, scraper_db  # noqa: F401 (scraper_db is a fixture)
from tests.test_queue import distributed  # noqa: F401 (a fixture: PostgreSQL + Redis settings)


def drop_folder(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.blend").write_bytes(blend_bytes(0))
    (folder / "b.glb").write_bytes(glb_bytes(0))
    return folder


@pytest.mark.usefixtures("scraper_db")
def test_scrape_source_task_runs_a_crawl_step_and_records_the_job(tmp_path, caplog):
    import services.scraper.tasks  # noqa: F401  registers the scrape tasks

    folder = drop_folder(tmp_path)
    with caplog.at_level(logging.INFO, logger="services.scraper.ingest"):
        job_id = queue.submit("scrape.source", "local", None, {"path": str(folder), "license": "CC0-1.0"})
    with session_scope() as session:
        job = session.get(Job, job_id)
        assert job.state is JobState.SUCCEEDED
        assert job.result["new"] == 2 and job.result["rejected"] == {} and job.result["finished"] is True
        source = session.scalars(select(Source).where(Source.name == "local")).one()
        assert source.cursor["position"] is None and source.kind == "local"
        assets = session.scalars(select(Asset)).all()
        # Embedded mode: the blender worker's task runs right here on each new asset.
        assert {a.source_id for a in assets} == {source.id} and {a.status for a in assets} == {"extracted"}
    step = queue.submit(
        "scrape.source", "local", 1, {"path": str(folder), "license": "CC0-1.0", "batch_files": 1}
    )
    with session_scope() as session:
        assert session.get(Job, step).result == {
            "new": 0,
            "duplicate": 1,
            "bytes_new": 0,
            "rejected": {},
            "finished": False,
        }


@pytest.mark.usefixtures("scraper_db")
def test_embedded_mode_without_the_blender_worker_skips_extraction(tmp_path, caplog, monkeypatch):
    """A scraper-only install (no bpy): new assets keep status "new", and the log says why."""
    import services.scraper.tasks  # noqa: F401  registers the scrape tasks

    monkeypatch.setattr(queue, "TASK_MODULES", ("services.scraper.tasks",))
    if "extract.asset" in queue.app.tasks:
        monkeypatch.delitem(queue.app.tasks, "extract.asset")
    with caplog.at_level(logging.INFO, logger="services.scraper.ingest"):
        queue.submit(
            "scrape.source", "local", None, {"path": str(drop_folder(tmp_path)), "license": "CC0-1.0"}
        )
    with session_scope() as session:
        assert {a.status for a in session.scalars(select(Asset))} == {"new"}
    assert "no extract.asset task in this process: extraction of 2 new assets skipped" in caplog.text


@pytest.mark.usefixtures("scraper_db")
def test_scrape_ingest_task_ingests_one_file(tmp_path):
    import services.scraper.tasks  # noqa: F401

    path = drop_folder(tmp_path) / "a.blend"
    provenance = Provenance(source="local", source_url=path.as_uri(), license_text="MIT", title="a").to_json()
    job_id = queue.submit("scrape.ingest", "a.blend", provenance, None, str(path))
    again = queue.submit("scrape.ingest", "a.blend", provenance, None, str(path))
    with session_scope() as session:
        first, second = session.get(Job, job_id), session.get(Job, again)
        assert first.result["new"] == 1 and (second.result["new"], second.result["duplicate"]) == (0, 1)
        (asset,) = session.scalars(select(Asset)).all()
        assert asset.license == "MIT" and asset.source_url == path.as_uri()


@pytest.mark.usefixtures("distributed")
def test_new_assets_are_sent_to_the_extract_queue_by_name(tmp_path):
    """Production shape: PostgreSQL for metadata, Redis for the queue; no worker needed to see it."""
    folder = drop_folder(tmp_path)
    summary = asyncio.run(Crawler(get_settings(), "local", path=str(folder), license="CC-BY-4.0").run())
    assert summary.new == 2
    with session_scope() as session:
        shas = set(session.scalars(select(Asset.sha256)))
        jobs = session.scalars(select(Job).where(Job.kind == "extract.asset")).all()
    assert {j.args["args"][0] for j in jobs} == shas and {j.state for j in jobs} == {JobState.QUEUED}
    settings = get_settings()
    messages = redis.Redis.from_url(settings.queue_url).lrange(f"{settings.queue_key_prefix}extract", 0, -1)
    sent = [json.loads(m) for m in messages]
    assert sorted(m["headers"]["task"] for m in sent) == ["extract.asset", "extract.asset"]
    assert {m["headers"]["id"] for m in sent} == {j.id for j in jobs}
