"""The one HTTP client every web source uses: polite by construction.

- per-host rate limit (minimum interval between request starts, or robots.txt's Crawl-delay when
  that is longer) and concurrency cap;
- robots.txt fetched once per host and obeyed (RFC 9309: a 4xx robots.txt allows everything,
  an unreachable one (5xx, network) disallows everything);
- retries with exponential backoff on 429/5xx and connection errors, honouring Retry-After
  (delta-seconds or HTTP date) up to a cap, and GitHub's 403 with X-RateLimit-Remaining: 0 until
  X-RateLimit-Reset;
- conditional requests: callers pass the ETag/Last-Modified they remembered and get 304s;
- an honest User-Agent naming the project and a contact URL;
- streaming downloads to disk with a size cap, hashed while they stream; nothing partial survives.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import json
import logging
import time
import urllib.robotparser
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import redis
import redis.asyncio
from multidict import CIMultiDict
from yarl import URL

from services.scraper.sniff import SNIFF_BYTES
from shared.settings import Settings

log = logging.getLogger(__name__)

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
_CHUNK = 1 << 16
_DISALLOW_ALL = ["User-agent: *", "Disallow: /"]


class HttpError(Exception):
    def __init__(self, url: str, status: int | None, message: str) -> None:
        super().__init__(f"{message} ({url})")
        self.url = url
        self.status = status


class RobotsDisallowed(HttpError):
    def __init__(self, url: str) -> None:
        super().__init__(url, None, "robots.txt disallows this path")


class DownloadTooLarge(HttpError):
    def __init__(self, url: str, limit: int) -> None:
        super().__init__(url, None, f"download larger than the cap of {limit} bytes")
        self.limit = limit


@dataclass
class Validators:
    """What a server said about a resource's version, sent back as If-None-Match/If-Modified-Since."""

    etag: str | None = None
    last_modified: str | None = None

    def request_headers(self) -> dict[str, str]:
        headers = {}
        if self.etag:
            headers["If-None-Match"] = self.etag
        if self.last_modified:
            headers["If-Modified-Since"] = self.last_modified
        return headers

    def to_json(self) -> dict[str, str]:
        return {k: v for k, v in (("etag", self.etag), ("last_modified", self.last_modified)) if v}

    @classmethod
    def from_json(cls, data: dict[str, str] | None) -> Validators:
        data = data or {}
        return cls(data.get("etag"), data.get("last_modified"))


@dataclass
class Page:
    url: str
    status: int
    body: bytes
    headers: CIMultiDict[str]
    validators: Validators

    @property
    def not_modified(self) -> bool:
        return self.status == 304

    def json(self) -> Any:
        return json.loads(self.body)

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


@dataclass
class Download:
    url: str
    path: Path
    size: int
    sha256: str
    head: bytes  # the first SNIFF_BYTES, for content sniffing
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)


def should_retry(status: int, headers: Mapping[str, str]) -> bool:
    """429/5xx, and GitHub's exhausted rate limit (403 with X-RateLimit-Remaining: 0)."""
    return status in RETRY_STATUSES or (status == 403 and headers.get("X-RateLimit-Remaining") == "0")


def wait_hint(headers: Mapping[str, str]) -> str | None:
    """Retry-After, or GitHub's X-RateLimit-Reset (epoch seconds) turned into delta-seconds."""
    if headers.get("Retry-After"):
        return headers["Retry-After"]
    reset = headers.get("X-RateLimit-Reset")
    if reset and reset.isdigit():
        return str(max(0, int(reset) - int(time.time())))
    return None


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = datetime.fromtimestamp(now if now is not None else time.time(), UTC)
    return max(0.0, (when - current).total_seconds())


# Reserves the next request start to a host on the Redis server's clock, for every scraper worker
# at once: returns how long the caller waits (0 when the host has been quiet for an interval).
_RESERVE_START = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
local interval = tonumber(ARGV[1])
local start = math.max(now, tonumber(redis.call('GET', KEYS[1]) or '0'))
redis.call('SET', KEYS[1], string.format('%.6f', start + interval), 'EX', math.ceil(start + interval - now) + 60)
return string.format('%.6f', start - now)
"""


class _HostGate:
    """Spaces request starts to one host by ``interval`` and caps requests in flight. With a Redis
    script the spacing holds across every process that shares that Redis (N scraper workers send
    a host no more than one worker would); the cap on requests in flight stays per process."""

    def __init__(self, interval: float, concurrency: int, shared: Any = None, key: str = "") -> None:
        self.interval = interval
        self.slots = asyncio.Semaphore(concurrency)
        self._lock = asyncio.Lock()
        self._next_start = 0.0
        self._shared, self._key = shared, key

    async def wait_turn(self) -> None:
        if self._shared is not None and self.interval > 0:
            try:
                delay = float(await self._shared(keys=[self._key], args=[self.interval]))
            except redis.exceptions.RedisError as error:
                log.warning("shared rate limit unavailable (%s): this process spaces its own requests", error)
            else:
                if delay > 0:
                    await asyncio.sleep(delay)
                return
        async with self._lock:
            delay = self._next_start - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self._next_start = time.monotonic() + self.interval


class PoliteClient:
    """Use as ``async with PoliteClient(settings) as client:``."""

    def __init__(self, settings: Settings, headers: dict[str, str] | None = None) -> None:
        self.settings = settings
        self.user_agent = settings.scraper_user_agent.replace("{contact}", settings.scraper_contact_url)
        self._headers = {"User-Agent": self.user_agent, **(headers or {})}
        self._gates: dict[str, _HostGate] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser] = {}
        self._robots_locks: dict[str, asyncio.Lock] = {}
        self._session: aiohttp.ClientSession | None = None
        self._redis: redis.asyncio.Redis | None = None
        self._reserve_start: Any = None
        if settings.queue_url.startswith(("redis://", "rediss://")):
            self._redis = redis.asyncio.Redis.from_url(settings.queue_url)
            self._reserve_start = self._redis.register_script(_RESERVE_START)

    async def __aenter__(self) -> PoliteClient:
        timeout = aiohttp.ClientTimeout(total=self.settings.scraper_timeout_s)
        self._session = aiohttp.ClientSession(headers=self._headers, timeout=timeout)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._session is not None:
            await self._session.close()
        if self._redis is not None:
            await self._redis.aclose()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("PoliteClient used outside 'async with'")
        return self._session

    def _gate(self, host: str) -> _HostGate:
        if host not in self._gates:
            rate = self.settings.scraper_rate_per_host
            self._gates[host] = _HostGate(
                1.0 / rate if rate > 0 else 0.0,
                self.settings.scraper_concurrency_per_host,
                self._reserve_start,
                f"{self.settings.queue_key_prefix}scraper:next-start:{host}",
            )
        return self._gates[host]

    # --- robots.txt -------------------------------------------------------------------------

    async def allowed(self, url: str) -> bool:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        async with self._robots_locks.setdefault(origin, asyncio.Lock()):
            if origin not in self._robots:
                robots = await self._fetch_robots(origin)
                delay = robots.crawl_delay(self.user_agent)
                if delay:  # a Crawl-delay slower than our own rate wins
                    gate = self._gate(parts.netloc)
                    gate.interval = max(gate.interval, float(delay))
                self._robots[origin] = robots
        return self._robots[origin].can_fetch(self.user_agent, url)

    async def _fetch_robots(self, origin: str) -> urllib.robotparser.RobotFileParser:
        parser = urllib.robotparser.RobotFileParser(origin + "/robots.txt")
        try:
            page = await self._request("GET", origin + "/robots.txt", check_robots=False, ok_statuses=None)
        except HttpError as error:
            log.warning("robots.txt of %s unreachable (%s): not crawling it", origin, error)
            parser.parse(_DISALLOW_ALL)
            return parser
        if 400 <= page.status < 500:
            parser.parse([])  # no robots.txt: everything allowed
        elif page.status >= 500:
            parser.parse(_DISALLOW_ALL)
        else:
            parser.parse(page.text().splitlines())
        return parser

    # --- requests ---------------------------------------------------------------------------

    async def get(
        self,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        validators: Validators | None = None,
    ) -> Page:
        """GET a page (404 and other client errors raise HttpError; 304 returns a not_modified Page)."""
        merged = {**(headers or {}), **(validators.request_headers() if validators else {})}
        return await self._request("GET", url, params=params, headers=merged)

    async def get_json(self, url: str, **kwargs: Any) -> Any:
        return (await self.get(url, **kwargs)).json()

    async def _request(
        self,
        method: str,
        url: str,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        check_robots: bool = True,
        ok_statuses: frozenset[int] | None = frozenset({200, 203, 206, 304}),
    ) -> Page:
        if check_robots and not await self.allowed(str(URL(url).update_query(params)) if params else url):
            raise RobotsDisallowed(url)
        host = urlsplit(url).netloc
        gate = self._gate(host)
        attempt = 0
        while True:
            await gate.wait_turn()
            try:
                request = self.session.request(method, url, params=params, headers=headers)
                async with gate.slots, request as response:
                    body = await response.read()
                    status = response.status
                    response_headers = CIMultiDict(response.headers)
                    final_url = str(response.url)
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
                status, body, response_headers, final_url = None, b"", CIMultiDict(), url
                failure = f"{type(error).__name__}: {error}"
            if status is not None and not should_retry(status, response_headers):
                if ok_statuses is not None and status not in ok_statuses:
                    raise HttpError(url, status, f"HTTP {status}")
                return Page(
                    final_url,
                    status,
                    body,
                    response_headers,
                    Validators(response_headers.get("ETag"), response_headers.get("Last-Modified")),
                )
            if status is not None:
                failure = f"HTTP {status}"
            attempt += 1
            if attempt > self.settings.scraper_max_retries:
                raise HttpError(url, status, f"{failure} after {attempt - 1} retries")
            await asyncio.sleep(self._retry_delay(url, attempt, wait_hint(response_headers)))
            log.info("retry %d of %s after %s", attempt, url, failure)

    def _retry_delay(self, url: str, attempt: int, retry_after: str | None) -> float:
        backoff = self.settings.scraper_backoff_base_s * 2 ** (attempt - 1)
        asked = parse_retry_after(retry_after)
        if asked is None:
            return backoff
        if asked > self.settings.scraper_max_retry_after_s:
            raise HttpError(url, 429, f"server asked to wait {asked:.0f}s, more than the cap")
        return max(asked, backoff)

    async def download(
        self, url: str, dest: Path, *, max_bytes: int, headers: dict[str, str] | None = None
    ) -> Download:
        """Stream ``url`` into ``dest`` (hashing as it goes); past ``max_bytes`` abort and delete it."""
        if not await self.allowed(url):
            raise RobotsDisallowed(url)
        gate = self._gate(urlsplit(url).netloc)
        attempt = 0
        while True:
            await gate.wait_turn()
            retry_after = None
            try:
                async with gate.slots, self.session.get(url, headers=headers) as response:
                    if not should_retry(response.status, response.headers):
                        if response.status != 200:
                            raise HttpError(url, response.status, f"HTTP {response.status}")
                        return await self._stream_to(response, url, dest, max_bytes)
                    failure = f"HTTP {response.status}"
                    retry_after = wait_hint(response.headers)
            except (TimeoutError, aiohttp.ClientConnectionError, aiohttp.ClientPayloadError) as error:
                dest.unlink(missing_ok=True)
                failure = f"{type(error).__name__}: {error}"
            attempt += 1
            if attempt > self.settings.scraper_max_retries:
                raise HttpError(url, None, f"{failure} after {attempt - 1} retries")
            await asyncio.sleep(self._retry_delay(url, attempt, retry_after))

    @staticmethod
    async def _stream_to(response: aiohttp.ClientResponse, url: str, dest: Path, max_bytes: int) -> Download:
        declared = response.content_length
        if declared is not None and declared > max_bytes:
            raise DownloadTooLarge(url, max_bytes)
        digest = hashlib.sha256()
        size = 0
        head = b""
        dest.parent.mkdir(parents=True, exist_ok=True)
        try:
            with dest.open("wb") as out:
                async for chunk in response.content.iter_chunked(_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        raise DownloadTooLarge(url, max_bytes)
                    if len(head) < SNIFF_BYTES:
                        head += chunk[: SNIFF_BYTES - len(head)]
                    digest.update(chunk)
                    out.write(chunk)
        except BaseException:
            dest.unlink(missing_ok=True)
            raise
        return Download(url, dest, size, digest.hexdigest(), head, CIMultiDict(response.headers))
