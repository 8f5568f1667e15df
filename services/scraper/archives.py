"""Safe extraction of zip, 7z and tar archives downloaded from strangers.

Each member is checked before a byte is written: no absolute paths or ``..`` (path traversal),
no symlinks or hard links (they could point outside the extraction folder), no devices. Bombs are
bounded three ways: member count, total uncompressed size and the uncompressed/compressed ratio,
and zip/tar members are copied with a running byte count so a lying header cannot get past the
caps. A whole-archive problem raises ``ArchiveRejected``; a bad member is skipped with its reason.
"""

from __future__ import annotations

import stat
import tarfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO

import py7zr

from services.scraper.sniff import sniff

_CHUNK = 1 << 20


class ArchiveRejected(Exception):
    """The archive as a whole is refused (bomb, too many members, unreadable)."""


@dataclass(frozen=True)
class ArchiveLimits:
    max_member_bytes: int
    max_total_bytes: int
    max_files: int
    max_ratio: float


@dataclass
class Extracted:
    files: list[tuple[str, Path]] = field(default_factory=list)  # (member name, extracted path)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (member name, reason)


def archive_kind(path: Path) -> str | None:
    with path.open("rb") as f:
        head = f.read(512)
    kind = sniff(head).kind
    if kind in ("zip", "7z", "tar"):
        return kind
    if kind == "gzip" and tarfile.is_tarfile(path):
        return "tar"
    return None


def safe_member_path(name: str) -> PurePosixPath | None:
    """The relative path a member may be written to, or None when the name is unsafe."""
    normalized = name.replace("\\", "/")
    if not normalized or normalized.startswith("/") or (len(normalized) > 1 and normalized[1] == ":"):
        return None
    parts = [p for p in PurePosixPath(normalized).parts if p not in ("", ".")]
    if not parts or any(p == ".." for p in parts):
        return None
    return PurePosixPath(*parts)


def _check_totals(count: int, total: int, packed: int, limits: ArchiveLimits) -> None:
    if count > limits.max_files:
        raise ArchiveRejected(f"archive has {count} members, more than the cap of {limits.max_files}")
    if total > limits.max_total_bytes:
        raise ArchiveRejected(
            f"archive expands to {total} bytes, more than the cap of {limits.max_total_bytes}"
        )
    if packed > 0 and total / packed > limits.max_ratio:
        raise ArchiveRejected(
            f"archive expands {total / packed:.0f}x (cap {limits.max_ratio:.0f}x): likely a zip bomb"
        )


class _Budget:
    """Counts bytes actually written so headers that understate sizes cannot exceed the caps."""

    def __init__(self, limits: ArchiveLimits) -> None:
        self.limits = limits
        self.written = 0

    def copy(self, source: IO[bytes], dest: Path) -> None:
        member_bytes = 0
        dest.parent.mkdir(parents=True, exist_ok=True)
        with dest.open("wb") as out:
            while chunk := source.read(_CHUNK):
                member_bytes += len(chunk)
                self.written += len(chunk)
                if member_bytes > self.limits.max_member_bytes:
                    raise _MemberTooLarge
                if self.written > self.limits.max_total_bytes:
                    raise ArchiveRejected("archive expands past the total size cap while extracting")
                out.write(chunk)


class _MemberTooLarge(Exception):
    pass


def _too_large(limits: ArchiveLimits) -> str:
    return f"member larger than the cap of {limits.max_member_bytes} bytes"


def _extract_zip(path: Path, dest: Path, limits: ArchiveLimits, result: Extracted) -> None:
    with zipfile.ZipFile(path) as archive:
        infos = [i for i in archive.infolist() if not i.is_dir()]
        _check_totals(len(infos), sum(i.file_size for i in infos), path.stat().st_size, limits)
        budget = _Budget(limits)
        for info in infos:
            target = safe_member_path(info.filename)
            mode = info.external_attr >> 16
            if target is None:
                result.rejected.append((info.filename, "unsafe member path (absolute or ..)"))
            elif stat.S_ISLNK(mode):
                result.rejected.append((info.filename, "symlink member"))
            elif info.file_size > limits.max_member_bytes:
                result.rejected.append((info.filename, _too_large(limits)))
            else:
                try:
                    with archive.open(info) as source:
                        budget.copy(source, dest / target)
                except _MemberTooLarge:
                    (dest / target).unlink(missing_ok=True)
                    result.rejected.append((info.filename, _too_large(limits)))
                    continue
                result.files.append((str(target), dest / target))


def _extract_tar(path: Path, dest: Path, limits: ArchiveLimits, result: Extracted) -> None:
    with tarfile.open(path) as archive:
        members = archive.getmembers()
        regular = [m for m in members if m.isfile()]
        _check_totals(len(members), sum(m.size for m in regular), path.stat().st_size, limits)
        budget = _Budget(limits)
        for member in members:
            if member.isdir():
                continue
            target = safe_member_path(member.name)
            if target is None:
                result.rejected.append((member.name, "unsafe member path (absolute or ..)"))
            elif member.issym() or member.islnk():
                result.rejected.append((member.name, "link member"))
            elif not member.isfile():
                result.rejected.append((member.name, "special file member"))
            elif member.size > limits.max_member_bytes:
                result.rejected.append((member.name, _too_large(limits)))
            else:
                source = archive.extractfile(member)
                assert source is not None  # regular files always have content
                try:
                    budget.copy(source, dest / target)
                except _MemberTooLarge:
                    (dest / target).unlink(missing_ok=True)
                    result.rejected.append((member.name, _too_large(limits)))
                    continue
                result.files.append((str(target), dest / target))


def _extract_7z(path: Path, dest: Path, limits: ArchiveLimits, result: Extracted) -> None:
    with py7zr.SevenZipFile(path) as archive:
        infos = [i for i in archive.list() if not i.is_directory]
        _check_totals(len(infos), sum(i.uncompressed or 0 for i in infos), path.stat().st_size, limits)
        wanted = []
        for info in infos:
            target = safe_member_path(info.filename)
            if target is None:
                result.rejected.append((info.filename, "unsafe member path (absolute or ..)"))
            elif info.is_symlink:
                result.rejected.append((info.filename, "symlink member"))
            elif (info.uncompressed or 0) > limits.max_member_bytes:
                result.rejected.append((info.filename, _too_large(limits)))
            else:
                wanted.append(info.filename)
        if wanted:
            archive.extract(path=dest, targets=wanted)
    # 7z sizes come from the headers the decoder itself obeys; still verify what landed on disk.
    for name in wanted:
        extracted = dest / str(safe_member_path(name))
        if extracted.is_symlink() or not extracted.is_file():
            result.rejected.append((name, "member did not extract to a regular file"))
        else:
            result.files.append((str(safe_member_path(name)), extracted))


_EXTRACTORS = {"zip": _extract_zip, "tar": _extract_tar, "7z": _extract_7z}


def extract_archive(path: Path, dest: Path, limits: ArchiveLimits) -> Extracted:
    """Extract the archive at ``path`` into the empty folder ``dest`` and report what came out."""
    kind = archive_kind(path)
    if kind is None:
        raise ArchiveRejected("not a zip, 7z or tar archive")
    result = Extracted()
    try:
        _EXTRACTORS[kind](path, dest, limits, result)
    except (zipfile.BadZipFile, tarfile.TarError, py7zr.exceptions.Bad7zFile, EOFError, OSError) as error:
        raise ArchiveRejected(f"unreadable {kind} archive: {error}") from error
    return result
