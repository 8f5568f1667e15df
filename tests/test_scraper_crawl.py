"""Crawls end to end against a loopback server: download, sniff, license, dedup, blob store, Asset
rows, crawl state; interrupted crawls resume from the cursor saved in the database."""

from __future__ import annotations

import asyncio
import io
import zipfile

import pytest
from aiohttp import web
from sqlalchemy import select

from services.scraper.crawl import Crawler, load_state
from services.scraper.http import HttpError
from shared.db import session_scope
from shared.db.models import Asset
from tests.scraper_fixtures import (  # noqa: F401 (scraper_db is a fixture)
    COMMIT,
    HTML_ERROR,
    blend_bytes,
    github_repo,
    github_search,
    glb_bytes,
    scraper_db,
    site_settings,
    sketchfab_model,
    sketchfab_site,
)
from tests.test_scraper_sources import ITEM, TIMEDTEXT, _topic
from tools.fixture_site import Fault, FixtureSite

LFS_POINTER = b"version https://git-lfs.github.com/spec/v1\noid sha256:4d7a\nsize 12345\n"


def assets() -> dict[str, Asset]:
    with session_scope() as session:
        rows = session.scalars(select(Asset)).all()
        session.expunge_all()
        return {row.source_url: row for row in rows}


async def crawl(site: FixtureSite, tmp_path, source: str, max_batches=None, **options):
    crawler = Crawler(site_settings(site, tmp_path), source, hand_off=False, **options)
    summary = await crawler.run(max_batches=max_batches)
    return summary


@pytest.mark.usefixtures("scraper_db")
def test_github_crawl_stores_files_with_provenance_and_rejects_bad_content(tmp_path):
    async def scenario():
        async with FixtureSite(
            robots="User-agent: *\nDisallow: /raw/alice/chairs/" + COMMIT + "/private/\n"
        ) as site:
            github_search(site, [["alice/chairs"]])
            github_repo(
                site,
                "alice/chairs",
                "CC0-1.0",
                {
                    "chair.blend": blend_bytes(0),
                    "copy/chair.blend": blend_bytes(0),  # same bytes under another path
                    "broken.blend": HTML_ERROR,
                    "private/secret.blend": blend_bytes(1),
                    "flaky.glb": glb_bytes(0),
                    "slow.glb": glb_bytes(1),
                    "lfs/statue.blend": LFS_POINTER,  # raw serves the pointer; /media serves the file
                },
            )
            site.file(f"/media/alice/chairs/{COMMIT}/lfs/statue.blend", blend_bytes(6))
            site.fail(f"/raw/alice/chairs/{COMMIT}/flaky.glb", Fault(503), Fault(500))
            site.fail(f"/raw/alice/chairs/{COMMIT}/slow.glb", Fault(429, {"Retry-After": "1"}))
            first = await crawl(site, tmp_path, "github")
            raw_hits = sum(1 for r in site.requests if r.path.startswith("/raw/"))
            second = await crawl(site, tmp_path, "github")
            raw_hits_again = sum(1 for r in site.requests if r.path.startswith("/raw/")) - raw_hits
            return first, second, raw_hits_again, site.base

    first, second, raw_hits_again, base = asyncio.run(scenario())
    assert first.new == 4 and first.duplicate == 1
    assert dict(first.rejected) == {
        "content is an HTML page, not blend": 1,
        "robots.txt disallows the path": 1,
    }
    stored = assets()
    chair = stored[f"{base}/alice/chairs/blob/{COMMIT}/chair.blend"]
    statue = stored[f"{base}/alice/chairs/blob/{COMMIT}/lfs/statue.blend"]
    assert statue.size == len(blend_bytes(6))  # the LFS file, not its pointer
    assert chair.license == "CC0-1.0" and chair.source_commit == COMMIT and chair.source_path == "chair.blend"
    assert chair.author == "alice" and chair.format == "blend" and chair.size == len(blend_bytes(0))
    assert {a.format for a in stored.values()} == {"blend", "glb"}
    # The second crawl skips every stored file by its URL at the commit; only the two URLs that
    # stored nothing (the duplicate copy and the HTML page) are fetched again, and still store nothing.
    assert second.new == 0 and raw_hits_again == 2
    assert load_state("github")["position"] is None


@pytest.mark.usefixtures("scraper_db")
def test_interrupted_github_crawl_resumes_from_the_saved_cursor(tmp_path):
    async def scenario():
        async with FixtureSite() as site:
            github_search(site, [["alice/a"], ["bob/b"], ["carol/c"]])
            github_repo(site, "alice/a", "MIT", {"a.blend": blend_bytes(0)})
            github_repo(site, "bob/b", "MIT", {"b.blend": blend_bytes(1)})
            github_repo(site, "carol/c", "MIT", {"c.blend": blend_bytes(2)})
            search = site._routes["/search/code"]
            api = {"broken": True}

            def breaking(request: web.Request):
                if request.query.get("page") == "2" and api["broken"]:
                    return web.Response(status=500)  # the search API fails past page 1
                return search(request)

            site.route("/search/code", breaking)
            with pytest.raises(HttpError, match="HTTP 500"):
                await crawl(site, tmp_path, "github")
            state_after_failure = load_state("github")
            api["broken"] = False
            page_one_before = sum(
                1 for r in site.requests if r.path == "/search/code" and r.query.get("page") == "1"
            )
            resumed = await crawl(site, tmp_path, "github")
            page_one_after = sum(
                1 for r in site.requests if r.path == "/search/code" and r.query.get("page") == "1"
            )
            return state_after_failure, resumed, page_one_after - page_one_before, site.hits("/repos/alice/a")

    state, resumed, page_one_again, alice_hits = asyncio.run(scenario())
    assert state["position"] == {"page": 2, "index": 0}
    assert resumed.new == 2  # b and c; a was stored before the failure
    assert page_one_again == 0 and alice_hits == 1
    assert len(assets()) == 3


@pytest.mark.usefixtures("scraper_db")
def test_crawl_stops_after_max_batches_and_continues(tmp_path):
    async def scenario():
        async with FixtureSite() as site:
            sketchfab_site(
                site,
                [[sketchfab_model("u1", "CC Attribution")], [sketchfab_model("u2", "CC0")]],
                {"u1": glb_bytes(0), "u2": glb_bytes(1)},
            )
            first = await crawl(site, tmp_path, "sketchfab", max_batches=1)
            position = load_state("sketchfab")["position"]
            rest = await crawl(site, tmp_path, "sketchfab")
            return first, position, rest, site.hits("/v3/models/u1/download")

    first, position, rest, u1_downloads = asyncio.run(scenario())
    assert first.new == 1 and rest.new == 1 and u1_downloads == 1
    assert position["url"].endswith("cursor=1")
    stored = list(assets().values())
    by_license = {a.license for a in stored}
    assert by_license == {"CC-BY-4.0", "CC0-1.0"}
    assert all(a.attribution and "A. Maker" in a.attribution for a in stored)


@pytest.mark.usefixtures("scraper_db")
def test_blendswap_zip_download_is_extracted_safely(tmp_path):
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("chair/chair.blend", blend_bytes(0))
        z.writestr("../../escape.blend", blend_bytes(1))
        z.writestr("chair/readme.txt", "enjoy")
    payload = archive.getvalue()

    async def scenario():
        async with FixtureSite() as site:
            site.html("/blends", '<html><a href="/blend/101">Chair</a></html>')
            site.html("/blend/101", ITEM.format(title="Wooden chair", license="CC-BY", id=101))
            site.file(
                "/blend/101/download",
                payload,
                {"Content-Disposition": 'attachment; filename="chair_101.zip"'},
            )
            summary = await crawl(site, tmp_path, "blendswap")
            again = await crawl(site, tmp_path, "blendswap")
            return summary, again, site.base, site.hits("/blend/101"), site.hits("/blend/101/download")

    summary, again, base, item_hits, downloads = asyncio.run(scenario())
    assert summary.new == 1
    # A re-crawl knows the item page by its members' keys (page#member): no page fetch, no download.
    assert again.new == 0 and (item_hits, downloads) == (1, 1)
    assert dict(summary.rejected) == {
        "unsafe member path (absolute or ..)": 1,
        "unsupported file type '.txt'": 1,
    }
    (asset,) = assets().values()
    assert asset.source_url == f"{base}/blend/101#chair/chair.blend"
    assert asset.license == "CC-BY-4.0" and asset.author == "Jo Artist" and asset.title == "Wooden chair"
    assert not (tmp_path / "escape.blend").exists()


@pytest.mark.usefixtures("scraper_db")
def test_demofiles_oversized_download_and_wrong_content(tmp_path):
    page = """<html><div><h3>Big</h3><p>CC0</p><a href="/demo/big.blend">get</a></div>
    <div><h3>Login wall</h3><p>CC0</p><a href="/demo/wall.blend">get</a></div>
    <div><h3>Good</h3><p>CC-BY</p><a href="/demo/good.blend">get</a></div></html>"""

    async def scenario():
        async with FixtureSite() as site:
            site.html("/download/demo-files/", page)
            site.file("/demo/big.blend", b"BLENDER-v279" + bytes(3 * 1024**2))
            site.file("/demo/wall.blend", HTML_ERROR)
            site.file("/demo/good.blend", blend_bytes(3))
            return await crawl(site, tmp_path, "demofiles")

    summary = asyncio.run(scenario())
    assert summary.new == 1
    assert dict(summary.rejected) == {
        "download larger than the size cap": 1,
        "content is an HTML page, not blend": 1,
    }
    assert list((tmp_path / "var" / "scrape-tmp").iterdir()) == []  # nothing partial is kept


@pytest.mark.usefixtures("scraper_db")
def test_blenderartists_and_youtube_store_assets_and_transcripts(tmp_path):
    async def scenario():
        async with FixtureSite() as site:
            site.json("/latest.json", {"topic_list": {"more_topics_url": None, "topics": [{"id": 5}]}})
            cooked = (
                '<p>License: CC0</p><a class="attachment" href="/uploads/short-url/zz.blend">table.blend</a>'
            )
            site.json("/t/5.json", _topic(5, cooked))
            site.file("/uploads/short-url/zz.blend", blend_bytes(4))
            site.json("/youtube/v3/search", {"items": [{"id": {"kind": "youtube#video", "videoId": "v1"}}]})
            site.json(
                "/youtube/v3/videos",
                {
                    "items": [
                        {
                            "id": "v1",
                            "snippet": {"title": "Bevel tips", "channelTitle": "Ch"},
                            "status": {"license": "creativeCommon"},
                        }
                    ]
                },
            )
            site.route("/api/timedtext", lambda r: web.Response(text=TIMEDTEXT, content_type="text/xml"))
            forum = await crawl(site, tmp_path, "blenderartists")
            videos = await crawl(site, tmp_path, "youtube")
            return forum, videos

    forum, videos = asyncio.run(scenario())
    assert forum.new == 1 and videos.new == 1
    stored = assets()
    transcript = stored["https://www.youtube.com/watch?v=v1"]
    assert (
        transcript.format == "transcript"
        and transcript.license == "CC-BY-3.0"
        and transcript.title == "Bevel tips"
    )
    table = next(a for a in stored.values() if a.format == "blend")
    assert table.license == "CC0-1.0" and table.author == "artist"


@pytest.mark.usefixtures("scraper_db")
def test_demofiles_recrawl_is_conditional_on_the_validators_saved_with_the_cursor(tmp_path):
    page = '<html><div><h3>Cube</h3><p>CC0</p><a href="/demo/cube.blend">get</a></div></html>'

    def demo_page(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"p1"':
            return web.Response(status=304)
        return web.Response(text=page, content_type="text/html", headers={"ETag": '"p1"'})

    async def scenario():
        async with FixtureSite() as site:
            site.route("/download/demo-files/", demo_page)
            site.file("/demo/cube.blend", blend_bytes(5))
            first = await crawl(site, tmp_path, "demofiles")
            state = load_state("demofiles")
            second = await crawl(site, tmp_path, "demofiles")
            return first, state, second, site.hits("/demo/cube.blend")

    first, state, second, downloads = asyncio.run(scenario())
    assert first.new == 1 and second.new == 0 and downloads == 1
    (validators,) = state["validators"].values()
    assert validators == {"etag": '"p1"'} and state["position"] is None and "finished_at" in state
