"""The polite HTTP client against a real loopback server: rate limits, robots.txt, retries,
conditional requests, streaming size caps."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest
from aiohttp import web

from services.scraper.http import (
    DownloadTooLarge,
    HttpError,
    PoliteClient,
    RobotsDisallowed,
    parse_retry_after,
)
from shared.settings import Settings
from tools.fixture_site import Fault, FixtureSite


def fast_settings(**overrides) -> Settings:
    values = {
        "scraper_rate_per_host": 0,
        "scraper_backoff_base_s": 0.01,
        "scraper_max_retries": 3,
    } | overrides
    return Settings(**values)


def run(coro):
    return asyncio.run(coro)


def test_user_agent_names_the_project_and_contact():
    async def scenario():
        async with (
            FixtureSite() as site,
            PoliteClient(fast_settings(scraper_contact_url="https://example.org/c")) as c,
        ):
            site.json("/a", {"ok": True})
            await c.get_json(site.base + "/a")
            return site.requests[-1].headers["User-Agent"]

    agent = run(scenario())
    assert agent.startswith("BlenderModelTraining-scraper/") and "https://example.org/c" in agent


def test_retry_after_in_seconds_is_honoured():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.json("/api", {"n": 1})
            site.fail("/api", Fault(429, {"Retry-After": "1"}))
            started = time.monotonic()
            data = await client.get_json(site.base + "/api")
            return data, time.monotonic() - started, site.hits("/api")

    data, elapsed, hits = run(scenario())
    assert data == {"n": 1} and hits == 2
    assert elapsed >= 0.95  # waited what the server asked, not the 0.01 s backoff


def test_retry_after_http_date_is_parsed():
    now = datetime(2026, 1, 1, tzinfo=UTC)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert parse_retry_after(later, now=now.timestamp()) == pytest.approx(30)
    assert parse_retry_after("7") == 7
    assert parse_retry_after("soon") is None


def test_5xx_then_success_and_giving_up():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.json("/flaky", {"ok": 1})
            site.fail("/flaky", Fault(503), Fault(502))
            first = await client.get_json(site.base + "/flaky")
            site.fail("/flaky", *[Fault(500)] * 5)
            with pytest.raises(HttpError, match="HTTP 500 after 3 retries"):
                await client.get_json(site.base + "/flaky")
            return first

    assert run(scenario()) == {"ok": 1}


def test_retry_after_beyond_the_cap_fails_instead_of_waiting():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings(scraper_max_retry_after_s=5)) as client:
            site.json("/slow", {})
            site.fail("/slow", Fault(429, {"Retry-After": "3600"}))
            with pytest.raises(HttpError, match="more than the cap"):
                await client.get(site.base + "/slow")

    run(scenario())


def test_client_errors_are_not_retried():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            with pytest.raises(HttpError) as raised:
                await client.get(site.base + "/missing")
            return raised.value.status, site.hits("/missing")

    assert run(scenario()) == (404, 1)


def test_robots_txt_is_fetched_once_and_obeyed():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.json("/public", {})
            site.json("/private/x", {})
            await client.get(site.base + "/public")
            await client.get(site.base + "/public")
            with pytest.raises(RobotsDisallowed):
                await client.get(site.base + "/private/x")
            return site.hits("/robots.txt"), site.hits("/private/x")

    assert run(scenario()) == (1, 0)


def test_robots_txt_server_error_disallows_everything():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings(scraper_max_retries=0)) as client:
            site.json("/public", {})
            site.fail("/robots.txt", Fault(500))
            site.robots = None
            with pytest.raises(RobotsDisallowed):
                await client.get(site.base + "/public")

    run(scenario())


def test_missing_robots_txt_allows_everything():
    async def scenario():
        async with FixtureSite(robots=None) as site, PoliteClient(fast_settings()) as client:
            site.json("/private/x", {"ok": 1})
            return await client.get_json(site.base + "/private/x")

    assert run(scenario()) == {"ok": 1}


def test_conditional_request_gets_304():
    def page(request: web.Request) -> web.Response:
        if request.headers.get("If-None-Match") == '"v1"':
            return web.Response(status=304)
        return web.Response(
            text="<html>v1</html>", headers={"ETag": '"v1"', "Last-Modified": "Wed, 01 Jan 2025 00:00:00 GMT"}
        )

    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.route("/page", page)
            first = await client.get(site.base + "/page")
            second = await client.get(site.base + "/page", validators=first.validators)
            return first, second, site.requests[-1].headers.get("If-Modified-Since")

    first, second, since = run(scenario())
    assert not first.not_modified and first.validators.etag == '"v1"'
    assert second.not_modified and since == "Wed, 01 Jan 2025 00:00:00 GMT"


def test_rate_limit_spaces_requests_to_one_host():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings(scraper_rate_per_host=10)) as client:
            site.json("/r", {})
            started = time.monotonic()
            await asyncio.gather(*(client.get(site.base + "/r") for _ in range(6)))
            return time.monotonic() - started

    # robots.txt + 6 requests at 10/s: at least 6 intervals of 0.1 s.
    assert run(scenario()) >= 0.55


def test_rate_limit_per_host_is_shared_by_workers_through_redis(redis_url: str):
    """Two clients, as two scraper workers would have, spend one host's rate between them."""
    shared = fast_settings(scraper_rate_per_host=10, queue_url=redis_url)
    separate = fast_settings(scraper_rate_per_host=10)

    async def scenario(settings: Settings) -> list[float]:
        arrivals: list[float] = []
        async with FixtureSite() as site, PoliteClient(settings) as one, PoliteClient(settings) as other:
            site.json("/r", lambda request: arrivals.append(time.monotonic()) or {})
            for client in (one, other):
                await client.allowed(site.base + "/r")  # robots.txt first, outside the count
            await asyncio.gather(*(client.get(site.base + "/r") for client in (one, other) for _ in range(4)))
        return sorted(arrivals)

    def smallest_gap(starts: list[float]) -> float:
        return min(b - a for a, b in zip(starts, starts[1:], strict=False))

    assert smallest_gap(run(scenario(shared))) >= 0.08  # 10/s for both together
    assert smallest_gap(run(scenario(separate))) < 0.05  # each its own 10/s: starts coincide


def test_concurrency_cap_per_host():
    in_flight = {"now": 0, "max": 0}

    async def slow(request: web.Request) -> web.Response:
        in_flight["now"] += 1
        in_flight["max"] = max(in_flight["max"], in_flight["now"])
        await asyncio.sleep(0.05)
        in_flight["now"] -= 1
        return web.json_response({})

    async def scenario():
        async with (
            FixtureSite() as site,
            PoliteClient(fast_settings(scraper_concurrency_per_host=2)) as client,
        ):
            site.route("/slow", slow)
            await asyncio.gather(*(client.get(site.base + "/slow") for _ in range(8)))

    run(scenario())
    assert in_flight["max"] == 2


def test_download_streams_hashes_and_caps(tmp_path):
    payload = b"BLENDER-v279" + bytes(50_000)

    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.file("/f.blend", payload)
            ok = await client.download(site.base + "/f.blend", tmp_path / "ok", max_bytes=100_000)
            with pytest.raises(DownloadTooLarge):
                await client.download(site.base + "/f.blend", tmp_path / "big", max_bytes=10_000)
            return ok

    import hashlib

    ok = run(scenario())
    assert ok.size == len(payload) and ok.sha256 == hashlib.sha256(payload).hexdigest()
    assert ok.head.startswith(b"BLENDER") and (tmp_path / "ok").read_bytes() == payload
    assert not (tmp_path / "big").exists()  # nothing partial is left


def test_download_cap_holds_without_content_length(tmp_path):
    async def chunked(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.enable_chunked_encoding()
        await response.prepare(request)
        for _ in range(20):
            await response.write(bytes(4096))
        await response.write_eof()
        return response

    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.route("/stream", chunked)
            with pytest.raises(DownloadTooLarge):
                await client.download(site.base + "/stream", tmp_path / "s", max_bytes=30_000)

    run(scenario())
    assert not (tmp_path / "s").exists()


def test_github_rate_limit_403_waits_for_the_reset():
    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.json("/search/code", {"items": []})
            reset = str(int(time.time()) + 1)
            site.fail("/search/code", Fault(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}))
            data = await client.get_json(site.base + "/search/code")
            site.fail("/search/code", Fault(403))  # a plain 403 is final
            with pytest.raises(HttpError) as raised:
                await client.get(site.base + "/search/code")
            return data, raised.value.status, site.hits("/search/code")

    assert run(scenario()) == ({"items": []}, 403, 3)


def test_dropped_connection_is_retried():
    calls = {"n": 0}

    async def drop_once(request: web.Request) -> web.StreamResponse:
        calls["n"] += 1
        if calls["n"] == 1:
            request.transport.close()  # the server goes away mid-request
            return web.Response()
        return web.json_response({"ok": True})

    async def scenario():
        async with FixtureSite() as site, PoliteClient(fast_settings()) as client:
            site.route("/drop", drop_once)
            return await client.get_json(site.base + "/drop")

    assert run(scenario()) == {"ok": True} and calls["n"] == 2


def test_unreachable_host_disallows_after_retries():
    from tools.servers import free_port

    async def scenario():
        async with PoliteClient(fast_settings(scraper_max_retries=1)) as client:
            with pytest.raises(RobotsDisallowed):
                await client.get(f"http://127.0.0.1:{free_port()}/anything")

    run(scenario())


def test_robots_crawl_delay_slows_requests_down():
    async def scenario():
        async with (
            FixtureSite(robots="User-agent: *\nCrawl-delay: 1\nDisallow: /search?q=\n") as site,
            PoliteClient(fast_settings()) as client,
        ):
            site.json("/a", {})
            site.json("/search", {})
            started = time.monotonic()
            for _ in range(2):
                await client.get(site.base + "/a")
            with pytest.raises(RobotsDisallowed):  # the query string is part of what robots.txt judges
                await client.get(site.base + "/search", params={"q": "chair"})
            return time.monotonic() - started

    # Two requests one Crawl-delay apart (urllib.robotparser reads whole seconds); our own rate is 0.
    assert run(scenario()) >= 0.95
