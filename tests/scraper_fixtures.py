"""Fixture responses shaped like the real sources (from their public documentation: GitHub REST
search/trees/license, Discourse topic JSON, Sketchfab Data API v3, YouTube Data API v3 and
timedtext), registered on a FixtureSite. Asset bytes are real corpus files."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from shared.db import ensure_schema
from shared.settings import Settings
from tests.conftest import CORPUS
from tools.fixture_site import FixtureSite

HTML_ERROR = b"<!DOCTYPE html><html><head><title>Error</title></head><body>Please log in</body></html>"
COMMIT = "3f786850e387550fdab836ed7e6dc881de23001b"


@pytest.fixture
def scraper_db() -> None:
    """The migrated database of the test's embedded settings (conftest points them at tmp_path)."""
    ensure_schema()


def corpus_file(pattern: str, index: int = 0) -> Path:
    return sorted(CORPUS.glob(pattern))[index]


def blend_bytes(index: int = 0) -> bytes:
    return corpus_file("blend/zeyu_free_blender_models/*.blend", index).read_bytes()


def glb_bytes(index: int = 0) -> bytes:
    return corpus_file("glb/kenney/Platformer_Kit/*.glb", index).read_bytes()


def site_settings(site: FixtureSite, tmp_path: Path, **overrides: Any) -> Settings:
    """Settings pointing every source at the fixture site, fast retries, no rate limit."""
    base = site.base
    values: dict[str, Any] = {
        "data_dir": tmp_path / "var",
        "scraper_rate_per_host": 0,
        "scraper_backoff_base_s": 0.01,
        "scraper_max_retries": 3,
        "scraper_max_file_bytes": 2 * 1024**2,
        "scraper_github_api_url": base,
        "scraper_github_raw_url": base + "/raw",
        "scraper_github_media_url": base + "/media",
        "scraper_github_token": "test-token",
        "scraper_blendswap_url": base,
        "scraper_blenderartists_url": base,
        "scraper_sketchfab_api_url": base,
        "scraper_sketchfab_token": "sf-token",
        "scraper_demofiles_url": base + "/download/demo-files/",
        "scraper_youtube_api_url": base + "/youtube/v3",
        "scraper_youtube_transcript_url": base + "/api/timedtext",
        "scraper_youtube_api_key": "yt-key",
    }
    return Settings(**(values | overrides))


# --- GitHub ---------------------------------------------------------------------------------


def github_repo(
    site: FixtureSite, full_name: str, spdx: str | None, files: dict[str, bytes], clone_url: str = ""
) -> None:
    owner = full_name.split("/")[0]
    site.json(
        f"/repos/{full_name}",
        {
            "full_name": full_name,
            "html_url": f"{site.base}/{full_name}",
            "default_branch": "main",
            "owner": {"login": owner},
            "clone_url": clone_url or f"{site.base}/{full_name}.git",
        },
    )
    if spdx is not None:
        site.json(
            f"/repos/{full_name}/license",
            {
                "name": "LICENSE",
                "path": "LICENSE",
                "license": {"key": spdx.lower(), "spdx_id": spdx, "name": spdx},
            },
        )
    site.json(f"/repos/{full_name}/commits/main", {"sha": COMMIT, "commit": {"message": "add models"}})
    tree = [{"path": "docs", "mode": "040000", "type": "tree", "sha": "d" * 40}]
    for path, data in files.items():
        tree.append({"path": path, "mode": "100644", "type": "blob", "sha": "e" * 40, "size": len(data)})
        site.file(f"/raw/{full_name}/{COMMIT}/{path}", data)
    site.json(f"/repos/{full_name}/git/trees/{COMMIT}", {"sha": COMMIT, "tree": tree, "truncated": False})


def github_search(site: FixtureSite, pages: list[list[str]]) -> None:
    """Code search over ``pages`` of repository names, Link-header paginated like GitHub."""

    def handler(request: web.Request) -> web.Response:
        page = int(request.query.get("page", "1"))
        items = [
            {
                "name": "model.blend",
                "path": "model.blend",
                "sha": "f" * 40,
                "repository": {"full_name": name, "html_url": f"{site.base}/{name}"},
            }
            for name in pages[page - 1]
        ]
        headers = {}
        if page < len(pages):
            headers["Link"] = f'<{site.base}/search/code?q=extension%3Ablend&page={page + 1}>; rel="next"'
        return web.json_response(
            {"total_count": 99, "incomplete_results": False, "items": items}, headers=headers
        )

    site.route("/search/code", handler)


# --- Sketchfab ------------------------------------------------------------------------------


def sketchfab_model(uid: str, label: str, name: str = "Chair") -> dict[str, Any]:
    return {
        "uid": uid,
        "name": name,
        "viewerUrl": f"https://sketchfab.com/3d-models/{name.lower()}-{uid}",
        "isDownloadable": True,
        "user": {"username": "maker", "displayName": "A. Maker", "profileUrl": "https://sketchfab.com/maker"},
        "license": {"label": label, "slug": label.lower()},
    }


def sketchfab_site(site: FixtureSite, pages: list[list[dict[str, Any]]], downloads: dict[str, bytes]) -> None:
    def search(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Token sf-token":
            return web.json_response({"detail": "Invalid token."}, status=401)
        cursor = int(request.query.get("cursor", "0"))
        following = cursor + 1 if cursor + 1 < len(pages) else None
        nxt = f"{site.base}/v3/search?type=models&downloadable=true&cursor={following}" if following else None
        return web.json_response(
            {
                "cursors": {"next": following, "previous": None},
                "next": nxt,
                "previous": None,
                "results": pages[cursor],
            }
        )

    site.route("/v3/search", search)
    for uid, data in downloads.items():
        site.json(
            f"/v3/models/{uid}/download",
            {
                "glb": {
                    "url": f"{site.base}/storage/{uid}.glb?signature=abc",
                    "size": len(data),
                    "expires": 300,
                }
            },
        )
        site.file(f"/storage/{uid}.glb", data)
