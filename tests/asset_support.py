"""Register one file as an asset (blob + row) for tests that need a stored asset to work on.

Production ingests through the scraper's batched path (services/scraper/ingest.py); this is the
single-file version, idempotent by content also when two threads race on the same file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from shared.blobs import BlobStore
from shared.db.models import Asset


@dataclass
class Provenance:
    """Where a file came from and under which terms; every asset keeps it."""

    license: str
    source_url: str | None = None
    source_commit: str | None = None
    source_path: str | None = None
    author: str | None = None
    attribution: str | None = None
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def register_asset(
    session: Session,
    store: BlobStore,
    path: str | os.PathLike[str],
    fmt: str,
    provenance: Provenance,
    source_id: int | None = None,
) -> tuple[Asset, bool]:
    """Store the file and record it; returns (asset, created)."""
    key = store.put_file(path)
    existing = session.scalar(select(Asset).where(Asset.sha256 == key))
    if existing is not None:
        return existing, False
    asset = Asset(
        sha256=key,
        size=store.size(key),
        format=fmt,
        source_id=source_id,
        source_url=provenance.source_url,
        source_commit=provenance.source_commit,
        source_path=provenance.source_path,
        license=provenance.license,
        author=provenance.author,
        attribution=provenance.attribution,
        title=provenance.title,
        meta=dict(provenance.meta),
    )
    try:
        with session.begin_nested():
            session.add(asset)
    except IntegrityError:  # another worker registered the same bytes first
        return session.scalars(select(Asset).where(Asset.sha256 == key)).one(), False
    return asset, True
