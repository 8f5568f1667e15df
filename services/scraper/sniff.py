"""Content sniffing by magic bytes: a file is what its first bytes say, not what its name says.

A web server that answers a download with an HTML error page, or a repository that stores a
git-lfs pointer instead of the file, must not end up in the corpus as a ".blend".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath

SNIFF_BYTES = 4096

# Extension (lower case, no dot) -> the format name stored on the Asset row.
FORMAT_BY_EXTENSION = {
    "blend": "blend",
    "glb": "glb",
    "gltf": "gltf",
    "fbx": "fbx",
    "obj": "obj",
    "usd": "usd",
    "usda": "usd",
    "usdc": "usd",
    "usdz": "usd",
    "zip": "zip",
    "7z": "7z",
    "tar": "tar",
    "tgz": "tar",
    "gz": "gzip",
}
ASSET_FORMATS = {"blend", "glb", "gltf", "fbx", "obj", "usd"}
ARCHIVE_FORMATS = {"zip", "7z", "tar"}


@dataclass(frozen=True)
class Sniffed:
    kind: str  # blend, glb, gltf, fbx, obj, usd, zip, 7z, tar, gzip, zstd, html, lfs-pointer, text, unknown


def _is_text(head: bytes) -> bool:
    if b"\x00" in head:
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as error:
        # A cut in the middle of a multi-byte character at the end of the window is still text.
        return error.start >= len(head) - 3
    return True


def _looks_like_obj(text: str) -> bool:
    keywords = {"v", "vn", "vt", "f", "o", "g", "usemtl", "mtllib", "s", "l"}
    counted = 0
    for line in text.splitlines()[:200]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.split(maxsplit=1)[0] not in keywords:
            return False
        counted += 1
    return counted > 0


def sniff(head: bytes) -> Sniffed:
    """Classify content from its first bytes (SNIFF_BYTES are plenty)."""
    if head.startswith(b"BLENDER"):
        return Sniffed("blend")
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return Sniffed("zstd")
    if head.startswith(b"\x1f\x8b"):
        return Sniffed("gzip")
    if head.startswith(b"glTF"):
        return Sniffed("glb")
    if head.startswith(b"Kaydara FBX Binary"):
        return Sniffed("fbx")
    if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
        return Sniffed("zip")
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return Sniffed("7z")
    if len(head) > 262 and head[257:262] == b"ustar":
        return Sniffed("tar")
    if head.startswith(b"PXR-USDC"):
        return Sniffed("usd")
    if not _is_text(head):
        return Sniffed("unknown")
    text = head.decode("utf-8", errors="replace").lstrip("\ufeff")
    stripped = text.lstrip()
    lowered = stripped[:512].lower()
    if lowered.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in lowered[:256]:
        return Sniffed("html")
    if stripped.startswith("version https://git-lfs.github.com/spec/"):
        return Sniffed("lfs-pointer")
    if stripped.startswith("; FBX"):
        return Sniffed("fbx")
    if stripped.startswith("#usda"):
        return Sniffed("usd")
    if stripped.startswith("{") and '"asset"' in text:
        return Sniffed("gltf")
    if _looks_like_obj(text):
        return Sniffed("obj")
    return Sniffed("text")


def expected_format(name: str) -> str | None:
    """The format a file name promises (``None`` when the extension says nothing we collect)."""
    suffixes = [s.lstrip(".").lower() for s in PurePosixPath(name).suffixes]
    if suffixes[-2:] == ["tar", "gz"]:
        return "tar"
    return FORMAT_BY_EXTENSION.get(suffixes[-1]) if suffixes else None


def check_content(name: str, head: bytes) -> tuple[str, str | None]:
    """Return (format, rejection reason or None) for a file called ``name`` starting with ``head``.

    zstd and gzip are accepted for .blend because Blender writes compressed .blend files that way;
    a gzip-compressed tar is accepted for .tar.gz/.tgz.
    """
    promised = expected_format(name)
    seen = sniff(head)
    if promised is None:
        return seen.kind, f"unsupported file type {PurePosixPath(name).suffix or '(no extension)'!r}"
    if seen.kind == "html":
        return promised, f"content is an HTML page, not {promised}"
    if seen.kind == "lfs-pointer":
        return promised, "content is a git-lfs pointer, not the file"
    compatible = {
        "blend": {"blend", "zstd", "gzip"},
        "tar": {"tar", "gzip"},
        "gzip": {"gzip"},
        "usd": {"usd", "zip"},  # .usdz is a zip
        "gltf": {"gltf"},
    }.get(promised, {promised})
    if seen.kind not in compatible:
        return promised, f"content sniffed as {seen.kind}, not {promised}"
    return promised, None
