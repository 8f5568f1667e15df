"""Command line: ``python -m services.scraper SOURCE [options]``, one crawl with a progress bar and
a summary (new, duplicate, rejected by reason) at the end.

    python -m services.scraper local --path ../shared/corpus
    python -m services.scraper github --query "extension:blend" --via git --max-batches 10
    python -m services.scraper all            # every source; unconfigured web sources are skipped
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from services.scraper.crawl import Crawler
from services.scraper.http import HttpError
from services.scraper.sources import source_classes
from shared.db import ensure_schema
from shared.settings import get_settings

log = logging.getLogger("services.scraper")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m services.scraper", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", choices=[*source_classes(), "all"])
    parser.add_argument(
        "--max-batches", type=int, default=None, help="stop after this many batches (resumable)"
    )
    parser.add_argument("--query", help="search query (github, sketchfab, youtube)")
    parser.add_argument("--mode", choices=["code", "repositories"], help="github: which search API")
    parser.add_argument(
        "--via", choices=["raw", "git"], default="raw", help="github: raw URLs or shallow clones"
    )
    parser.add_argument("--listing", help="blenderartists: 'latest' or a category path like c/resources/29")
    parser.add_argument("--lang", help="youtube: transcript language (default en)")
    parser.add_argument("--path", help="local: folder to ingest (default ../shared/corpus or BMT_CORPUS_DIR)")
    parser.add_argument("--license", help="local: license of files not listed in a manifest.csv")
    parser.add_argument(
        "--no-extract", action="store_true", help="do not hand new assets to the extract queue"
    )
    return parser.parse_args(argv)


def source_options(args: argparse.Namespace) -> dict[str, Any]:
    keys = ("query", "mode", "via", "listing", "lang", "path", "license")
    return {key: getattr(args, key) for key in keys if getattr(args, key) is not None}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    settings = get_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    ensure_schema()
    names = list(source_classes()) if args.source == "all" else [args.source]
    failed = False
    for name in names:
        missing = source_classes()[name].missing_configuration(settings)
        if args.source == "all" and name != "local" and not settings.scraper_crawl_web:
            missing = missing or "a web source; set BMT_SCRAPER_CRAWL_WEB=true to include it in 'all'"
        if missing:
            print(f"{name}: skipped ({missing})")
            continue
        crawler = Crawler(settings, name, progress=True, hand_off=not args.no_extract, **source_options(args))
        try:
            summary = asyncio.run(crawler.run(max_batches=args.max_batches))
        except (HttpError, OSError) as error:
            # The cursor of the last finished batch is saved: running the command again resumes there.
            print(f"{name}: stopped: {error}", file=sys.stderr)
            summary, failed = crawler.summary, True
        print(f"{name}:\n{summary.render()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
