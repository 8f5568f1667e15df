"""Sources: each lists candidate files with their provenance, page by page, from a resumable cursor.

A source knows its site or API; downloading, sniffing, license filtering, dedup and storage are the
crawler's and the ingestor's, shared by all sources.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import PurePosixPath
from typing import Any, ClassVar

from services.scraper.http import HttpError, PoliteClient, RobotsDisallowed, Validators
from services.scraper.items import Batch
from services.scraper.licenses import LicenseDecision, decide
from services.scraper.sniff import ARCHIVE_FORMATS, ASSET_FORMATS, expected_format
from shared.settings import Settings

COLLECTED_FORMATS = ASSET_FORMATS | ARCHIVE_FORMATS


def wanted_file(name: str) -> bool:
    """Whether a file name promises something we collect (a 3D format or an archive)."""
    return expected_format(name) in COLLECTED_FORMATS


def file_name_from_url(url: str) -> str:
    return PurePosixPath(url.split("?", 1)[0].split("#", 1)[0]).name


class Source:
    """Base of every source. Subclasses set ``name`` and implement ``batches``."""

    name: ClassVar[str]

    def __init__(
        self,
        settings: Settings,
        client: PoliteClient | None,
        *,
        known_url: Callable[[str], bool] = lambda url: False,
        validators: dict[str, dict[str, str]] | None = None,
        **options: Any,
    ) -> None:
        self.settings = settings
        self._client = client
        self.known_url = known_url
        # url -> {"etag", "last_modified"}, persisted with the crawl cursor for conditional requests.
        self.validators: dict[str, dict[str, str]] = validators if validators is not None else {}
        self.options = options

    @property
    def client(self) -> PoliteClient:
        if self._client is None:
            raise RuntimeError(f"source {self.name} needs an HTTP client")
        return self._client

    @classmethod
    def missing_configuration(cls, settings: Settings) -> str | None:
        """Why this source cannot run with these settings (a missing token), or None."""
        return None

    def license(self, text: str | None) -> LicenseDecision:
        return decide(text, self.settings.scraper_license_allowlist)

    def remembered(self, url: str) -> Validators:
        return Validators.from_json(self.validators.get(url))

    def remember(self, url: str, validators: Validators) -> None:
        if validators.to_json():
            self.validators[url] = validators.to_json()

    def batches(self, cursor: dict[str, Any]) -> AsyncIterator[Batch]:
        raise NotImplementedError

    @staticmethod
    async def guarded(what: str, after: dict[str, Any] | None, listing: Awaitable[Batch]) -> Batch:
        """One item's listing; an item robots.txt forbids or the site lost is a rejection, not a crash.

        Errors on the result pages themselves propagate: the crawl stops with its cursor saved.
        """
        try:
            return await listing
        except RobotsDisallowed:
            return Batch([], after, rejected=[(what, "robots.txt disallows the path")])
        except HttpError as error:
            if error.status in (403, 404, 410, 451):
                return Batch([], after, rejected=[(what, f"item unavailable (HTTP {error.status})")])
            raise


def source_classes() -> dict[str, type[Source]]:
    # Imported here: each module imports this package for the base class.
    from services.scraper.sources.blenderartists import BlenderArtistsSource
    from services.scraper.sources.blendswap import BlendSwapSource
    from services.scraper.sources.demofiles import DemoFilesSource
    from services.scraper.sources.github import GitHubSource
    from services.scraper.sources.local import LocalSource
    from services.scraper.sources.sketchfab import SketchfabSource
    from services.scraper.sources.youtube import YouTubeSource

    classes: list[type[Source]] = [
        GitHubSource,
        BlendSwapSource,
        BlenderArtistsSource,
        SketchfabSource,
        DemoFilesSource,
        YouTubeSource,
        LocalSource,
    ]
    return {cls.name: cls for cls in classes}
