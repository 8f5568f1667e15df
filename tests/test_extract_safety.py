"""Hostile input: every file gets a clear recorded error or a clean extraction, no code from a file
runs, and no worker stays dead."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import zstandard

from blender_worker.extract import main, run
from blender_worker.precheck import RejectedInput, check_input
from blender_worker.settings import ExtractSettings, get_extract_settings, memory_needed_mb
from tests.extract_support import CORPUS, REPO, build_blend_fixtures, extract, load_document, open_trusted

SMALL_BLEND = CORPUS / "blend" / "zeyu_free_blender_models" / "blend_wrench.blend"  # 71 kB, zstd
OTHER_BLEND = CORPUS / "blend" / "gltf_blender_io" / "scenes_01_cube.blend"


@pytest.fixture(scope="module")
def fixtures(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    out, markers = tmp_path_factory.mktemp("blends"), tmp_path_factory.mktemp("markers")
    build_blend_fixtures(out, markers)
    return out, markers


@pytest.fixture(scope="module")
def hostile_batch(fixtures: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> dict:
    blends, markers = fixtures
    inputs = tmp_path_factory.mktemp("inputs")
    (inputs / "zero.blend").write_bytes(b"")
    (inputs / "random.blend").write_bytes(os.urandom(4096))
    (inputs / "page.blend").write_bytes(b"<!DOCTYPE html><html><body>Not Found</body></html>")
    (inputs / "truncated_zstd.blend").write_bytes(SMALL_BLEND.read_bytes()[:30_000])
    plain = (blends / "grid.blend").read_bytes()
    assert plain.startswith(b"BLENDER"), "the truncation case needs an uncompressed .blend"
    (inputs / "truncated_plain.blend").write_bytes(plain[: len(plain) // 2])
    # Passes the magic-byte checks, then Blender's own reader must refuse it.
    (inputs / "garbled.blend").write_bytes(plain[:12] + os.urandom(4096) + b"ENDB" + bytes(20))
    # 64 MiB of zeros after a .blend header compress to a few kB; the cap below is 8 MiB.
    bomb = zstandard.ZstdCompressor(level=3).compress(b"BLENDER-v300" + bytes(64 * 1024**2))
    (inputs / "bomb.blend").write_bytes(bomb)
    (inputs / "notes.txt").write_text("not a model")
    paths = [
        *sorted(inputs.iterdir()),
        blends / "text_block.blend",
        blends / "driver.blend",
        blends / "grid.blend",
        SMALL_BLEND,
    ]
    results = extract(
        paths,
        tmp_path_factory.mktemp("out"),
        preview=True,  # rendering evaluates the scene too: it must not run the driver either
        max_vertices=5_000,
        max_decompressed_bytes=8 * 1024**2,
    )
    return {"results": results, "markers": markers, "blends": blends}


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("zero.blend", "empty file (0 bytes)"),
        ("random.blend", "not a .blend file: starts with"),
        ("page.blend", "not a .blend file: starts with b'<!DOCTYPE html>"),
        ("truncated_zstd.blend", "truncated .blend: the zstd stream ends without the ENDB block"),
        ("truncated_plain.blend", "truncated .blend: the file ends without the ENDB block"),
        ("garbled.blend", "Blender refused the file: "),
        ("bomb.blend", "zstd stream inflates past the cap of 8388608 bytes (decompression bomb guard)"),
        ("notes.txt", "unsupported file type '.txt'"),
        ("grid.blend", "meshes hold 10201 vertices, over the cap of 5000 (largest: 'Grid' with 10201)"),
    ],
)
def test_hostile_input_is_rejected_with_its_reason(hostile_batch: dict, name: str, reason: str) -> None:
    entry = hostile_batch["results"][name]
    assert entry["status"] == "rejected"
    assert reason in entry["reason"]
    assert "document" not in entry


def test_text_block_and_driver_never_run_but_are_recorded(hostile_batch: dict) -> None:
    results, markers, blends = hostile_batch["results"], hostile_batch["markers"], hostile_batch["blends"]
    for name in ("text_block.blend", "driver.blend"):
        assert results[name]["status"] == "ok", results[name]
        assert "auto-execution blocked, nothing ran" in results[name]["warnings"][0]
    assert not list(markers.iterdir()), "code from a file ran during extraction"
    driver = load_document(results["driver.blend"])["objects"][0]["animation"]["drivers"][0]
    assert driver["type"] == "SCRIPTED" and "write_text" in driver["expression"]
    assert results["driver.blend"]["preview"]
    # Control: opened with auto-execution on, the same files do write their markers.
    open_trusted(blends / "text_block.blend")
    open_trusted(blends / "driver.blend")
    assert sorted(p.name for p in markers.iterdir()) == ["driver.ran", "text_block.ran"]


def test_good_file_in_a_hostile_batch_is_extracted(hostile_batch: dict) -> None:
    entry = hostile_batch["results"][SMALL_BLEND.name]
    assert entry["status"] == "ok"
    assert load_document(entry)["objects"]


def test_timeout_kills_and_replaces_the_worker(fixtures: tuple[Path, Path], tmp_path: Path) -> None:
    blends, _ = fixtures
    results = extract([blends / "slow_smooth.blend", SMALL_BLEND], tmp_path, workers=1, timeout_s=3)
    assert results["slow_smooth.blend"]["status"] == "failed"
    assert results["slow_smooth.blend"]["reason"] == "timed out after 3 s (worker killed and replaced)"
    assert results[SMALL_BLEND.name]["status"] == "ok"


def test_worker_crash_on_memory_limit_is_recorded_and_batch_goes_on(
    fixtures: tuple[Path, Path], tmp_path: Path
) -> None:
    blends, _ = fixtures
    # A level-11 subdivision needs gigabytes; 1800 MB leaves bpy (1.25 GB of address space) little room.
    results = extract(
        [blends / "heavy_subsurf.blend", blends / "grid.blend", SMALL_BLEND],
        tmp_path,
        workers=1,
        memory_mb=1800,
        max_faces=100_000,  # the settings refuse a limit too small for the face cap
    )
    crashed = results["heavy_subsurf.blend"]
    assert crashed["status"] == "failed"
    assert "memory" in crashed["reason"].lower() or "crashed" in crashed["reason"]
    before, after = results["grid.blend"], results[SMALL_BLEND.name]  # largest file runs first
    assert before["status"] == after["status"] == "ok"
    assert before["pid"] != after["pid"], "the crashed worker was not replaced"


def test_batch_exit_status_counts_the_files_that_failed(
    fixtures: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    blends, _ = fixtures
    monkeypatch.setenv("BMT_EXTRACT_MAX_FACES", "100000")  # so that 1800 MB is an allowed limit
    get_extract_settings.cache_clear()
    inputs = [blends / "heavy_subsurf.blend", blends / "slow_smooth.blend", SMALL_BLEND]
    args = ["--out", str(tmp_path), "--workers", "1", "--timeout", "4", "--memory-mb", "1800"]
    try:
        status = main([*map(str, inputs), *args])
    finally:
        get_extract_settings.cache_clear()  # forget this test's environment
    assert status == 2, "one crash and one timeout, and the good file after them"
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["totals"] == {"failed": 2, "ok": 1}
    err = capsys.readouterr().err
    assert "failed: " + str(blends / "heavy_subsurf.blend") in err and "timed out after 4 s" in err


def test_worker_that_cannot_start_fails_the_batch_cleanly(tmp_path: Path) -> None:
    # Below what bpy alone needs: the settings refuse it, so they are built unchecked to reach the
    # pool's own start-failure path (an operator's RLIMIT or a changed bpy can still get there).
    settings = ExtractSettings.model_construct(workers=1, memory_mb=600)
    summary = run([SMALL_BLEND, OTHER_BLEND], tmp_path, settings, progress=False)
    results = {Path(entry["path"]).name: entry for entry in summary["files"]}
    for entry in results.values():
        assert entry["status"] == "failed"
        assert entry["reason"].startswith("extraction worker failed to start")


def test_settings_refuse_a_memory_limit_below_what_the_face_cap_needs() -> None:
    with pytest.raises(
        ValueError, match=r"memory_mb \(4096\) is below the 7400 MB that a file at the face cap"
    ):
        ExtractSettings(memory_mb=4096)  # the old default, with the documented 2M-face cap
    assert ExtractSettings(memory_mb=4096, max_faces=800_000).max_faces == 800_000
    assert ExtractSettings().memory_mb >= memory_needed_mb(ExtractSettings().max_faces)


def test_a_mesh_at_the_face_cap_extracts_within_the_memory_the_settings_require(tmp_path: Path) -> None:
    """The rule the settings enforce, held at a cap small enough for a test: a 400 x 400 grid with
    a UV map (160,000 faces) under memory_needed_mb(160,000). benchmarks/extract_memory.py measures
    the rule up to a million faces."""
    grid = tmp_path / "grid-400.blend"
    subprocess.run(
        [sys.executable, "-m", "tests.blend_fixtures", "--grid", str(grid), "400"],
        cwd=REPO,
        check=True,
        capture_output=True,
    )
    faces = 400 * 400
    results = extract(
        [grid],
        tmp_path / "out",
        workers=1,
        max_faces=faces,
        max_vertices=2 * faces,
        memory_mb=memory_needed_mb(faces),
    )
    entry = results[grid.name]
    assert entry["status"] == "ok", entry["reason"]
    assert entry["counts"]["faces"] == faces
    assert entry["peak_address_space_mb"] <= memory_needed_mb(faces)


def test_ascii_fbx_without_converter_is_rejected_with_reason(tmp_path: Path) -> None:
    fbx = CORPUS / "fbx" / "kenney" / "Furniture_Pack" / "bathroomCabinet.fbx"
    results = extract([fbx], tmp_path, assimp_path="no-such-assimp")
    assert results[fbx.name]["status"] == "rejected"
    assert results[fbx.name]["reason"] == (
        "ASCII FBX is not supported by Blender's FBX importer, and the assimp converter "
        "('no-such-assimp') is not installed (apt-get install assimp-utils)"
    )


def test_big_endian_blend_without_legacy_blender_is_rejected_with_reason(tmp_path: Path) -> None:
    big_endian = CORPUS / "blend" / "assimp_testmodels" / "yxa_1.blend"
    results = extract([big_endian], tmp_path, legacy_blender_path="no-such-blender")
    assert results[big_endian.name]["status"] == "rejected"
    assert results[big_endian.name]["reason"].startswith("big-endian .blend: Blender 5.0 removed support")


def test_precheck_identifies_formats_by_magic_bytes(tmp_path: Path) -> None:
    fake_glb = tmp_path / "fake.glb"
    fake_glb.write_bytes(b"PK\x03\x04 not a gltf")
    with pytest.raises(RejectedInput, match="not a glTF binary"):
        check_input(fake_glb, max_file_bytes=10**6, max_decompressed_bytes=10**6)
    checked = check_input(SMALL_BLEND, max_file_bytes=10**9, max_decompressed_bytes=10**9)
    assert (checked.format, checked.compression, checked.big_endian) == ("blend", "zstd", False)
    with pytest.raises(RejectedInput, match="exceeds the cap of 1000 bytes"):
        check_input(SMALL_BLEND, max_file_bytes=1000, max_decompressed_bytes=10**9)
    big_endian = check_input(
        CORPUS / "blend" / "assimp_testmodels" / "yxa_1.blend",
        max_file_bytes=10**9,
        max_decompressed_bytes=10**9,
    )
    assert big_endian.big_endian
