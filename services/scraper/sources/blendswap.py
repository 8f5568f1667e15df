"""BlendSwap: the HTML listing (/blends?page=N) and each item page (/blend/{id}): title, author,
license text (mapped to SPDX) and the download link. The file name comes from the download's
Content-Disposition when the link does not say it."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from services.scraper.html import Node, links, parse_html
from services.scraper.items import Batch, Candidate, Provenance
from services.scraper.sources import Source, file_name_from_url, wanted_file

_ITEM = re.compile(r"/blend/(\d+)/?$")
_LICENSE_LINE = re.compile(r"licen[cs]e\s*:?\s*(.+)", re.IGNORECASE)


def _license_text(page: Node) -> str | None:
    marked = page.find(cls="license")
    if marked is not None:
        return marked.text()
    match = _LICENSE_LINE.search(page.text())
    return match.group(1)[:80] if match else None


class BlendSwapSource(Source):
    name = "blendswap"

    @property
    def base(self) -> str:
        return self.settings.scraper_blendswap_url.rstrip("/")

    async def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        page, index = cursor.get("page", 1), cursor.get("index", 0)
        while True:
            listing_url = f"{self.base}/blends"
            listing = await self.client.get(listing_url, params={"page": page})
            document = parse_html(listing.text())
            items = list(dict.fromkeys(url for url, _ in links(document, listing.url) if _ITEM.search(url)))
            has_next = any(a.attrs.get("rel") == "next" for a in document.find_all("a"))
            for i in range(index, len(items)):
                if i + 1 < len(items):
                    after: dict[str, Any] | None = {"page": page, "index": i + 1}
                else:
                    after = {"page": page + 1, "index": 0} if has_next else None
                yield await self.guarded(items[i], after, self._item_batch(items[i], after))
            if not has_next:
                return
            page, index = page + 1, 0

    async def _item_batch(self, item_url: str, after: dict[str, Any] | None) -> Batch:
        if self.known_url(item_url):
            return Batch([], after)
        page = parse_html((await self.client.get(item_url)).text())
        license_text = _license_text(page)
        decision = self.license(license_text)
        if not decision.allowed:
            return Batch([], after, rejected=[(item_url, decision.reason or "license")])
        download = next(((url, a) for url, a in links(page, item_url) if "/download" in url), None)
        if download is None:
            return Batch([], after, rejected=[(item_url, "no download link")])
        url, anchor = download
        heading = page.find("h1")
        title = heading.text() if heading is not None else None
        author_link = next((a for _, a in links(page, item_url) if "/profile/" in a.attrs["href"]), None)
        author = author_link.text() if author_link is not None else None
        named = anchor.attrs.get("data-filename") or file_name_from_url(url)
        provenance = Provenance(
            source=self.name,
            # The item page is the stable key: BlendSwap's download URLs are per-session redirects.
            source_url=item_url,
            license_text=license_text,
            page_url=item_url,
            author=author,
            attribution=f'"{title}" by {author} ({item_url}), {decision.spdx}',
            title=title,
            meta={"blend_id": _ITEM.search(item_url).group(1)},  # type: ignore[union-attr]
        )
        name = named if wanted_file(named) else ""  # empty: taken from Content-Disposition
        return Batch([Candidate(name=name, url=url, provenance=provenance)], after)
