"""What sources produce and the crawler consumes: candidates (files with provenance), batches and
a tally of outcomes."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from shared.settings import Settings


def scratch_dir(settings: Settings) -> Path:
    """Where downloads, clones and extracted archives wait for ingest: on the data volume, not /tmp."""
    path = settings.data_dir / "scrape-tmp"
    path.mkdir(parents=True, exist_ok=True)
    return path


@dataclass
class Provenance:
    """Where a file came from, recorded on its Asset row so datasets can filter and attribute."""

    source: str  # github, blendswap, blenderartists, sketchfab, demofiles, youtube, local
    source_url: str  # the file's own URL (at a commit where there is one): the second key after sha256
    license_text: str | None  # as the source wrote it; normalised to SPDX at ingest
    page_url: str | None = None
    source_commit: str | None = None
    source_path: str | None = None
    author: str | None = None
    attribution: str | None = None
    title: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Provenance:
        return cls(**data)


@dataclass
class Candidate:
    """A file to fetch (``url``) or read (``path``), named so its extension says what it should be."""

    name: str
    provenance: Provenance
    url: str | None = None
    path: Path | None = None
    headers: dict[str, str] = field(default_factory=dict)
    lfs_url: str | None = None  # where the file is when ``url`` answers with a git-lfs pointer
    declared_format: str | None = None  # set where the name says nothing (transcripts)
    data: bytes | None = None  # small text items built by the source itself (transcripts)


@dataclass
class Batch:
    """Candidates plus the cursor that resumes the crawl after them (None: the crawl is finished)."""

    candidates: list[Candidate]
    next_cursor: dict[str, Any] | None
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (what, reason) found while listing
    cleanup: Path | None = None  # a folder of the source's (a clone) removed once the batch is ingested


class Outcome(StrEnum):
    NEW = "new"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


@dataclass
class Result:
    name: str
    outcome: Outcome
    sha256: str | None = None
    reason: str | None = None


@dataclass
class Summary:
    new: int = 0
    duplicate: int = 0
    bytes_new: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def add(self, result: Result, size: int = 0) -> None:
        if result.outcome is Outcome.NEW:
            self.new += 1
            self.bytes_new += size
        elif result.outcome is Outcome.DUPLICATE:
            self.duplicate += 1
        else:
            self.rejected[result.reason or "unknown"] += 1

    def reject(self, reason: str, count: int = 1) -> None:
        self.rejected[reason] += count

    def to_json(self) -> dict[str, Any]:
        return {
            "new": self.new,
            "duplicate": self.duplicate,
            "bytes_new": self.bytes_new,
            "rejected": dict(self.rejected),
        }

    def render(self) -> str:
        lines = [f"new: {self.new} ({self.bytes_new / 2**20:.1f} MiB)", f"duplicate: {self.duplicate}"]
        lines.append(f"rejected: {sum(self.rejected.values())}")
        lines += [f"  {count:6d}  {reason}" for reason, count in self.rejected.most_common()]
        return "\n".join(lines)
