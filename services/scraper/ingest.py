"""The ingest path every source ends in: check, dedup, store, record, hand on.

For each file: license against the allow-list, size cap, content sniffed against what its name
promises, sha256, dedup (a file already stored is a duplicate, whatever its name or source), then
the blob goes to the blob store and an Asset row records its license and provenance, and the new
asset is handed to the extract queue. Archives are extracted safely and each member is ingested as
its own file, keyed by ``<archive URL>#<member path>``. Idempotent on sha256: running it twice over
the same files stores nothing the second time.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.scraper.archives import ArchiveLimits, ArchiveRejected, extract_archive
from services.scraper.items import Candidate, Outcome, Result, Summary, scratch_dir
from services.scraper.licenses import decide
from services.scraper.sniff import ARCHIVE_FORMATS, SNIFF_BYTES, check_content, sniff
from shared.blobs import BlobStore, get_blob_store
from shared.db import session_scope
from shared.db.models import Asset, AssetStatus
from shared.db.models import Source as SourceRow
from shared.settings import Settings

log = logging.getLogger(__name__)

EXTRACT_TASK = "extract.asset"
_PUT_THREADS = 4
TRANSCRIPT = "transcript"


@dataclass
class LocalFile:
    """A candidate's bytes on disk, with what is already known about them (web downloads hash while streaming)."""

    path: Path
    sha256: str | None = None
    head: bytes | None = None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def source_row(session: Session, name: str) -> SourceRow:
    """The sources row of a crawl (created on first use); it holds the crawl cursor."""
    row = session.scalar(select(SourceRow).where(SourceRow.name == name))
    if row is None:
        row = SourceRow(kind=name, name=name, cursor={})
        session.add(row)
        session.flush()
    return row


def hand_to_extract(shas: list[str]) -> int:
    """Queue extraction of new assets by task name; returns how many were queued.

    With Redis, ``submit`` sends the name (``app.send_task``): the scraper never imports the blender
    worker, which runs in its own container with bpy. A broker outage leaves the job unsent in the
    jobs table, the outbox that every worker's sweep sends from (shared.queue). In the embedded mode tasks run right here, so
    extraction can only happen when the worker's task is registered (blender_worker importable and
    listed in TASK_MODULES); otherwise it is skipped with a log line and the assets keep status
    "new" for a later extract pass over the database.
    """
    from shared.queue import TASK_MODULES, app, submit

    if not shas:
        return 0
    if app.conf.task_always_eager:
        for module in TASK_MODULES:
            importlib.import_module(module)
        if EXTRACT_TASK not in app.tasks:
            log.info(
                "no %s task in this process: extraction of %d new assets skipped", EXTRACT_TASK, len(shas)
            )
            return 0
    queued = 0
    for sha in shas:
        try:
            submit(EXTRACT_TASK, sha)
            queued += 1
        except Exception:  # embedded mode runs the task here: one bad file must not stop the crawl
            log.exception("extraction of %s failed; the asset keeps its status for a later pass", sha)
    return queued


@dataclass
class Prepared:
    """A file that passed every check and waits for the dedup query and storage."""

    candidate: Candidate
    path: Path
    sha256: str
    size: int
    format: str
    license: str


def asset_row(item: Prepared, source_id: int | None) -> Asset:
    """The Asset row of a checked file: its hash, format and SPDX license, and where it came from."""
    provenance = item.candidate.provenance
    return Asset(
        sha256=item.sha256,
        size=item.size,
        format=item.format,
        source_id=source_id,
        source_url=provenance.source_url,
        source_commit=provenance.source_commit,
        source_path=provenance.source_path,
        license=item.license,
        author=provenance.author,
        attribution=provenance.attribution,
        title=provenance.title,
        status=AssetStatus.NEW,
        meta={
            "source": provenance.source,
            "page_url": provenance.page_url,
            "license_text": provenance.license_text,
            "file_name": item.candidate.name,
            **provenance.meta,
        },
    )


class Ingestor:
    def __init__(self, settings: Settings, blobs: BlobStore | None = None, *, hand_off: bool = True) -> None:
        self.settings = settings
        self.blobs = blobs or get_blob_store(settings.blob_url)
        self.hand_off = hand_off
        self.limits = ArchiveLimits(
            max_member_bytes=settings.scraper_max_file_bytes,
            max_total_bytes=settings.scraper_archive_max_total_bytes,
            max_files=settings.scraper_archive_max_files,
            max_ratio=settings.scraper_archive_max_ratio,
        )

    # --- lookups the sources use before fetching anything -----------------------------------

    def known_urls(self, source: str, urls: list[str]) -> set[str]:
        """Those of ``urls`` already stored by ``source``: as a file's own URL, or as the URL of an
        archive (or item page) whose members are keyed ``url#member``."""
        found: set[str] = set()
        with session_scope() as session:
            for start in range(0, len(urls), 500):  # keep the IN list within SQLite's parameter limit
                chunk = urls[start : start + 500]
                found.update(session.scalars(select(Asset.source_url).where(Asset.source_url.in_(chunk))))
            if len(found) < len(set(urls)):
                # One query on the indexed source_id instead of a LIKE per URL (source_url has no index).
                members = session.scalars(
                    select(Asset.source_url).where(
                        Asset.source_id == source_row(session, source).id, Asset.source_url.contains("#")
                    )
                )
                containers = {url.split("#", 1)[0] for url in members if url}
                found.update(url for url in urls if url in containers)
        return found

    # --- ingest -------------------------------------------------------------------------------

    def ingest_batch(
        self, items: Iterable[tuple[Candidate, LocalFile | None]], summary: Summary
    ) -> list[Result]:
        """Ingest candidates whose bytes are on disk (or in ``candidate.data``).

        Checks run per file; the dedup query and the Asset rows take one transaction per batch
        (a transaction per file would cost a disk sync each on SQLite).
        """
        results: list[Result] = []
        with tempfile.TemporaryDirectory(prefix="ingest-", dir=scratch_dir(self.settings)) as scratch:
            prepared: list[Prepared] = []
            for candidate, local in items:
                for item in self._check(candidate, local, Path(scratch), depth=0):
                    if isinstance(item, Prepared):
                        prepared.append(item)
                    else:
                        results.append(item)
                        summary.add(item)
            try:
                stored = self._store(prepared)
            except IntegrityError:  # another worker stored some of these meanwhile: they are duplicates now
                stored = self._store(prepared)
        for item in prepared:
            is_new = stored.get(id(item), False)
            result = Result(
                item.candidate.name, Outcome.NEW if is_new else Outcome.DUPLICATE, sha256=item.sha256
            )
            results.append(result)
            summary.add(result, item.size if is_new else 0)
        if self.hand_off:
            hand_to_extract([item.sha256 for item in prepared if stored.get(id(item))])
        return results

    def _store(self, prepared: list[Prepared]) -> dict[int, bool]:
        """Store the blobs and rows of files not yet known; returns id(item) -> stored as new.

        Batched rather than per file: one query finds the known
        hashes, so a duplicate is never copied into the blob store; new blobs are written in parallel
        (each put fsyncs, which releases the GIL); then all rows go in with one transaction. Blobs
        land before rows, so a crash leaves at worst an unreferenced blob, never a row without one.
        """
        with session_scope() as session:
            source_id = source_row(session, prepared[0].candidate.provenance.source).id if prepared else None
            shas = list({item.sha256 for item in prepared})
            known: set[str] = set()
            for start in range(0, len(shas), 500):  # keep the IN list within SQLite's parameter limit
                chunk = shas[start : start + 500]
                known.update(session.scalars(select(Asset.sha256).where(Asset.sha256.in_(chunk))))
            new: dict[str, Prepared] = {}
            for item in prepared:
                if item.sha256 not in known:
                    new.setdefault(item.sha256, item)
            with ThreadPoolExecutor(max_workers=_PUT_THREADS) as pool:
                for item, key in zip(
                    new.values(), pool.map(lambda i: self.blobs.put_file(i.path), new.values()), strict=True
                ):
                    if key != item.sha256:
                        raise RuntimeError(
                            f"blob store hashed {item.candidate.name} as {key}, not {item.sha256}"
                        )
            session.add_all(asset_row(item, source_id) for item in new.values())
        return {id(item): new.get(item.sha256) is item for item in prepared}

    def _check(
        self, candidate: Candidate, local: LocalFile | None, scratch: Path, depth: int
    ) -> Iterator[Result | Prepared]:
        """License, size, content and hash of one file (each member, for an archive)."""
        name = candidate.name
        decision = decide(candidate.provenance.license_text, self.settings.scraper_license_allowlist)
        if not decision.allowed:
            yield Result(name, Outcome.REJECTED, reason=decision.reason)
            return
        if candidate.data is not None:
            local = LocalFile(scratch / f"data-{hashlib.sha256(candidate.data).hexdigest()}")
            local.path.write_bytes(candidate.data)
        if local is None:
            raise ValueError(f"candidate {name} has neither a file nor data")
        size = local.path.stat().st_size
        if size > self.settings.scraper_max_file_bytes:
            yield Result(name, Outcome.REJECTED, reason="file larger than the size cap")
            return
        head = local.head
        if head is None:
            with local.path.open("rb") as f:
                head = f.read(SNIFF_BYTES)
        if candidate.declared_format == TRANSCRIPT:
            fmt, reason = TRANSCRIPT, (None if sniff(head).kind == "text" else "transcript is not text")
        else:
            fmt, reason = check_content(name, head)
        if reason is not None:
            yield Result(name, Outcome.REJECTED, reason=reason)
        elif fmt in ARCHIVE_FORMATS:
            yield from self._check_archive(candidate, local.path, scratch, depth)
        else:
            yield Prepared(
                candidate, local.path, local.sha256 or sha256_of(local.path), size, fmt, decision.spdx
            )

    def _check_archive(
        self, candidate: Candidate, path: Path, scratch: Path, depth: int
    ) -> Iterator[Result | Prepared]:
        if depth > 0:
            yield Result(candidate.name, Outcome.REJECTED, reason="nested archive")
            return
        dest = Path(tempfile.mkdtemp(prefix="archive-", dir=scratch))  # removed with the scratch folder
        try:
            extracted = extract_archive(path, dest, self.limits)
        except ArchiveRejected as error:
            yield Result(candidate.name, Outcome.REJECTED, reason=str(error))
            return
        for member, reason in extracted.rejected:
            log.info("%s: member %s rejected: %s", candidate.name, member, reason)
            yield Result(f"{candidate.name}#{member}", Outcome.REJECTED, reason=reason)
        for member, member_path in extracted.files:
            provenance = replace(
                candidate.provenance,
                source_url=f"{candidate.provenance.source_url}#{member}",
                source_path=f"{candidate.provenance.source_path or candidate.name}#{member}",
                meta={**candidate.provenance.meta, "archive": candidate.name},
            )
            member_candidate = Candidate(name=Path(member).name, provenance=provenance)
            yield from self._check(member_candidate, LocalFile(member_path), scratch, depth + 1)
