"""The GitHub source's git path: a shallow clone of a real local repository (file:// URL), files
keyed by sha256 and by their URL at the cloned commit."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from sqlalchemy import select

from services.scraper.crawl import Crawler
from shared.db import session_scope
from shared.db.models import Asset
from tests.scraper_fixtures import (  # noqa: F401 (scraper_db is a fixture)
    blend_bytes,
    github_repo,
    github_search,
    glb_bytes,
    scraper_db,
    site_settings,
)
from tools.fixture_site import FixtureSite


def git(*args, cwd):
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout.strip()


def make_repo(path):
    path.mkdir()
    git("init", "-q", "-b", "main", cwd=path)
    (path / "models").mkdir()
    (path / "models" / "chair.blend").write_bytes(blend_bytes(0))
    (path / "models" / "crate.glb").write_bytes(glb_bytes(0))
    (path / "README.md").write_text("free models\n")
    git("add", ".", cwd=path)
    git("-c", "user.name=T", "-c", "user.email=t@example.org", "commit", "-qm", "models", cwd=path)
    return git("rev-parse", "HEAD", cwd=path)


@pytest.mark.usefixtures("scraper_db")
def test_git_clone_path_keys_files_by_sha_and_url_at_commit(tmp_path):
    head = make_repo(tmp_path / "origin")

    async def scenario():
        async with FixtureSite() as site:
            github_search(site, [["alice/models", "bob/gone"]])
            github_repo(site, "alice/models", "Apache-2.0", {}, clone_url=(tmp_path / "origin").as_uri())
            site.json("/repos/alice/models/commits/main", {"sha": head})
            github_repo(site, "bob/gone", "MIT", {}, clone_url=(tmp_path / "missing").as_uri())
            crawler = Crawler(site_settings(site, tmp_path), "github", hand_off=False, via="git")
            summary = await crawler.run()
            return summary, site.base, site.hits(f"/repos/alice/models/git/trees/{head}")

    summary, base, tree_hits = asyncio.run(scenario())
    assert summary.new == 2 and dict(summary.rejected) == {"git clone failed": 1}
    assert tree_hits == 0  # the clone lists the files; the trees API is not needed
    with session_scope() as session:
        stored = {a.source_path: a for a in session.scalars(select(Asset))}
        chair = stored["models/chair.blend"]
        assert chair.source_url == f"{base}/alice/models/blob/{head}/models/chair.blend"
        assert chair.source_commit == head and chair.license == "Apache-2.0" and chair.format == "blend"
        assert set(stored) == {"models/chair.blend", "models/crate.glb"}
    assert list((tmp_path / "var" / "scrape-tmp").iterdir()) == []  # clones and downloads are removed
