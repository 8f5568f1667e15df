"""The data flow end to end on whatever the settings point at (embedded default: SQLite, local
blobs, in-process tasks): register corpus files as assets, extract, label, build datasets.

Registration is the scraper's ``local`` source over ../shared/corpus (every file, with the license
and provenance from its manifest.csv, in a few seconds), asked for through the scrape queue like
every other service's work; extraction, the expensive step, then runs on a sample chosen by corpus
path.
"""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from tqdm import tqdm

from shared.blobs import sha256_file
from shared.corpus import default_corpus_dir
from shared.db import session_scope
from shared.db.models import Asset, Extraction, ExtractionStatus
from shared.queue import submit


def corpus_rows(corpus: Path) -> list[dict[str, str]]:
    with (corpus / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def sample_paths(per_pack: int, formats: tuple[str, ...] = ("blend",)) -> list[str]:
    """The first ``per_pack`` files (by path) of every pack (0: all of them), so that every pack,
    and with it every Smooth_/Flatshaded pair near the start of a pack, is represented."""
    by_pack: dict[str, list[str]] = defaultdict(list)
    for row in sorted(corpus_rows(default_corpus_dir()), key=lambda r: r["path"]):
        if row["format"] in formats:
            by_pack[str(Path(row["path"]).parent)].append(row["path"])
    return [path for pack in sorted(by_pack) for path in by_pack[pack][: per_pack or None]]


def ingest_corpus(progress: bool = True) -> None:
    """Register every corpus file (already registered ones are recognised and skipped)."""
    # The whole corpus in one step (no batch limit); hand_off=False: extraction is asked for below,
    # for the sample only.
    options = {"path": str(default_corpus_dir()), "hand_off": False, "progress": progress}
    submit("scrape.source", "local", None, options)


def assets_at(paths: list[str]) -> list[str]:
    """The sha256 keys of registered corpus files at these corpus-relative paths, in order.

    Keyed by content, not by recorded path: identical files in two places are one asset.
    """
    corpus = default_corpus_dir()
    keys = [sha256_file(corpus / path) for path in paths]
    with session_scope() as session:
        known = set(session.scalars(select(Asset.sha256).where(Asset.sha256.in_(set(keys)))))
    missing = [path for path, key in zip(paths, keys, strict=True) if key not in known]
    if missing:
        raise LookupError(f"not registered: {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    return keys


def extract_assets(keys: list[str], progress: bool = True) -> list[int]:
    """Run ``extract.asset`` for each asset (a no-op for ones already extracted); ids of the
    successful extractions."""
    for key in tqdm(keys, desc="extract", unit="asset", disable=not progress):
        submit("extract.asset", key, preview=False)
    with session_scope() as session:
        return list(
            session.scalars(
                select(Extraction.id)
                .join(Asset, Asset.id == Extraction.asset_id)
                .where(Extraction.status == ExtractionStatus.OK, Asset.sha256.in_(keys))
                .order_by(Extraction.id)
            )
        )


def label_extractions(extraction_ids: list[int], progress: bool = True) -> None:
    for extraction_id in tqdm(extraction_ids, desc="label", unit="scene", disable=not progress):
        submit("label.extraction", extraction_id)


def run(per_pack: int, formats: tuple[str, ...] = ("blend", "glb"), progress: bool = True) -> dict[str, Any]:
    ingest_corpus(progress)
    paths = sample_paths(per_pack, formats)
    extraction_ids = extract_assets(assets_at(paths), progress)  # each new scene is labelled as it lands
    return {"files": len(paths), "extractions": len(extraction_ids)}
