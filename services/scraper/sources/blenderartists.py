"""Blender Artists, a Discourse forum: topics from its JSON API (/latest.json, or a category's
/c/{slug}/{id}.json), each topic's first post from /t/{id}.json, and the files uploaded to it.

Forum posts carry no license by default, so a file is taken only when the topic's tags or the first
post state one (e.g. "License: CC0"); everything else is rejected as "license unknown".
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from services.scraper.html import links, parse_html
from services.scraper.items import Batch, Candidate, Provenance
from services.scraper.licenses import UNKNOWN, normalize
from services.scraper.sources import Source, file_name_from_url, wanted_file

_LICENSE_SENTENCE = re.compile(
    r"[^.\n]*(licen[cs]e|\bcc0\b|\bcc[ -]by|creative commons|public domain)[^.\n]*", re.IGNORECASE
)


def stated_license(tags: list[str], text: str) -> str | None:
    """The license a topic states in its tags or its first post, as written there."""
    for tag in tags:
        if normalize(tag) != UNKNOWN:
            return tag
    for match in _LICENSE_SENTENCE.finditer(text):
        if normalize(match.group(0)) != UNKNOWN:
            return match.group(0).strip()
    return None


class BlenderArtistsSource(Source):
    name = "blenderartists"

    @property
    def base(self) -> str:
        return self.settings.scraper_blenderartists_url.rstrip("/")

    async def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        listing = self.options.get("listing") or "latest"  # or c/{slug}/{id}
        page, index = cursor.get("page", 0), cursor.get("index", 0)
        while True:
            data = await self.client.get_json(f"{self.base}/{listing}.json", params={"page": page})
            topic_list = data.get("topic_list", {})
            topics = topic_list.get("topics", [])
            has_next = bool(topic_list.get("more_topics_url")) and bool(topics)
            for i in range(index, len(topics)):
                if i + 1 < len(topics):
                    after: dict[str, Any] | None = {"page": page, "index": i + 1}
                else:
                    after = {"page": page + 1, "index": 0} if has_next else None
                yield await self.guarded(str(topics[i].get("id")), after, self._topic_batch(topics[i], after))
            if not has_next:
                return
            page, index = page + 1, 0

    async def _topic_batch(self, summary: dict[str, Any], after: dict[str, Any] | None) -> Batch:
        topic = await self.client.get_json(f"{self.base}/t/{summary['id']}.json")
        posts = topic.get("post_stream", {}).get("posts", [])
        if not posts:
            return Batch([], after)
        first = posts[0]
        page_url = f"{self.base}/t/{topic.get('slug', summary.get('slug', 'topic'))}/{topic['id']}"
        document = parse_html(first.get("cooked", ""))
        files = []  # (url, file name): Discourse keeps the original name in the link text
        for url, node in links(document, self.base):
            if "/uploads/" not in url:
                continue
            name = node.text() if wanted_file(node.text()) else file_name_from_url(url)
            if wanted_file(name):
                files.append((url, name))
        if not files:
            return Batch([], after)
        tags = [t if isinstance(t, str) else t.get("name", "") for t in topic.get("tags", [])]
        license_text = stated_license(tags, document.text())
        decision = self.license(license_text)
        if not decision.allowed:
            return Batch([], after, rejected=[(page_url, decision.reason or "license")] * len(files))
        author = first.get("display_username") or first.get("username")
        candidates = [
            Candidate(
                name=name,
                url=url,
                provenance=Provenance(
                    source=self.name,
                    source_url=url,
                    license_text=license_text,
                    page_url=page_url,
                    author=author,
                    attribution=f'"{topic.get("title")}" by {author} ({page_url}), {decision.spdx}',
                    title=topic.get("title"),
                    meta={"topic_id": topic["id"], "post_id": first.get("id")},
                ),
            )
            for url, name in files
        ]
        return Batch(candidates, after)
