"""Local folders and archives: what the demo and the tests use to ingest ../shared/corpus.

With a manifest.csv at the folder's root (columns path, format, license, source_repo,
source_commit, source_path, category, pack, asset_name), exactly the files it lists are taken, with
their license and provenance. Without one, every file under the folder is taken and the license
comes from the ``license`` option (none: every file is rejected as "license unknown"). ``path`` may
also name a single file, typically an archive.
"""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator
from functools import cached_property
from pathlib import Path
from typing import Any

from services.scraper.items import Batch, Candidate, Provenance
from services.scraper.sources import Source
from shared.corpus import default_corpus_dir

MANIFEST = "manifest.csv"
BATCH_FILES = 256
_GITHUB_REPO = re.compile(r"^[\w.-]+/[\w.-]+$")


def _source_url(row: dict[str, str], fallback: Path) -> str:
    repo, commit, path = row.get("source_repo", ""), row.get("source_commit", ""), row.get("source_path", "")
    if _GITHUB_REPO.match(repo) and commit and path:
        return f"https://github.com/{repo}/blob/{commit}/{path}"
    if repo and path:
        return f"{repo}@{commit}:{path}" if commit else f"{repo}:{path}"
    return fallback.resolve().as_uri()


class LocalSource(Source):
    name = "local"

    @cached_property
    def target(self) -> Path:
        """The folder, or the single file (an archive), to ingest."""
        return Path(self.options.get("path") or default_corpus_dir()).resolve()

    @cached_property
    def root(self) -> Path:
        return self.target if self.target.is_dir() else self.target.parent

    def _rows(self) -> list[dict[str, str]]:
        license_text = self.options.get("license")
        if self.target.is_file():
            return [{"path": self.target.name, "license": license_text or ""}]
        manifest = self.root / MANIFEST
        if manifest.is_file():
            with manifest.open(newline="", encoding="utf-8") as f:
                return list(csv.DictReader(f))
        return [
            {"path": p.relative_to(self.root).as_posix(), "license": license_text or ""}
            for p in sorted(self.root.rglob("*"))
            if p.is_file() and not p.is_symlink()
        ]

    def _candidate(self, row: dict[str, str]) -> Candidate:
        path = self.root / row["path"]
        repo = row.get("source_repo") or None
        author = repo.split("/", 1)[0] if repo and _GITHUB_REPO.match(repo) else None
        spdx_hint = (row.get("license") or "").split(" ", 1)[0]
        return Candidate(
            name=path.name,
            path=path,
            provenance=Provenance(
                source=self.name,
                source_url=_source_url(row, path),
                license_text=row.get("license") or None,
                page_url=f"https://github.com/{repo}" if author else None,
                source_commit=row.get("source_commit") or None,
                source_path=row.get("source_path") or row["path"],
                author=author,
                attribution=f"{row.get('asset_name') or path.stem} from {repo or self.root.name}, {spdx_hint}",
                title=row.get("asset_name") or path.stem,
                meta={key: row[key] for key in ("category", "pack", "format") if row.get(key)}
                | {"local_path": row["path"]},
            ),
        )

    async def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        if not self.target.exists():
            raise FileNotFoundError(f"local source path {self.target} does not exist")
        rows = self._rows()
        # The cursor belongs to one folder: a crawl of another folder starts at its beginning.
        start = cursor.get("index", 0) if cursor.get("path") == str(self.target) else 0
        size = int(self.options.get("batch_files") or BATCH_FILES)
        for begin in range(start, len(rows), size):
            end = min(begin + size, len(rows))
            after = {"path": str(self.target), "index": end} if end < len(rows) else None
            yield Batch([self._candidate(row) for row in rows[begin:end]], after)
