"""What an operator needs from the gateway: Prometheus metrics, JSON logs carrying a request id,
a body limit, per-key rate limits, and the health of the parts it depends on."""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

REQUEST_ID_HEADER = "x-request-id"
_REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

REQUEST_SECONDS = Histogram(
    "bmt_gateway_request_seconds", "HTTP request latency", ["method", "route", "status"]
)
GENERATION_SECONDS = Histogram(
    "bmt_generation_seconds",
    "Generation latency from acceptance to the end, time queued included",
    ["status"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60, 120, 300),
)
STAGE_SECONDS = Histogram(
    "bmt_generation_stage_seconds",
    "Time one stage (specialist) of a generation took",
    ["stage"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 60),
)
QUEUE_DEPTH = Gauge("bmt_generation_queue_depth", "Generations accepted by this replica, not yet running")
RUNNING = Gauge("bmt_generations_running", "Generations this replica is running now")
ERRORS = Counter("bmt_generation_errors_total", "Generations that failed", ["stage", "kind"])
BATCH_SIZE = Histogram(
    "bmt_inference_batch_size",
    "Requests a model decoded together with this one, itself included (as the model reports it)",
    ["specialist"],
    buckets=(1, 2, 4, 8, 16, 32),
)
REJECTED = Counter("bmt_gateway_rejected_total", "Requests refused before any work", ["reason"])


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the request id when there is one,
    and any ``extra`` fields a call passed."""

    _standard = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in self._standard and v is not None})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _stamp_request_id(factory: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    """Records take the request id when they are made, in the request's context (a handler may
    format them later, elsewhere)."""

    def make(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = factory(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    make.stamps_request_id = True  # type: ignore[attr-defined]
    return make


if not getattr(logging.getLogRecordFactory(), "stamps_request_id", False):
    logging.setLogRecordFactory(_stamp_request_id(logging.getLogRecordFactory()))


def configure_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler()
    handler.formatter = JsonFormatter() if fmt == "json" else logging.Formatter(logging.BASIC_FORMAT)
    logging.basicConfig(level=level, handlers=[handler], force=True)
    logging.Formatter.converter = time.gmtime


def incoming_request_id(value: str | None) -> str:
    """The caller's X-Request-ID when it is a plain token, else a new one (never echo junk)."""
    if value is not None and _REQUEST_ID_PATTERN.match(value):
        return value
    return uuid.uuid4().hex


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to the same number.
    Per replica (a deployment with N replicas allows N times as many)."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, key: str) -> float:
        """0 when the request may go ahead (and is counted), else seconds until it may."""
        if self.per_minute <= 0:
            return 0.0
        rate = self.per_minute / 60.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(key, (float(self.per_minute), now))
            tokens = min(float(self.per_minute), tokens + (now - last) * rate)
            if tokens >= 1.0:
                self._buckets[key] = (tokens - 1.0, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1.0 - tokens) / rate


class DependencyHealth:
    """The parts the gateway needs, each probed concurrently with a deadline, the answer kept for a
    moment so a burst of requests costs one probe. A probe still running from before counts as no
    answer; a part that is back is seen at the next probe (within ``max_age_s`` + ``timeout_s``).
    While ``keep_fresh`` runs, probes run in the background, off the requests' path."""

    def __init__(
        self,
        checks: dict[str, Callable[[], Any]],
        inline: frozenset[str] = frozenset(),
        timeout_s: float = 0.8,
        max_age_s: float = 0.25,
        grace_s: float = 2.0,
    ):
        """``inline`` names the checks of local parts (a file, a folder): run in the caller's
        thread, no deadline. A busy process (an in-process model holding the interpreter) could
        starve a probe thread past its deadline and make a part look down that cannot be."""
        self.checks, self.inline, self.timeout_s, self.max_age_s = checks, inline, timeout_s, max_age_s
        # A slow answer from a part that answered within grace_s is not yet a part down (a busy
        # machine can delay a probe); a failed one is down at once.
        self.grace_s = grace_s
        self._last_ok: dict[str, tuple[float, Any]] = {}
        self._pool = ThreadPoolExecutor(max_workers=2 * len(checks) + 2, thread_name_prefix="health")
        self._running: dict[str, Future] = {}
        self._answer: tuple[float, dict[str, str | None], dict[str, Any]] | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def keep_fresh(self) -> Callable[[], None]:
        """Probe every ``max_age_s`` in a background thread; returns the function that stops it."""

        def loop() -> None:
            while not self._stop.wait(self.max_age_s / 2):
                self.status()

        self._stop.clear()
        threading.Thread(target=loop, name="dependency-health", daemon=True).start()
        return self._stop.set

    def status(self) -> tuple[dict[str, str | None], dict[str, Any]]:
        """(problems: part -> None or why it is down, values: what each check returned)."""
        with self._lock:
            if self._answer is not None and time.monotonic() - self._answer[0] < self.max_age_s:
                return self._answer[1], self._answer[2]
            for name, check in self.checks.items():
                if name in self.inline:
                    continue
                if name not in self._running or self._running[name].done():
                    self._running[name] = self._pool.submit(check)
            futures = dict(self._running)
        problems: dict[str, str | None] = {}
        values: dict[str, Any] = {}
        for name in self.inline:
            try:
                values[name], problems[name] = self.checks[name](), None
            except Exception as exc:
                problems[name] = f"{type(exc).__name__}: {exc}"[:500]
        # The first probes open clients and connections: they get longer than the later ones.
        deadline = time.monotonic() + (self.timeout_s if self._answer is not None else 5 * self.timeout_s)
        for name, future in futures.items():
            try:
                values[name] = future.result(timeout=max(0.0, deadline - time.monotonic()))
                problems[name] = None
                self._last_ok[name] = (time.monotonic(), values[name])
            except TimeoutError:
                answered, value = self._last_ok.get(name, (float("-inf"), None))
                if time.monotonic() - answered < self.grace_s:
                    values[name], problems[name] = value, None
                else:
                    problems[name] = f"no answer within {self.timeout_s:g} s"
            except Exception as exc:  # whatever failed, the part is down: say how
                problems[name] = f"{type(exc).__name__}: {exc}"[:500]
        with self._lock:
            self._answer = (time.monotonic(), problems, values)
        return problems, values
