"""Scraper ingest throughput, each path against a baseline measured in the same run.

- local: the local source ingesting ../shared/corpus (sniff, license, sha256, dedup, blob store,
  Asset rows) vs. plain sha256 hashing + copying of the same files;
- web: the demo-files source crawling a loopback fixture page that links N corpus files (robots.txt,
  downloads streamed and hashed, sniffed, stored) vs. a raw aiohttp loop downloading the same URLs
  with the same concurrency. The per-host rate limit is off for both (it measures politeness, not
  throughput).

    python -m benchmarks.scrape [--web-files 300]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import tempfile
import time
from pathlib import Path

import aiohttp

from services.scraper.crawl import Crawler
from shared.corpus import default_corpus_dir
from shared.db import ensure_schema
from shared.settings import Settings, get_settings
from tools.fixture_site import FixtureSite


def corpus_files(corpus: Path) -> list[Path]:
    import csv

    with (corpus / "manifest.csv").open(newline="") as f:
        return [corpus / row["path"] for row in csv.DictReader(f)]


def hash_and_copy(files: list[Path], dest: Path) -> None:
    for path in files:
        digest = hashlib.sha256()
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
        shutil.copyfile(path, dest / digest.hexdigest())


def use_data_dir(data_dir: Path, **overrides: object) -> Settings:
    """Point the process-wide settings (and so the database and blob store) at a fresh folder."""
    os.environ["BMT_DATA_DIR"] = str(data_dir)
    for key, value in overrides.items():
        os.environ[f"BMT_{key.upper()}"] = str(value)
    get_settings.cache_clear()  # the database engine is cached per URL: a new folder gets a new one
    ensure_schema()
    return get_settings()


def row(name: str, files: int, size: int, seconds: float, baseline: float) -> str:
    return (
        f"| {name:<36} | {files:6d} | {files / seconds:9.0f} | {size / 2**20 / seconds:8.1f} | "
        f"{seconds:7.2f} | {seconds / baseline:6.2f}x |"
    )


def bench_local(work: Path) -> list[str]:
    corpus = default_corpus_dir()
    files = corpus_files(corpus)
    size = sum(p.stat().st_size for p in files)
    copies = work / "copies"
    copies.mkdir()
    started = time.perf_counter()
    hash_and_copy(files, copies)
    baseline = time.perf_counter() - started
    settings = use_data_dir(work / "local")
    started = time.perf_counter()
    summary = asyncio.run(Crawler(settings, "local", hand_off=False, path=str(corpus)).run())
    elapsed = time.perf_counter() - started
    assert summary.new + summary.duplicate == len(files), summary.render()
    return [
        row("baseline: sha256 + copy", len(files), size, baseline, baseline),
        row("local source ingest", len(files), size, elapsed, baseline),
    ]


async def _serve(files: list[Path]):
    site = FixtureSite(robots="User-agent: *\nAllow: /\n")
    await site.__aenter__()
    links = []
    for i, path in enumerate(files):
        url_path = f"/demo/{i}-{path.name}"
        site.file(url_path, path.read_bytes())
        links.append(f'<li><h3>{path.stem}</h3><p>CC0</p><a href="{url_path}">download</a></li>')
    site.html("/download/demo-files/", "<html><ul>" + "".join(links) + "</ul></html>")
    return site, [site.base + f"/demo/{i}-{p.name}" for i, p in enumerate(files)]


async def _raw_loop(urls: list[str], dest: Path, concurrency: int) -> None:
    slots = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, i: int, url: str) -> None:
        async with slots, session.get(url) as response:
            with (dest / str(i)).open("wb") as out:
                async for chunk in response.content.iter_chunked(1 << 16):
                    out.write(chunk)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, i, url) for i, url in enumerate(urls)))


def bench_web(work: Path, count: int) -> list[str]:
    files = sorted(default_corpus_dir().glob("glb/**/*.glb"))[:count]
    size = sum(p.stat().st_size for p in files)
    concurrency = 8

    async def scenario() -> tuple[float, float]:
        site, urls = await _serve(files)
        try:
            raw = work / "raw"
            raw.mkdir()
            started = time.perf_counter()
            await _raw_loop(urls, raw, concurrency)
            baseline = time.perf_counter() - started
            settings = use_data_dir(
                work / "web",
                scraper_demofiles_url=site.base + "/download/demo-files/",
                scraper_rate_per_host=0,
                scraper_concurrency_per_host=concurrency,
            )
            started = time.perf_counter()
            summary = await Crawler(settings, "demofiles", hand_off=False).run()
            elapsed = time.perf_counter() - started
            assert summary.new + summary.duplicate == len(files), summary.render()
            return baseline, elapsed
        finally:
            await site.__aexit__()

    baseline, elapsed = asyncio.run(scenario())
    return [
        row(f"baseline: raw aiohttp loop (x{concurrency})", len(files), size, baseline, baseline),
        row("web path: demo-files crawl + ingest", len(files), size, elapsed, baseline),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--web-files", type=int, default=300)
    args = parser.parse_args()
    print("| path                                 |  files |  files/s |    MiB/s |       s | vs base |")
    print("|--------------------------------------|--------|----------|----------|---------|---------|")
    with tempfile.TemporaryDirectory(prefix="bmt-bench-scrape-") as tmp:
        for line in bench_local(Path(tmp)) + bench_web(Path(tmp), args.web_files):
            print(line, flush=True)


if __name__ == "__main__":
    main()
