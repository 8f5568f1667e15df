"""Celery tasks on the scrape queue. Thin: decode arguments, call the crawler, return the summary.

Both are idempotent: a crawl step resumes from the cursor saved in the database, and ingesting a
file that is already stored (same sha256, or same URL at a commit) stores nothing. The scraper's own
dependencies (aiohttp, py7zr) are imported inside the tasks, so any worker can load this module.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from shared.queue import TrackedTask, app
from shared.settings import get_settings


@app.task(name="scrape.source", base=TrackedTask, bind=True)
def scrape_source(
    self: TrackedTask, source: str, max_batches: int | None = 10, options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """One crawl step: up to ``max_batches`` batches of ``source`` from its saved cursor."""
    from services.scraper.crawl import Crawler, load_state

    crawler = Crawler(get_settings(), source, **(options or {}))

    def on_batch(done: int) -> None:
        if max_batches:
            self.progress(
                min(done / max_batches, 1.0), f"{source}: {done} batches, {crawler.summary.new} new"
            )

    crawler.on_batch = on_batch
    summary = asyncio.run(crawler.run(max_batches=max_batches)).to_json()
    # "finished": False tells a scheduler to submit the next step; it resumes from the saved cursor.
    return summary | {"finished": load_state(source).get("position") is None}


@app.task(name="scrape.ingest", base=TrackedTask, bind=True)
def scrape_ingest(
    self: TrackedTask, name: str, provenance: dict[str, Any], url: str | None = None, path: str | None = None
) -> dict[str, Any]:
    """Fetch (``url``) or read (``path``) one file and ingest it with its provenance."""
    from services.scraper.crawl import ingest_candidate
    from services.scraper.items import Candidate, Provenance

    candidate = Candidate(
        name=name, provenance=Provenance.from_json(provenance), url=url, path=Path(path) if path else None
    )
    return asyncio.run(ingest_candidate(get_settings(), candidate)).to_json()
