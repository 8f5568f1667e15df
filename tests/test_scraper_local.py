"""The local source on ../shared/corpus (every manifest row ingested with its license and
provenance; a second run stores nothing new), folders without a manifest, archives, and the CLI."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import py7zr
import pytest
from sqlalchemy import func, select

from services.scraper.crawl import Crawler
from services.scraper.licenses import normalize
from shared.db import session_scope
from shared.db.models import Asset
from shared.settings import get_settings
from tests.scraper_fixtures import CORPUS, blend_bytes, glb_bytes, scraper_db  # noqa: F401 (scraper_db is a fixture)

REPO = Path(__file__).resolve().parents[1]


def run_local(**options):
    return asyncio.run(Crawler(get_settings(), "local", hand_off=False, **options).run())


@pytest.mark.usefixtures("scraper_db")
def test_full_corpus_ingest_records_license_and_provenance_and_is_idempotent():
    with (CORPUS / "manifest.csv").open(newline="") as f:
        rows = list(csv.DictReader(f))
    digests = {row["path"]: hashlib.sha256((CORPUS / row["path"]).read_bytes()).hexdigest() for row in rows}
    unique = len(set(digests.values()))

    first = run_local(path=str(CORPUS))
    assert first.new == unique and first.duplicate == len(rows) - unique and not first.rejected

    with session_scope() as session:
        stored = {
            a.sha256: (a.license, a.source_url, a.source_commit, a.format, a.meta)
            for a in session.scalars(select(Asset))
        }
    assert set(stored) == set(digests.values())
    first_row_of = {}
    for row in rows:
        first_row_of.setdefault(digests[row["path"]], row)
    for sha, row in first_row_of.items():
        license_, url, commit, fmt, meta = stored[sha]
        assert license_ == normalize(row["license"]) and license_ != "unknown"
        assert commit == row["source_commit"] and meta["local_path"] == row["path"]
        assert url.endswith(row["source_path"]) and fmt == row["format"]
        if "/" in row["source_repo"]:
            assert (
                url
                == f"https://github.com/{row['source_repo']}/blob/{row['source_commit']}/{row['source_path']}"
            )
    licenses = {value[0] for value in stored.values()}
    assert licenses == {"CC0-1.0", "CC-BY-4.0", "Apache-2.0", "BSD-3-Clause"}

    second = run_local(path=str(CORPUS))
    assert second.new == 0 and second.duplicate == len(rows)
    with session_scope() as session:
        assert session.scalar(select(func.count(Asset.id))) == unique


@pytest.mark.usefixtures("scraper_db")
def test_folder_without_manifest_uses_the_license_option_and_opens_archives(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.blend").write_bytes(blend_bytes(0))
    (folder / "fake.blend").write_bytes(b"<html><body>not found</body></html>")
    with zipfile.ZipFile(folder / "pack.zip", "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("pack/b.blend", blend_bytes(1))
        z.writestr("pack/a_again.blend", blend_bytes(0))

    unlicensed = run_local(path=str(folder))
    assert unlicensed.new == 0 and unlicensed.rejected == {"license unknown": 3}

    summary = run_local(path=str(folder), license="CC0 1.0")
    assert summary.new == 2 and summary.duplicate == 1
    assert dict(summary.rejected) == {"content is an HTML page, not blend": 1}
    with session_scope() as session:
        member = session.scalar(select(Asset).where(Asset.source_url.endswith("pack.zip#pack/b.blend")))
        assert member is not None and member.license == "CC0-1.0" and member.meta["archive"] == "pack.zip"


@pytest.mark.usefixtures("scraper_db")
def test_single_archive_path_and_a_cursor_per_folder(tmp_path):
    archive = tmp_path / "pack.7z"
    source = tmp_path / "src"
    source.mkdir()
    (source / "m.blend").write_bytes(blend_bytes(3))
    with py7zr.SevenZipFile(archive, "w") as z:
        z.write(source / "m.blend", "models/m.blend")
    first = run_local(path=str(archive), license="CC-BY-4.0")
    assert first.new == 1
    folder = tmp_path / "many"
    folder.mkdir()
    for i in range(3):
        (folder / f"{i}.glb").write_bytes(glb_bytes(i))

    def crawl_one_batch(path):
        crawler = Crawler(
            get_settings(), "local", hand_off=False, path=str(path), license="MIT", batch_files=1
        )
        return asyncio.run(crawler.run(max_batches=1))

    assert crawl_one_batch(folder).new == 1
    resumed = run_local(path=str(folder), license="MIT", batch_files=1)
    assert (resumed.new, resumed.duplicate) == (2, 0)  # resumed after the first file
    crawl_one_batch(folder)  # interrupted again: the cursor points into "many"
    other = run_local(path=str(source), license="MIT", batch_files=1)
    assert other.duplicate == 1  # another folder starts at its own beginning


def test_cli_prints_a_summary(tmp_path):
    folder = tmp_path / "drop"
    folder.mkdir()
    (folder / "a.blend").write_bytes(blend_bytes(2))
    (folder / "notes.txt").write_text("hello")
    env = os.environ | {"BMT_DATA_DIR": str(get_settings().data_dir)}
    command = [
        sys.executable,
        "-m",
        "services.scraper",
        "local",
        "--path",
        str(folder),
        "--license",
        "MIT",
        "--no-extract",
    ]
    out = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "new: 1" in out.stdout and "unsupported file type '.txt'" in out.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "services.scraper", "local", "--path", str(tmp_path / "nowhere")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 1 and "does not exist" in missing.stderr


@pytest.mark.usefixtures("scraper_db")
def test_all_skips_unconfigured_web_sources(tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    env = os.environ | {"BMT_DATA_DIR": str(get_settings().data_dir), "BMT_CORPUS_DIR": str(folder)}
    out = subprocess.run(
        [sys.executable, "-m", "services.scraper", "all", "--no-extract"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert (
        "github: skipped (BMT_SCRAPER_GITHUB_TOKEN is not set)" in out.stdout
        or "github: skipped" in out.stdout
    )
    assert "blendswap: skipped (a web source" in out.stdout
    assert "local:\nnew: 0" in out.stdout
