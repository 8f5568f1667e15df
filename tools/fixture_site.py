"""A real aiohttp server on loopback that stands in for the scraped sites in tests and benchmarks.

Routes are registered per test with fixture responses shaped like the real APIs and pages; a
request log, robots.txt and scripted faults (429 with Retry-After, 5xx) let tests check politeness.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

Handler = Callable[[web.Request], Any]


@dataclass
class Fault:
    status: int
    headers: dict[str, str] = field(default_factory=dict)


class FixtureSite:
    def __init__(self, robots: str | None = "User-agent: *\nDisallow: /private/\n") -> None:
        self.robots = robots
        self.requests: list[web.Request] = []
        self.faults: dict[str, list[Fault]] = defaultdict(list)
        self._routes: dict[str, Handler] = {}
        self._runner: web.AppRunner | None = None
        self.base = ""

    # --- routes ---------------------------------------------------------------------------

    def route(self, path: str, handler: Handler) -> None:
        self._routes[path] = handler

    def json(
        self, path: str, payload: Any | Callable[[web.Request], Any], headers: dict[str, str] | None = None
    ) -> None:
        def handler(request: web.Request) -> web.Response:
            body = payload(request) if callable(payload) else payload
            if isinstance(body, web.StreamResponse):
                return body  # type: ignore[return-value]
            return web.Response(text=json.dumps(body), content_type="application/json", headers=headers)

        self.route(path, handler)

    def html(self, path: str, text: str | Callable[[web.Request], str]) -> None:
        self.route(
            path,
            lambda request: web.Response(
                text=text(request) if callable(text) else text, content_type="text/html"
            ),
        )

    def file(self, path: str, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.route(path, lambda request: web.Response(body=data, headers=headers or {}))

    def fail(self, path: str, *faults: Fault) -> None:
        """The next requests to ``path`` get these responses, in order, before the real one."""
        self.faults[path].extend(faults)

    def hits(self, path: str) -> int:
        return sum(1 for r in self.requests if r.path == path)

    # --- server ---------------------------------------------------------------------------

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        self.requests.append(request)
        if self.faults.get(request.path):
            fault = self.faults[request.path].pop(0)
            return web.Response(status=fault.status, headers=fault.headers, text="error")
        if request.path == "/robots.txt":
            if self.robots is None:
                raise web.HTTPNotFound()
            return web.Response(text=self.robots)
        handler = self._routes.get(request.path)
        if handler is None:
            raise web.HTTPNotFound()
        response = handler(request)
        if hasattr(response, "__await__"):
            response = await response
        return response

    async def __aenter__(self) -> FixtureSite:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.base = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
