"""Blender's official demo files page: every link to a .blend or an archive, with the title, author
and license written in the block (card, list item, table row) around it. The page is fetched
conditionally, so an unchanged page costs one 304."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

from services.scraper.html import links, parse_html
from services.scraper.items import Batch, Candidate, Provenance
from services.scraper.licenses import UNKNOWN, normalize
from services.scraper.sources import Source, file_name_from_url, wanted_file

_BLOCKS = {"article", "li", "tr", "section", "div"}
_BY = re.compile(r"^by\s+(.+)$", re.IGNORECASE)
_LICENSE_MENTION = re.compile(
    r"\b(cc0|cc[ -]by[\w .-]*|creative commons[\w .-]*|public domain|licen[cs]e:?\s*[\w .-]+)", re.I
)


class DemoFilesSource(Source):
    name = "demofiles"

    async def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        url = self.settings.scraper_demofiles_url
        page = await self.client.get(url, validators=self.remembered(url))
        if page.not_modified:
            yield Batch([], None)
            return
        self.remember(url, page.validators)
        document = parse_html(page.text())
        candidates, rejected = [], []
        for link, anchor in links(document, page.url):
            name = file_name_from_url(link)
            if not wanted_file(name):
                continue
            block = anchor.ancestor(_BLOCKS) or document
            text = block.text()
            mention = next(
                (m.group(0) for m in _LICENSE_MENTION.finditer(text) if normalize(m.group(0)) != UNKNOWN),
                None,
            )
            decision = self.license(mention)
            if not decision.allowed:
                rejected.append((link, decision.reason or "license"))
                continue
            heading = next(
                (h for tag in ("h1", "h2", "h3", "h4") if (h := block.find(tag)) is not None), None
            )
            title = heading.text() if heading is not None else anchor.text() or name
            by = next((m for piece in block.strings() if (m := _BY.match(piece))), None)
            author = by.group(1).strip() if by else None
            candidates.append(
                Candidate(
                    name=name,
                    url=link,
                    provenance=Provenance(
                        source=self.name,
                        source_url=link,
                        license_text=mention,
                        page_url=page.url,
                        author=author,
                        attribution=f'"{title}" by {author or "the Blender community"} ({page.url}), {decision.spdx}',
                        title=title,
                    ),
                )
            )
        yield Batch(candidates, None, rejected)
