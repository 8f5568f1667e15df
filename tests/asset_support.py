"""Register one file as an asset (blob + row) for tests that need a stored asset to work on.

Production ingests through the scraper's batched path (services/scraper/ingest.py), whose row
this builds; this is the single-file version, idempotent by content also when two threads race
on the same file.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from services.scraper.ingest import Prepared, asset_row
from services.scraper.items import Candidate, Provenance
from shared.blobs import BlobStore
from shared.db.models import Asset


def local_provenance(path: str | os.PathLike[str], license: str, **fields: str) -> Provenance:
    """Provenance of a file on this disk, its license already an SPDX id."""
    return Provenance("local", Path(path).resolve().as_uri(), license, **fields)


def register_asset(
    session: Session,
    store: BlobStore,
    path: str | os.PathLike[str],
    fmt: str,
    provenance: Provenance,
    source_id: int | None = None,
) -> tuple[Asset, bool]:
    """Store the file and record it (license: the provenance's, as an SPDX id); returns (asset, created)."""
    key = store.put_file(path)
    existing = session.scalar(select(Asset).where(Asset.sha256 == key))
    if existing is not None:
        return existing, False
    candidate = Candidate(Path(path).name, provenance, path=Path(path))
    asset = asset_row(
        Prepared(candidate, Path(path), key, store.size(key), fmt, provenance.license_text or ""), source_id
    )
    try:
        with session.begin_nested():
            session.add(asset)
    except IntegrityError:  # another worker registered the same bytes first
        return session.scalars(select(Asset).where(Asset.sha256 == key)).one(), False
    return asset, True
