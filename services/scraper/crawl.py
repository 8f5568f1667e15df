"""The crawler: runs a source batch by batch, downloads what it lists, ingests it, and saves the
source's cursor in the database after every batch, so an interrupted crawl resumes where it stopped.

The stored cursor is ``{"position": <the source's own cursor, or null once finished>,
"validators": {url: {etag, last_modified}}, "finished_at": ...}``. A finished crawl starts over
from the beginning next time; conditional requests and the URL/sha256 dedup make that cheap.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tqdm import tqdm

from services.scraper.http import Download, DownloadTooLarge, HttpError, PoliteClient, RobotsDisallowed
from services.scraper.ingest import Ingestor, LocalFile, source_row
from services.scraper.items import Batch, Candidate, Outcome, Result, Summary, scratch_dir
from services.scraper.licenses import decide
from services.scraper.sniff import sniff
from services.scraper.sources import file_name_from_url, source_classes
from shared.db import session_scope
from shared.settings import Settings

log = logging.getLogger(__name__)


def load_state(name: str) -> dict[str, Any]:
    with session_scope() as session:
        return dict(source_row(session, name).cursor or {})


def save_state(name: str, state: dict[str, Any]) -> None:
    with session_scope() as session:
        source_row(session, name).cursor = state


def _content_disposition_name(download: Download) -> str | None:
    value = download.headers.get("Content-Disposition", "")
    for part in value.split(";"):
        key, _, raw = part.strip().partition("=")
        if key.lower() == "filename" and raw:
            return raw.strip('"')
    return None


class Crawler:
    def __init__(
        self,
        settings: Settings,
        source_name: str,
        *,
        ingestor: Ingestor | None = None,
        progress: bool = False,
        hand_off: bool = True,
        **options: Any,
    ) -> None:
        self.settings = settings
        self.source_name = source_name
        self.source_class = source_classes()[source_name]
        self.ingestor = ingestor or Ingestor(settings, hand_off=hand_off)
        self.progress = progress
        self.options = options
        self.summary = Summary()
        self.on_batch: Callable[[int], None] | None = None  # called with the number of batches done

    async def run(self, max_batches: int | None = None) -> Summary:
        """Crawl from the saved cursor; stop after ``max_batches`` batches (None: to the end)."""
        state = load_state(self.source_name)
        validators = state.get("validators", {})
        async with PoliteClient(self.settings) as client:
            source = self.source_class(
                self.settings,
                client,
                known_url=lambda url: bool(self.ingestor.known_urls(self.source_name, [url])),
                validators=validators,
                **self.options,
            )
            with tqdm(desc=self.source_name, unit="file", disable=not self.progress) as bar:
                done = 0
                async for batch in source.batches(state.get("position") or {}):
                    await self._process(client, batch, bar)
                    state = {"position": batch.next_cursor, "validators": source.validators}
                    if batch.next_cursor is None:
                        state["finished_at"] = datetime.now(UTC).isoformat()
                    save_state(self.source_name, state)
                    done += 1
                    if self.on_batch is not None:
                        self.on_batch(done)
                    if max_batches is not None and done >= max_batches:
                        break
        return self.summary

    async def _process(self, client: PoliteClient, batch: Batch, bar: tqdm | None) -> None:
        for what, reason in batch.rejected:
            log.info("%s rejected: %s", what, reason)
            self.summary.reject(reason)
        try:
            urls = [c.provenance.source_url for c in batch.candidates if c.url is not None]
            known = (
                await asyncio.to_thread(self.ingestor.known_urls, self.source_name, urls) if urls else set()
            )
            with tempfile.TemporaryDirectory(prefix="dl-", dir=scratch_dir(self.settings)) as scratch:
                fetched = await asyncio.gather(
                    *(
                        self._fetch(client, c, Path(scratch) / str(i), known)
                        for i, c in enumerate(batch.candidates)
                    )
                )
                ready = [(c, local) for c, local in fetched if local is not None or c.data is not None]
                if ready:
                    await asyncio.to_thread(self.ingestor.ingest_batch, ready, self.summary)
        finally:
            if batch.cleanup is not None:
                shutil.rmtree(batch.cleanup, ignore_errors=True)
        if bar is None:
            return
        bar.update(len(batch.candidates))
        bar.set_postfix(
            new=self.summary.new, dup=self.summary.duplicate, rejected=sum(self.summary.rejected.values())
        )

    async def _fetch(
        self, client: PoliteClient, candidate: Candidate, dest: Path, known: set[str]
    ) -> tuple[Candidate, LocalFile | None]:
        """Download a web candidate to ``dest`` (unless its URL is in ``known``); local and in-memory
        candidates pass through."""
        if candidate.path is not None:
            return candidate, LocalFile(candidate.path)
        if candidate.url is None:
            return candidate, None
        # The license is checked before spending bandwidth (the ingestor checks it again).
        decision = decide(candidate.provenance.license_text, self.settings.scraper_license_allowlist)
        if not decision.allowed:
            self.summary.add(Result(candidate.name, Outcome.REJECTED, reason=decision.reason))
            return candidate, None
        if candidate.provenance.source_url in known:
            self.summary.add(Result(candidate.name, Outcome.DUPLICATE))
            return candidate, None
        try:
            download = await client.download(
                candidate.url, dest, max_bytes=self.settings.scraper_max_file_bytes, headers=candidate.headers
            )
            if candidate.lfs_url and sniff(download.head).kind == "lfs-pointer":
                # Raw URLs serve git-lfs pointers; the file itself lives behind the LFS media URL.
                download = await client.download(
                    candidate.lfs_url, dest, max_bytes=self.settings.scraper_max_file_bytes
                )
        except DownloadTooLarge:
            self.summary.reject("download larger than the size cap")
            return candidate, None
        except RobotsDisallowed:
            self.summary.reject("robots.txt disallows the path")
            return candidate, None
        except HttpError as error:
            log.warning("%s: %s", candidate.url, error)
            self.summary.reject(
                f"download failed (HTTP {error.status})" if error.status else "download failed"
            )
            return candidate, None
        if not candidate.name:
            candidate.name = _content_disposition_name(download) or file_name_from_url(download.url)
        return candidate, LocalFile(download.path, download.sha256, download.head)


async def ingest_candidate(settings: Settings, candidate: Candidate, *, hand_off: bool = True) -> Summary:
    """Fetch and ingest one candidate outside a crawl (the ``scrape.ingest`` task)."""
    crawler = Crawler(settings, candidate.provenance.source, hand_off=hand_off)
    async with PoliteClient(settings) as client:
        await crawler._process(client, Batch([candidate], None), None)
    return crawler.summary
