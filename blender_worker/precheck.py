"""Checks made on an input file's bytes before Blender is allowed to open it (no bpy here).

A .blend must start with the ``BLENDER`` magic, plain or inside a zstd or gzip stream; compressed
streams are inflated chunk by chunk and counted, never held, so a decompression bomb is refused
before Blender would inflate it into memory.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from dataclasses import dataclass
from pathlib import Path

import zstandard

BLEND_MAGIC = b"BLENDER"
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
GZIP_MAGIC = b"\x1f\x8b"
GLB_MAGIC = b"glTF"
FBX_BINARY_MAGIC = b"Kaydara FBX Binary"
CHUNK = 1 << 20
END_BLOCK = b"ENDB"
TAIL_BYTES = 64  # the ENDB block header sits within the last 20 to 40 bytes of a .blend

IMPORT_FORMATS = {
    ".glb": "gltf",
    ".gltf": "gltf",
    ".fbx": "fbx",
    ".obj": "obj",
    ".stl": "stl",
    ".ply": "ply",
    ".usd": "usd",
    ".usda": "usd",
    ".usdc": "usd",
    ".usdz": "usd",
}


class RejectedInput(Exception):
    """The input is refused; the message is the exact reason recorded for it."""


@dataclass(frozen=True)
class CheckedInput:
    path: Path
    format: str  # "blend" or an importer key from IMPORT_FORMATS
    sha256: str
    size: int
    compression: str | None = None  # "zstd" or "gzip" for .blend files
    big_endian: bool = False  # a .blend saved by a big-endian Blender; bpy 5.0 refuses these
    ascii_fbx: bool = False  # FBX text format; Blender's importer refuses it


def check_input(path: Path, *, max_file_bytes: int, max_decompressed_bytes: int) -> CheckedInput:
    """Identify ``path`` by suffix and magic bytes; raise RejectedInput with the reason otherwise."""
    suffix = path.suffix.lower()
    if suffix != ".blend" and suffix not in IMPORT_FORMATS:
        raise RejectedInput(f"unsupported file type {suffix or '(no suffix)'!r}")
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise RejectedInput(f"cannot read file: {exc.strerror}") from None
    if size == 0:
        raise RejectedInput("empty file (0 bytes)")
    if size > max_file_bytes:
        raise RejectedInput(f"file of {size} bytes exceeds the cap of {max_file_bytes} bytes")
    head = _read_head(path, 64)
    sha256 = _sha256(path)
    if suffix != ".blend":
        return _check_import(path, suffix, head, sha256, size)
    if head.startswith(BLEND_MAGIC):
        with path.open("rb") as f:
            f.seek(max(0, size - TAIL_BYTES))
            _check_complete(f.read(), "file")
        return CheckedInput(path, "blend", sha256, size, big_endian=_is_big_endian(head))
    if head.startswith(ZSTD_MAGIC):
        inflated = _inflate_zstd(path, max_decompressed_bytes)
        return CheckedInput(path, "blend", sha256, size, "zstd", _is_big_endian(inflated))
    if head.startswith(GZIP_MAGIC):
        inflated = _inflate_gzip(path, max_decompressed_bytes)
        return CheckedInput(path, "blend", sha256, size, "gzip", _is_big_endian(inflated))
    raise RejectedInput(
        f"not a .blend file: starts with {head[:16]!r} (expected BLENDER, zstd or gzip magic bytes)"
    )


def _check_import(path: Path, suffix: str, head: bytes, sha256: str, size: int) -> CheckedInput:
    fmt = IMPORT_FORMATS[suffix]
    if suffix == ".glb" and not head.startswith(GLB_MAGIC):
        raise RejectedInput(f"not a glTF binary: starts with {head[:16]!r} (expected b'glTF')")
    ascii_fbx = False
    if fmt == "fbx" and not head.startswith(FBX_BINARY_MAGIC):
        if b"FBX" not in _read_head(path, 4096):
            raise RejectedInput(f"not an FBX file: starts with {head[:16]!r}")
        ascii_fbx = True
    return CheckedInput(path, fmt, sha256, size, ascii_fbx=ascii_fbx)


def _is_big_endian(head: bytes) -> bool:
    """Old header ``BLENDER_V248`` (byte 8), 5.x header ``BLENDER17-01v0500`` (byte 12): V = big-endian."""
    if head[7:8] in (b"_", b"-"):
        return head[8:9] == b"V"
    return head[12:13] == b"V"


def _read_head(path: Path, n: int) -> bytes:
    with path.open("rb") as f:
        return f.read(n)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _inflate_zstd(path: Path, cap: int) -> bytes:
    try:
        with (
            path.open("rb") as f,
            zstandard.ZstdDecompressor().stream_reader(f, read_across_frames=True) as z,
        ):
            return _count_inflated(z, cap, "zstd")
    except zstandard.ZstdError as exc:
        raise RejectedInput(f"corrupt zstd stream: {exc}") from None


def _inflate_gzip(path: Path, cap: int) -> bytes:
    try:
        with gzip.open(path, "rb") as z:
            return _count_inflated(z, cap, "gzip")
    except (OSError, EOFError, zlib.error) as exc:
        raise RejectedInput(f"corrupt gzip stream: {exc}") from None


def _count_inflated(stream, cap: int, kind: str) -> bytes:
    """Read the stream to its end, keeping only its head and tail; refuse once more than ``cap``
    bytes come out, or when the .blend inside is cut short."""
    head = stream.read(64)
    if not head.startswith(BLEND_MAGIC):
        raise RejectedInput(f"{kind} stream does not hold a .blend file: starts with {head[:16]!r}")
    total, tail = len(head), head
    while chunk := stream.read(CHUNK):
        total += len(chunk)
        tail = (tail + chunk)[-TAIL_BYTES:]
        if total > cap:
            raise RejectedInput(
                f"{kind} stream inflates past the cap of {cap} bytes (decompression bomb guard)"
            )
    _check_complete(tail, f"{kind} stream")
    return head


def _check_complete(tail: bytes, what: str) -> None:
    """Every complete .blend ends with an ENDB block header."""
    if END_BLOCK not in tail:
        raise RejectedInput(f"truncated .blend: the {what} ends without the ENDB block")
