"""YouTube: metadata and transcripts of Blender tutorials, TEXT ONLY (no video or audio is fetched).

Videos come from the Data API v3 (/search, then /videos for the license), transcripts from a
timedtext-style endpoint (``?v=ID&lang=L`` answering ``<transcript><text start dur>...``). Each
transcript is stored as a JSON asset of format "transcript". Only videos their uploader published
under YouTube's Creative Commons option (CC BY 3.0) pass the default allow-list.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ElementTree
from collections.abc import AsyncIterator
from html import unescape
from typing import Any

from services.scraper.items import Batch, Candidate, Provenance
from services.scraper.sources import Source
from shared.settings import Settings


def parse_timedtext(body: str) -> list[dict[str, Any]]:
    """Segments of a timedtext transcript; an empty body (no captions) gives none."""
    if not body.strip():
        return []
    root = ElementTree.fromstring(body)
    return [
        {
            "start": float(t.get("start", 0)),
            "dur": float(t.get("dur", 0)),
            "text": unescape(t.text or "").strip(),
        }
        for t in root.iter("text")
    ]


class YouTubeSource(Source):
    name = "youtube"

    @classmethod
    def missing_configuration(cls, settings: Settings) -> str | None:
        return None if settings.scraper_youtube_api_key else "BMT_SCRAPER_YOUTUBE_API_KEY is not set"

    @property
    def api(self) -> str:
        return self.settings.scraper_youtube_api_url.rstrip("/")

    async def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        token = cursor.get("page_token")
        key = self.settings.scraper_youtube_api_key
        while True:
            params = {
                "part": "snippet",
                "type": "video",
                "q": self.options.get("query") or "blender tutorial",
                "videoLicense": "creativeCommon",
                "maxResults": self.options.get("per_page", 50),
                "key": key,
            }
            if token:
                params["pageToken"] = token
            found = await self.client.get_json(f"{self.api}/search", params=params)
            ids = [
                item["id"]["videoId"] for item in found.get("items", []) if item.get("id", {}).get("videoId")
            ]
            next_token = found.get("nextPageToken")
            after = {"page_token": next_token} if next_token else None
            yield await self._videos_batch(ids, after)
            if not next_token:
                return
            token = next_token

    async def _videos_batch(self, ids: list[str], after: dict[str, Any] | None) -> Batch:
        fresh = [i for i in ids if not self.known_url(f"https://www.youtube.com/watch?v={i}")]
        if not fresh:
            return Batch([], after)
        videos = await self.client.get_json(
            f"{self.api}/videos",
            params={
                "part": "snippet,status,contentDetails",
                "id": ",".join(fresh),
                "key": self.settings.scraper_youtube_api_key,
            },
        )
        candidates, rejected = [], []
        lang = self.options.get("lang") or "en"
        for video in videos.get("items", []):
            watch = f"https://www.youtube.com/watch?v={video['id']}"
            license_text = video.get("status", {}).get("license")
            decision = self.license(license_text)
            if not decision.allowed:
                rejected.append((watch, decision.reason or "license"))
                continue
            transcript = await self.client.get(
                self.settings.scraper_youtube_transcript_url, params={"v": video["id"], "lang": lang}
            )
            segments = parse_timedtext(transcript.text())
            if not segments:
                rejected.append((watch, "no transcript"))
                continue
            snippet = video.get("snippet", {})
            document = {
                "video_id": video["id"],
                "url": watch,
                "title": snippet.get("title"),
                "channel": snippet.get("channelTitle"),
                "published_at": snippet.get("publishedAt"),
                "duration": video.get("contentDetails", {}).get("duration"),
                "lang": lang,
                "segments": segments,
                "text": " ".join(s["text"] for s in segments),
            }
            candidates.append(
                Candidate(
                    name=f"{video['id']}.transcript.json",
                    declared_format="transcript",
                    data=json.dumps(document, ensure_ascii=False, sort_keys=True).encode(),
                    provenance=Provenance(
                        source=self.name,
                        source_url=watch,
                        license_text=license_text,
                        page_url=watch,
                        author=snippet.get("channelTitle"),
                        attribution=f'"{snippet.get("title")}" by {snippet.get("channelTitle")} ({watch}), {decision.spdx}',
                        title=snippet.get("title"),
                        meta={"video_id": video["id"], "lang": lang},
                    ),
                )
            )
        return Batch(candidates, after, rejected)
