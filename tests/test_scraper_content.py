"""Content sniffing, license normalisation and safe archive extraction, on real corpus files and
hand-built hostile archives."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import py7zr
import pytest

from services.scraper.archives import ArchiveLimits, ArchiveRejected, extract_archive
from services.scraper.licenses import decide, normalize
from services.scraper.sniff import SNIFF_BYTES, check_content, sniff
from tests.conftest import CORPUS

ALLOW = ["CC0-1.0", "CC-BY-4.0", "CC-BY-3.0", "MIT", "Apache-2.0", "BSD-2-Clause", "BSD-3-Clause"]
LIMITS = ArchiveLimits(max_member_bytes=1 << 20, max_total_bytes=4 << 20, max_files=50, max_ratio=100)


def head(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(SNIFF_BYTES)


@pytest.mark.parametrize(
    ("pattern", "kind"),
    [
        ("blend/quaternius/**/*.blend", {"zstd", "gzip", "blend"}),
        ("blend/assimp_testmodels/*.blend", {"blend", "gzip", "zstd"}),
        ("glb/**/*.glb", {"glb"}),
        ("fbx/**/*.fbx", {"fbx"}),
    ],
)
def test_corpus_files_sniff_as_their_format(pattern, kind):
    files = sorted(CORPUS.glob(pattern))[:40]
    assert files, f"no corpus files match {pattern}"
    for path in files:
        assert sniff(head(path)).kind in kind, path
        fmt, reason = check_content(path.name, head(path))
        assert reason is None, (path, reason)


def test_text_formats_and_impostors():
    obj = b"# Blender OBJ\nmtllib a.mtl\no Cube\nv 1 1 1\nv 0 0 0\nvn 0 1 0\nf 1 2 3\n"
    assert check_content("cube.obj", obj) == ("obj", None)
    assert check_content("scene.fbx", b"; FBX 7.3.0 project file\n") == ("fbx", None)
    assert check_content("scene.fbx", b"Kaydara FBX Binary  \x00\x1a\x00") == ("fbx", None)
    assert check_content("a.gltf", b'{"asset": {"version": "2.0"}, "nodes": []}') == ("gltf", None)
    assert check_content("a.usda", b"#usda 1.0\n") == ("usd", None)
    html = b"<!DOCTYPE html><html><head><title>404 Not Found</title></head></html>"
    assert check_content("chair.blend", html) == ("blend", "content is an HTML page, not blend")
    lfs = b"version https://git-lfs.github.com/spec/v1\noid sha256:abc\nsize 12\n"
    assert check_content("chair.blend", lfs)[1] == "content is a git-lfs pointer, not the file"
    assert check_content("chair.blend", b"PK\x03\x04rest")[1] == "content sniffed as zip, not blend"
    assert check_content("notes.txt", b"hello")[1] == "unsupported file type '.txt'"
    assert check_content("x.obj", b"this is prose, not geometry\n")[1] == "content sniffed as text, not obj"


@pytest.mark.parametrize(
    ("text", "spdx"),
    [
        ("CC0 1.0", "CC0-1.0"),
        ("CC0-1.0 (Quaternius License.txt)", "CC0-1.0"),
        ("Creative Commons Attribution 4.0", "CC-BY-4.0"),
        ("Creative Commons Attribution 3.0 Unported", "CC-BY-3.0"),
        ("CC Attribution", "CC-BY-4.0"),
        ("CC-BY-4.0 (README)", "CC-BY-4.0"),
        ("CC Attribution-NonCommercial", "CC-BY-NC-4.0"),
        ("Attribution-NonCommercial-NoDerivatives 4.0 International", "CC-BY-NC-ND-4.0"),
        ("CC BY-SA 4.0", "CC-BY-SA-4.0"),
        ("cc-by-nd", "CC-BY-ND-4.0"),
        ("MIT License", "MIT"),
        ("mit", "MIT"),
        ("Apache License 2.0", "Apache-2.0"),
        ('BSD 3-Clause "New" or "Revised" License', "BSD-3-Clause"),
        ("BSD-3-Clause (Debian assimp-testmodels 5.2.5~ds0-1, debian/copyright)", "BSD-3-Clause"),
        ('BSD 2-Clause "Simplified" License', "BSD-2-Clause"),
        ("creativeCommon", "CC-BY-3.0"),
        ("youtube", "unknown"),
        ("Royalty free", "unknown"),
        ("", "unknown"),
        (None, "unknown"),
    ],
)
def test_license_normalisation(text, spdx):
    assert normalize(text) == spdx


def test_license_allow_list_decisions():
    assert decide("CC0 1.0", ALLOW).allowed
    nc = decide("CC BY-NC 4.0", ALLOW)
    assert not nc.allowed and nc.reason == "license CC-BY-NC-4.0 not in the allow-list"
    nd = decide("CC-BY-ND", ALLOW)
    assert not nd.allowed and "CC-BY-ND-4.0" in nd.reason
    unknown = decide("All rights reserved", ALLOW)
    assert not unknown.allowed and unknown.reason == "license unknown"
    assert decide("MIT", ["CC0-1.0"]).reason == "license MIT not in the allow-list"


def _corpus_blend() -> Path:
    return next(iter(sorted((CORPUS / "blend" / "zeyu_free_blender_models").glob("*.blend"))))


def test_zip_extracts_members_and_refuses_traversal_and_symlinks(tmp_path):
    blend = _corpus_blend().read_bytes()
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pack/chair.blend", blend)
        z.writestr("../evil.blend", blend)
        z.writestr("/abs/evil.blend", blend)
        link = zipfile.ZipInfo("pack/link.blend")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        z.writestr(link, "/etc/passwd")
    out = tmp_path / "out"
    out.mkdir()
    result = extract_archive(archive, out, LIMITS)
    assert [name for name, _ in result.files] == ["pack/chair.blend"]
    assert (out / "pack" / "chair.blend").read_bytes() == blend
    assert dict(result.rejected) == {
        "../evil.blend": "unsafe member path (absolute or ..)",
        "/abs/evil.blend": "unsafe member path (absolute or ..)",
        "pack/link.blend": "symlink member",
    }
    assert not (tmp_path / "evil.blend").exists()
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_tar_refuses_links_and_traversal(tmp_path):
    blend = _corpus_blend().read_bytes()
    archive = tmp_path / "a.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        info = tarfile.TarInfo("ok/model.blend")
        info.size = len(blend)
        t.addfile(info, io.BytesIO(blend))
        for name, kind, target in [
            ("ok/sym.blend", tarfile.SYMTYPE, "/etc/passwd"),
            ("ok/hard.blend", tarfile.LNKTYPE, "../../etc/passwd"),
        ]:
            link = tarfile.TarInfo(name)
            link.type, link.linkname = kind, target
            t.addfile(link)
        evil = tarfile.TarInfo("../../escape.blend")
        evil.size = len(blend)
        t.addfile(evil, io.BytesIO(blend))
    out = tmp_path / "out"
    out.mkdir()
    result = extract_archive(archive, out, LIMITS)
    assert [name for name, _ in result.files] == ["ok/model.blend"]
    assert dict(result.rejected) == {
        "ok/sym.blend": "link member",
        "ok/hard.blend": "link member",
        "../../escape.blend": "unsafe member path (absolute or ..)",
    }
    assert not any(p.is_symlink() for p in out.rglob("*"))


def test_7z_extracts_and_refuses_symlinks(tmp_path):
    source = tmp_path / "src"
    (source / "d").mkdir(parents=True)
    (source / "d" / "m.blend").write_bytes(_corpus_blend().read_bytes())
    os.symlink("/etc/passwd", source / "d" / "link.blend")
    archive = tmp_path / "a.7z"
    with py7zr.SevenZipFile(archive, "w") as z:
        z.write(source / "d" / "m.blend", "d/m.blend")
        z.write(source / "d" / "link.blend", "d/link.blend")
    out = tmp_path / "out"
    out.mkdir()
    result = extract_archive(archive, out, LIMITS)
    assert [name for name, _ in result.files] == ["d/m.blend"]
    assert result.rejected == [("d/link.blend", "symlink member")]


def test_zip_bomb_is_refused_by_ratio_and_by_size(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("zeros.obj", bytes(3 << 20))  # compresses ~1000x
    with pytest.raises(ArchiveRejected, match="likely a zip bomb"):
        extract_archive(archive, tmp_path, LIMITS)
    with pytest.raises(ArchiveRejected, match="more than the cap"):
        extract_archive(archive, tmp_path, ArchiveLimits(1 << 30, 1 << 20, 50, 1e9))


def test_zip_with_lying_header_is_stopped_while_extracting(tmp_path):
    archive = tmp_path / "liar.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        z.writestr("big.obj", bytes(300_000))
    data = bytearray(archive.read_bytes())
    # Patch the central directory's uncompressed size (offset 24 in the entry) down to 10 bytes.
    central = data.rfind(b"PK\x01\x02")
    data[central + 24 : central + 28] = (10).to_bytes(4, "little")
    archive.write_bytes(bytes(data))
    limits = ArchiveLimits(max_member_bytes=100_000, max_total_bytes=1 << 30, max_files=10, max_ratio=1e9)
    out = tmp_path / "out"
    out.mkdir()
    # zipfile reads no more than the header promises, so the lie surfaces as a CRC mismatch.
    with pytest.raises(ArchiveRejected, match="unreadable zip archive: Bad CRC"):
        extract_archive(archive, out, limits)
    assert sum(p.stat().st_size for p in out.rglob("*") if p.is_file()) <= 10


def test_too_many_members_and_garbage(tmp_path):
    archive = tmp_path / "many.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for i in range(60):
            z.writestr(f"f{i}.obj", "v 0 0 0\n")
    with pytest.raises(ArchiveRejected, match="60 members"):
        extract_archive(archive, tmp_path, LIMITS)
    garbage = tmp_path / "g.zip"
    garbage.write_bytes(b"PK\x03\x04" + bytes(100))
    with pytest.raises(ArchiveRejected, match="unreadable zip"):
        extract_archive(garbage, tmp_path, LIMITS)
