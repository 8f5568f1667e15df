"""Sketchfab Data API v3: downloadable models from /v3/search (cursor-paginated), their Creative
Commons license, and the archive from /v3/models/{uid}/download (``Authorization: Token``)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from services.scraper.items import Batch, Candidate, Provenance
from services.scraper.sources import Source
from shared.settings import Settings

# Sketchfab's download endpoint offers these; glb is one self-contained file, gltf a zip.
_FORMAT_PREFERENCE = [("glb", "glb"), ("gltf", "zip"), ("source", "zip")]


class SketchfabSource(Source):
    name = "sketchfab"

    @classmethod
    def missing_configuration(cls, settings: Settings) -> str | None:
        return None if settings.scraper_sketchfab_token else "BMT_SCRAPER_SKETCHFAB_TOKEN is not set"

    @property
    def api(self) -> str:
        return self.settings.scraper_sketchfab_api_url.rstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.settings.scraper_sketchfab_token}"}

    def _first_page_url(self) -> str:
        return f"{self.api}/v3/search"

    async def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        url = cursor.get("url") or self._first_page_url()
        params: dict[str, Any] | None = None
        if url == self._first_page_url():
            params = {"type": "models", "downloadable": "true", "count": self.options.get("per_page", 24)}
            if self.options.get("query"):
                params["q"] = self.options["query"]
        index = cursor.get("index", 0)
        while url:
            page = await self.client.get_json(url, params=params, headers=self.headers)
            results = page.get("results", [])
            next_url = page.get("next")
            for i in range(index, len(results)):
                after = (
                    {"url": url, "index": i + 1}
                    if i + 1 < len(results)
                    else ({"url": next_url} if next_url else None)
                )
                yield await self.guarded(
                    results[i].get("uid", "?"), after, self._model_batch(results[i], after)
                )
            # Sketchfab's "next" is a complete URL with the query and the cursor in it.
            url, params, index = next_url, None, 0

    async def _model_batch(self, model: dict[str, Any], after: dict[str, Any] | None) -> Batch:
        license_info = model.get("license")
        label = license_info.get("label") if isinstance(license_info, dict) else license_info
        decision = self.license(label)
        uid = model["uid"]
        if not decision.allowed:
            return Batch([], after, rejected=[(uid, decision.reason or "license")])
        viewer = model.get("viewerUrl") or f"https://sketchfab.com/3d-models/{uid}"
        if self.known_url(viewer):
            return Batch([], after)
        offers = await self.client.get_json(f"{self.api}/v3/models/{uid}/download", headers=self.headers)
        chosen = next(((key, ext) for key, ext in _FORMAT_PREFERENCE if key in offers), None)
        if chosen is None:
            return Batch([], after, rejected=[(uid, "no downloadable format offered")])
        key, ext = chosen
        user = model.get("user") or {}
        author = user.get("displayName") or user.get("username")
        provenance = Provenance(
            source=self.name,
            source_url=viewer,
            license_text=label,
            page_url=viewer,
            author=author,
            attribution=f'"{model.get("name", uid)}" by {author} ({viewer}), {label}',
            title=model.get("name"),
            meta={"uid": uid, "format": key},
        )
        # The download URL is a short-lived signed storage URL: it must not receive our API token.
        return Batch([Candidate(name=f"{uid}.{ext}", url=offers[key]["url"], provenance=provenance)], after)
