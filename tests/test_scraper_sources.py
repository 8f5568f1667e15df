"""Each web source's listing against a loopback server serving responses shaped like the real API
or site: pagination, resuming from a cursor, licenses, robots.txt. (Downloads and storage are in
test_scraper_crawl.py.)"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from aiohttp import web

from services.scraper.http import PoliteClient
from services.scraper.items import Batch
from services.scraper.sources.blenderartists import BlenderArtistsSource, stated_license
from services.scraper.sources.blendswap import BlendSwapSource
from services.scraper.sources.demofiles import DemoFilesSource
from services.scraper.sources.github import GitHubSource
from services.scraper.sources.sketchfab import SketchfabSource
from services.scraper.sources.youtube import YouTubeSource, parse_timedtext
from tests.scraper_fixtures import (
    COMMIT,
    blend_bytes,
    github_repo,
    github_search,
    glb_bytes,
    site_settings,
    sketchfab_model,
    sketchfab_site,
)
from tools.fixture_site import Fault, FixtureSite


async def collect(
    site: FixtureSite, tmp_path, cls, cursor: dict[str, Any] | None = None, **options
) -> list[Batch]:
    settings = site_settings(site, tmp_path)
    async with PoliteClient(settings) as client:
        source = cls(settings, client, **options)
        return [batch async for batch in source.batches(cursor or {})]


def names(batches: list[Batch]) -> list[str]:
    return [c.name for b in batches for c in b.candidates]


def rejections(batches: list[Batch]) -> list[tuple[str, str]]:
    return [r for b in batches for r in b.rejected]


def test_github_pages_licenses_and_urls_at_a_commit(tmp_path):
    async def scenario():
        async with FixtureSite() as site:
            github_search(site, [["alice/chairs", "alice/chairs", "bob/nc-props"], ["carol/unlicensed"]])
            github_repo(
                site, "alice/chairs", "CC0-1.0", {"models/chair.blend": blend_bytes(), "notes.txt": b"x"}
            )
            github_repo(site, "bob/nc-props", "CC-BY-NC-4.0", {"prop.blend": blend_bytes(1)})
            github_repo(site, "carol/unlicensed", None, {"lamp.blend": blend_bytes(2)})
            batches = await collect(site, tmp_path, GitHubSource)
            auth = {r.headers.get("Authorization") for r in site.requests if r.path.startswith("/repos")}
            return batches, auth, site.hits("/repos/alice/chairs/license")

    batches, auth, license_hits = asyncio.run(scenario())
    assert names(batches) == ["chair.blend"]  # notes.txt is not a 3D file
    chair = batches[0].candidates[0]
    assert chair.url.endswith(f"/raw/alice/chairs/{COMMIT}/models/chair.blend")
    assert chair.provenance.source_url.endswith(f"/alice/chairs/blob/{COMMIT}/models/chair.blend")
    assert chair.provenance.source_commit == COMMIT and chair.provenance.license_text == "CC0-1.0"
    assert chair.provenance.author == "alice"
    assert rejections(batches) == [
        ("bob/nc-props", "license CC-BY-NC-4.0 not in the allow-list"),
        ("carol/unlicensed", "license unknown"),
    ]
    assert license_hits == 1  # a repository repeated in code search is visited once
    assert auth == {"Bearer test-token"}
    assert [b.next_cursor for b in batches] == [{"page": 1, "index": 1}, {"page": 2, "index": 0}, None]


def test_github_resumes_from_cursor_and_rejects_oversized_by_tree_size(tmp_path):
    async def scenario():
        async with FixtureSite() as site:
            github_search(site, [["alice/chairs"], ["carol/big"]])
            github_repo(site, "alice/chairs", "MIT", {"chair.blend": blend_bytes()})
            github_repo(site, "carol/big", "MIT", {"huge.blend": bytes(3 * 1024**2), "ok.glb": glb_bytes()})
            batches = await collect(site, tmp_path, GitHubSource, cursor={"page": 2, "index": 0})
            return batches, site.hits("/repos/alice/chairs")

    batches, first_repo_hits = asyncio.run(scenario())
    assert first_repo_hits == 0
    assert names(batches) == ["ok.glb"]
    assert rejections(batches) == [("huge.blend", "file larger than the size cap")]


def test_sketchfab_cursor_pagination_token_and_cc_licenses(tmp_path):
    async def scenario():
        async with FixtureSite() as site:
            sketchfab_site(
                site,
                [
                    [
                        sketchfab_model("u1", "CC Attribution"),
                        sketchfab_model("u2", "CC Attribution-NonCommercial"),
                    ],
                    [sketchfab_model("u3", "CC0 Public Domain")],
                ],
                {"u1": glb_bytes(0), "u3": glb_bytes(1)},
            )
            return await collect(site, tmp_path, SketchfabSource), site.hits("/v3/models/u2/download")

    batches, nc_download_hits = asyncio.run(scenario())
    assert names(batches) == ["u1.glb", "u3.glb"]
    first = batches[0].candidates[0]
    assert first.provenance.license_text == "CC Attribution" and first.provenance.author == "A. Maker"
    assert "Authorization" not in first.headers  # the signed storage URL never sees the API token
    assert rejections(batches) == [("u2", "license CC-BY-NC-4.0 not in the allow-list")]
    assert nc_download_hits == 0


def test_sketchfab_missing_token_is_reported():
    from shared.settings import Settings

    assert SketchfabSource.missing_configuration(Settings()) == "BMT_SCRAPER_SKETCHFAB_TOKEN is not set"


def _topic(topic_id: int, cooked: str, tags: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": topic_id,
        "title": f"Free model {topic_id}",
        "slug": f"free-model-{topic_id}",
        "tags": tags or [],
        "post_stream": {
            "posts": [{"id": topic_id * 10, "post_number": 1, "username": "artist", "cooked": cooked}],
            "stream": [topic_id * 10],
        },
    }


def test_blenderartists_discourse_pages_uploads_and_stated_licenses(tmp_path):
    def latest(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "0"))
        topics = [[{"id": 1, "slug": "a"}, {"id": 2, "slug": "b"}], [{"id": 3, "slug": "c"}]][page]
        more = "/latest?page=1" if page == 0 else None
        body = {
            "users": [],
            "topic_list": {"can_create_topic": False, "more_topics_url": more, "topics": topics},
        }
        return web.json_response(body)

    upload = '<a class="attachment" href="/uploads/short-url/{key}.blend">{name}</a> (1.2 MB)'

    async def scenario():
        async with FixtureSite() as site:
            site.route("/latest.json", latest)
            site.json(
                "/t/1.json",
                _topic(1, "<p>My chair, license: CC0.</p>" + upload.format(key="k1", name="chair.blend")),
            )
            site.json(
                "/t/2.json",
                _topic(2, "<p>Just a render, enjoy.</p>" + upload.format(key="k2", name="car.blend")),
            )
            site.json("/t/3.json", _topic(3, upload.format(key="k3", name="lamp.blend"), tags=["cc-by"]))
            return await collect(site, tmp_path, BlenderArtistsSource)

    batches = asyncio.run(scenario())
    assert names(batches) == ["chair.blend", "lamp.blend"]
    chair = batches[0].candidates[0]
    assert chair.url.endswith("/uploads/short-url/k1.blend") and chair.provenance.page_url.endswith(
        "/t/free-model-1/1"
    )
    assert chair.provenance.author == "artist"
    assert rejections(batches) == [(batches[1].rejected[0][0], "license unknown")]
    assert batches[-1].next_cursor is None
    assert stated_license(["cc0"], "") == "cc0" and stated_license([], "Made with love") is None


LISTING = """<html><body><div class="blends">
<a href="/blend/101">Wooden chair</a><a href="/blend/102">Race car</a><a href="/blend/103">Hidden</a>
</div>{next}</body></html>"""
ITEM = """<html><body><h1>{title}</h1><a href="/profile/77">Jo Artist</a>
<div class="license">{license}</div><a class="btn" href="/blend/{id}/download">Download</a></body></html>"""


def test_blendswap_listing_item_pages_licenses_and_robots(tmp_path):
    async def scenario():
        async with FixtureSite(robots="User-agent: *\nDisallow: /blend/103\n") as site:
            site.html(
                "/blends",
                lambda r: (
                    LISTING.format(next='<a rel="next" href="/blends?page=2">next</a>')
                    if r.query.get("page") == "1"
                    else '<html><a href="/blend/104">Lamp</a></html>'
                ),
            )
            site.html("/blend/101", ITEM.format(title="Wooden chair", license="CC-BY", id=101))
            site.html("/blend/102", ITEM.format(title="Race car", license="CC-BY-NC", id=102))
            site.html("/blend/103", ITEM.format(title="Hidden", license="CC-0", id=103))
            site.html("/blend/104", ITEM.format(title="Lamp", license="CC-0", id=104))
            return await collect(site, tmp_path, BlendSwapSource), site.hits("/blend/103")

    batches, robot_hits = asyncio.run(scenario())
    candidates = [c for b in batches for c in b.candidates]
    assert [c.provenance.title for c in candidates] == ["Wooden chair", "Lamp"]
    assert (
        candidates[0].provenance.author == "Jo Artist" and candidates[0].name == ""
    )  # named by the download
    assert candidates[0].url.endswith("/blend/101/download")
    reasons = dict(rejections(batches))
    assert reasons == {
        candidates[0].provenance.page_url.replace("101", "102"): "license CC-BY-NC-4.0 not in the allow-list",
        candidates[0].provenance.page_url.replace("101", "103"): "robots.txt disallows the path",
    }
    assert robot_hits == 0


DEMO_PAGE = """<html><body>
<div class="card"><h3>Classroom</h3><p>by Christophe Seux</p><p>License: CC0</p>
<a href="https://download.example/demo/classroom.zip">Download</a></div>
<div class="card"><h3>Barbershop</h3><p>by Blender Studio</p><p>CC-BY-NC</p>
<a href="/demo/barbershop.blend">Download</a></div>
<div class="card"><h3>Monkey</h3><p>CC-BY 4.0</p><a href="/demo/monkey.blend">Download</a>
<a href="/demo/readme.txt">Readme</a></div>
</body></html>"""


def test_demofiles_page_blocks_and_conditional_recrawl(tmp_path):
    def page(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"demo-1"':
            return web.Response(status=304)
        return web.Response(text=DEMO_PAGE, content_type="text/html", headers={"ETag": '"demo-1"'})

    async def scenario():
        async with FixtureSite() as site:
            site.route("/download/demo-files/", page)
            settings = site_settings(site, tmp_path)
            async with PoliteClient(settings) as client:
                source = DemoFilesSource(settings, client)
                first = [b async for b in source.batches({})]
                second = [b async for b in source.batches({})]
            return first, second

    first, second = asyncio.run(scenario())
    candidates = first[0].candidates
    assert [(c.name, c.provenance.title, c.provenance.author) for c in candidates] == [
        ("classroom.zip", "Classroom", "Christophe Seux"),
        ("monkey.blend", "Monkey", None),
    ]
    assert candidates[1].url.endswith("/demo/monkey.blend")
    assert [reason for _, reason in first[0].rejected] == ["license CC-BY-NC-4.0 not in the allow-list"]
    assert second == [Batch([], None)]  # 304: nothing changed


TIMEDTEXT = '<?xml version="1.0" encoding="utf-8" ?><transcript><text start="0.5" dur="2.1">Add a cube &amp;amp; bevel it</text><text start="2.6" dur="1">then subdivide</text></transcript>'


def test_youtube_search_videos_and_transcripts(tmp_path):
    def search(request: web.Request) -> web.Response:
        token = request.query.get("pageToken")
        ids = ["vidA", "vidB"] if token is None else ["vidC"]
        body = {
            "kind": "youtube#searchListResponse",
            "pageInfo": {"totalResults": 3, "resultsPerPage": 2},
            "items": [
                {"kind": "youtube#searchResult", "id": {"kind": "youtube#video", "videoId": i}} for i in ids
            ],
        }
        if token is None:
            body["nextPageToken"] = "CAIQAA"
        return web.json_response(body)

    def videos(request: web.Request) -> web.Response:
        licenses = {"vidA": "creativeCommon", "vidB": "youtube", "vidC": "creativeCommon"}
        items = [
            {
                "id": vid,
                "snippet": {
                    "title": f"Modeling {vid}",
                    "channelTitle": "Blender Guru",
                    "publishedAt": "2024-01-01T00:00:00Z",
                },
                "status": {"license": licenses[vid]},
                "contentDetails": {"duration": "PT12M"},
            }
            for vid in request.query["id"].split(",")
        ]
        return web.json_response({"kind": "youtube#videoListResponse", "items": items})

    def timedtext(request: web.Request) -> web.Response:
        return web.Response(text=TIMEDTEXT if request.query["v"] == "vidA" else "", content_type="text/xml")

    async def scenario():
        async with FixtureSite() as site:
            site.route("/youtube/v3/search", search)
            site.route("/youtube/v3/videos", videos)
            site.route("/api/timedtext", timedtext)
            site.fail("/youtube/v3/videos", Fault(503))
            batches = await collect(site, tmp_path, YouTubeSource)
            keys = {r.query.get("key") for r in site.requests if r.path.startswith("/youtube")}
            return batches, keys

    batches, keys = asyncio.run(scenario())
    assert keys == {"yt-key"}
    assert names(batches) == ["vidA.transcript.json"]
    transcript = batches[0].candidates[0]
    document = json.loads(transcript.data)
    assert (
        transcript.declared_format == "transcript"
        and document["text"] == "Add a cube & bevel it then subdivide"
    )
    assert document["segments"][0] == {"start": 0.5, "dur": 2.1, "text": "Add a cube & bevel it"}
    assert sorted(reason for _, reason in rejections(batches)) == ["license unknown", "no transcript"]
    assert [b.next_cursor for b in batches] == [{"page_token": "CAIQAA"}, None]
    assert parse_timedtext("") == []
