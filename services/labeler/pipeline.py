"""The data flow end to end on whatever the settings point at (embedded default: SQLite, local
blobs, in-process tasks): register corpus files as assets, extract, label, build datasets.

Registration here is a minimal loop over ../shared/corpus/manifest.csv (the scraper's ``local``
source does the full job); it records the same provenance: license, source repository, commit,
path, and category/pack/asset name in Asset.meta.
"""

from __future__ import annotations

import csv
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from sqlalchemy import select
from tqdm import tqdm

from services.labeler.dataset import KNOWN_ATTRIBUTIONS
from shared.assets import Provenance, register_asset
from shared.blobs import get_blob_store
from shared.db import session_scope
from shared.db.models import Asset, Extraction, ExtractionStatus
from shared.queue import submit

REPO = Path(__file__).resolve().parents[2]


def corpus_dir() -> Path:
    return Path(os.environ.get("BMT_CORPUS_DIR", REPO.parent / "shared" / "corpus"))


def corpus_rows(corpus: Path) -> list[dict[str, str]]:
    with (corpus / "manifest.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def sample_rows(
    rows: list[dict[str, str]], per_pack: int, formats: tuple[str, ...] = ("blend",)
) -> list[dict[str, str]]:
    """The first ``per_pack`` files (by path) of every pack, so that every pack, and with it every
    Smooth_/Flatshaded pair near the start of a pack, is represented."""
    by_pack: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: r["path"]):
        if row["format"] in formats:
            by_pack[str(Path(row["path"]).parent)].append(row)
    return [row for pack in sorted(by_pack) for row in by_pack[pack][:per_pack]]


def provenance_for(row: dict[str, str]) -> Provenance:
    repo = row["source_repo"]
    return Provenance(
        license=row["license"].split(" ")[0],
        source_url=f"https://github.com/{repo}/blob/{row['source_commit']}/{row['source_path']}",
        source_commit=row["source_commit"],
        source_path=row["source_path"],
        attribution=KNOWN_ATTRIBUTIONS.get(repo),
        title=row["asset_name"],
        meta={
            "category": row["category"],
            "pack": row["pack"],
            "asset_name": row["asset_name"],
            "corpus_path": row["path"],
        },
    )


def register_rows(corpus: Path, rows: list[dict[str, str]], progress: bool = True) -> list[str]:
    """Register the rows' files; returns their sha256 keys in row order."""
    store = get_blob_store()
    keys = []
    with session_scope() as session:
        for row in tqdm(rows, desc="register", unit="file", disable=not progress):
            asset, _ = register_asset(
                session, store, corpus / row["path"], row["format"], provenance_for(row)
            )
            keys.append(asset.sha256)
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
    corpus = corpus_dir()
    rows = sample_rows(corpus_rows(corpus), per_pack, formats)
    keys = register_rows(corpus, rows, progress)
    extraction_ids = extract_assets(keys, progress)
    label_extractions(extraction_ids, progress)
    return {"files": len(rows), "extractions": len(extraction_ids)}
