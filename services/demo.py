"""``make demo``: the pipeline end to end on the embedded default (SQLite, local blobs, in-process
tasks), on a sample of ../shared/corpus. Each stage that exists runs; its result is printed."""

from __future__ import annotations

import argparse
import csv
import os
import time
from pathlib import Path

from sqlalchemy import func, select
from tqdm import tqdm

from shared.assets import Provenance, register_asset
from shared.blobs import get_blob_store
from shared.db import ensure_schema, session_scope
from shared.db.models import Asset
from shared.settings import get_settings

REPO = Path(__file__).resolve().parents[1]
CORPUS = Path(os.environ.get("BMT_CORPUS_DIR", REPO.parent / "shared" / "corpus"))


def ingest(manifest: Path, limit: int) -> int:
    """Register the first ``limit`` corpus files of each folder with their license and provenance."""
    with manifest.open(newline="") as f:
        rows = list(csv.DictReader(f))
    per_folder: dict[str, int] = {}
    chosen = []
    for row in rows:
        folder = row["path"].split("/")[1]
        if per_folder.get(folder, 0) < limit:
            per_folder[folder] = per_folder.get(folder, 0) + 1
            chosen.append(row)
    store = get_blob_store()
    created = 0
    with session_scope() as session:
        for row in tqdm(chosen, desc="ingest", unit="file"):
            provenance = Provenance(
                license=row["license"].split(" ")[0],
                source_url=f"https://github.com/{row['source_repo']}",
                source_commit=row["source_commit"],
                source_path=row["source_path"],
                title=row["asset_name"],
                meta={"category": row["category"], "pack": row["pack"], "corpus_path": row["path"]},
            )
            created += register_asset(session, store, CORPUS / row["path"], row["format"], provenance)[1]
    return created


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--per-folder", type=int, default=5, help="corpus files taken from each source folder"
    )
    args = parser.parse_args(argv)
    settings = get_settings()
    print(f"embedded run in {settings.data_dir.resolve()} (database {settings.database_url})")
    ensure_schema()
    start = time.perf_counter()
    created = ingest(CORPUS / "manifest.csv", args.per_folder)
    with session_scope() as session:
        total = session.scalar(select(func.count()).select_from(Asset))
        by_license = session.execute(select(Asset.license, func.count()).group_by(Asset.license)).all()
    print(f"ingest: {created} new assets, {total} in the store ({time.perf_counter() - start:.1f} s)")
    for license_id, count in sorted(by_license):
        print(f"  {license_id:<14} {count}")


if __name__ == "__main__":
    main()
