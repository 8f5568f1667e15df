"""Talk to the generation gateway from a background thread, with urllib only.

Nothing in this module touches bpy: the thread only fills a ``JobState`` that the UI thread reads
from a timer. Errors become one sentence a Blender user can act on.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field

MAX_RESPONSE_BYTES = 512 * 1024 * 1024
TERMINAL = ("succeeded", "failed", "cancelled")


class GatewayError(Exception):
    """A problem talking to the gateway, worded for the person in front of Blender."""


class GatewayClient:
    def __init__(self, base_url: str, api_key: str = "", timeout_s: float = 30.0):
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.timeout_s = timeout_s

    def create(self, request: dict, path: str = "/v1/generations") -> str:
        """POST a generation (or, with path /v1/apply, an apply-to-selection); returns its id."""
        reply = self._call("POST", path, request)
        if not isinstance(reply.get("id"), str):
            raise GatewayError("The gateway accepted the request but sent no generation id.")
        return reply["id"]

    def status(self, generation_id: str) -> dict:
        return self._call("GET", f"/v1/generations/{generation_id}")

    def cancel(self, generation_id: str) -> None:
        self._call("DELETE", f"/v1/generations/{generation_id}")

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        url = self.base_url + path
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.api_key:
            headers["X-API-Key"] = self.api_key
        request = urllib.request.Request(url, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                raw = response.read(MAX_RESPONSE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            raise GatewayError(_http_error_message(exc)) from None
        except urllib.error.URLError as exc:
            raise GatewayError(
                f"Could not reach the generation gateway at {self.base_url} ({exc.reason})."
            ) from None
        except TimeoutError:
            raise GatewayError(
                f"The gateway at {self.base_url} did not answer within {self.timeout_s:g} seconds."
            ) from None
        except OSError as exc:
            raise GatewayError(f"The connection to {self.base_url} failed ({exc}).") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise GatewayError("The gateway sent a reply larger than 512 MB; it was not read.")
        try:
            reply = json.loads(raw)
        except ValueError:
            raise GatewayError("The gateway sent a reply that is not JSON.") from None
        if not isinstance(reply, dict):
            raise GatewayError("The gateway sent an unexpected reply (not a JSON object).")
        return reply


def _http_error_message(exc: urllib.error.HTTPError) -> str:
    try:
        detail = _detail_text(json.loads(exc.read(65536)).get("detail"))
    except (ValueError, AttributeError, OSError):
        detail = ""
    detail = f" ({detail})" if detail else ""
    if exc.code == 401:
        return "The gateway refused the API key. Check it in the add-on preferences." + detail
    if exc.code == 404:
        return "The gateway does not know this generation (it may have restarted)." + detail
    if exc.code == 413:
        return "The request is too large for the gateway: lower the face budget or variations." + detail
    if exc.code == 422:
        return "The gateway refused the request" + (detail or ".")
    if exc.code == 429:
        return "The gateway is busy with this API key's earlier requests; try again shortly." + detail
    return f"The gateway answered with an error (HTTP {exc.code})" + (detail or ".")


def _detail_text(detail: object) -> str:
    """FastAPI's ``detail``: a sentence, a list of validation errors with ``loc`` and ``msg``, or a
    mapping from a name to its reason (the gateway's specialists that are not available)."""
    if isinstance(detail, str):
        return detail
    if isinstance(detail, dict):
        return "; ".join(f"{name}: {why}" for name, why in detail.items() if isinstance(why, str))
    if isinstance(detail, list):
        parts = []
        for item in detail[:3]:
            if isinstance(item, dict) and isinstance(item.get("msg"), str):
                where = ".".join(str(p) for p in item.get("loc", ()) if p != "body")
                parts.append(f"{where}: {item['msg']}" if where else item["msg"])
        return "; ".join(parts)
    return ""


def stage_lines(stages: object) -> list[str]:
    """The generation's stages as one line each ("materials: running 40%, object 2 of 3").

    Accepts a list of ``{"name", "status" (or "state"), "progress", "message"}`` records or a
    mapping from stage name to such a record or to a bare status; anything else is ignored, so a
    gateway without stages, or with more fields, still works.
    """
    if isinstance(stages, dict):
        stages = [
            {"name": name, **(value if isinstance(value, dict) else {"status": value})}
            for name, value in stages.items()
        ]
    if not isinstance(stages, list):
        return []
    lines = []
    for stage in stages:
        if not isinstance(stage, dict) or not isinstance(stage.get("name"), str):
            continue
        status = stage.get("status", stage.get("state"))
        line = f"{stage['name']}: {status if isinstance(status, str) else 'waiting'}"
        progress = stage.get("progress")
        if status == "running" and isinstance(progress, int | float) and not isinstance(progress, bool):
            line += f" {min(1.0, max(0.0, float(progress))):.0%}"
        if isinstance(stage.get("message"), str) and stage["message"]:
            line += f", {stage['message']}"
        lines.append(line)
    return lines


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str) and item] if isinstance(value, list) else []


@dataclass
class JobState:
    status: str = "submitting"  # then queued, running, succeeded, failed, cancelled
    progress: float = 0.0
    message: str = "Sending the request..."
    error: str | None = None
    scenes: list = field(default_factory=list)
    generation_id: str | None = None
    warnings: list[str] = field(default_factory=list)  # what the result left out, and why
    stages: list[str] = field(default_factory=list)  # one line per stage, see stage_lines


class GenerationJob:
    """One generation: POST (to ``path``), then poll until done; ``cancel()`` sends DELETE and
    stops polling."""

    def __init__(
        self,
        client: GatewayClient,
        request: dict,
        check_scene: Callable[[object], dict],
        poll_interval_s: float = 0.5,
        give_up_after_s: float = 600.0,
        path: str = "/v1/generations",
    ):
        self.client = client
        self.request = request
        self.path = path
        # Runs here, off Blender's UI thread: validating a large document takes a while.
        self.check_scene = check_scene
        self.poll_interval_s = poll_interval_s
        self.give_up_after_s = give_up_after_s
        self._state = JobState()
        self._lock = threading.Lock()
        self._cancel = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bmt-generation", daemon=True)

    def start(self) -> GenerationJob:
        self._thread.start()
        return self

    def snapshot(self) -> JobState:
        with self._lock:
            s = self._state
            return dataclasses.replace(s, warnings=list(s.warnings), stages=list(s.stages))

    def cancel(self) -> None:
        """Stop now from the UI's point of view; the thread tells the gateway in the background."""
        self._update(status="cancelled", message="Cancelled.")
        self._cancel.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def _update(self, **changes) -> None:
        with self._lock:
            if self._state.status in TERMINAL and changes.get("status") not in (None, "cancelled"):
                return  # a late reply never overwrites a cancel
            for key, value in changes.items():
                setattr(self._state, key, value)

    def _run(self) -> None:
        deadline = time.monotonic() + self.give_up_after_s
        try:
            generation_id = self.client.create(self.request, self.path)
            with self._lock:
                self._state.generation_id = generation_id
            while not self._cancel.is_set():
                reply = self.client.status(generation_id)
                if self._cancel.is_set():
                    break
                if self._apply(reply):
                    return
                if time.monotonic() > deadline:
                    self._update(
                        status="failed",
                        error=f"No result after {self.give_up_after_s:g} seconds; the request was cancelled.",
                    )
                    self._cancel.set()
                    break
                self._cancel.wait(self.poll_interval_s)
            self.client.cancel(generation_id)
        except GatewayError as exc:
            if not self._cancel.is_set():
                self._update(status="failed", error=str(exc))
        except Exception as exc:  # a bug must end the job visibly, not leave the UI waiting
            self._update(status="failed", error=f"Unexpected problem: {type(exc).__name__}: {exc}")

    def _apply(self, reply: dict) -> bool:
        """Record one status reply; True when the generation is over."""
        status = reply.get("status")
        if status not in ("queued", "running", *TERMINAL):
            raise GatewayError(f"The gateway sent an unknown status {status!r}.")
        progress = reply.get("progress")
        progress = min(1.0, max(0.0, float(progress))) if isinstance(progress, int | float) else 0.0
        message = reply.get("message") if isinstance(reply.get("message"), str) else ""
        stages = stage_lines(reply.get("stages"))
        if status == "succeeded":
            self._succeeded(reply, message, stages)
        elif status == "failed":
            error = reply.get("error") if isinstance(reply.get("error"), str) else "no reason given"
            self._update(
                status=status,
                progress=progress,
                message=message,
                stages=stages,
                error=f"The generation failed: {error}",
            )
        elif status == "cancelled":
            self._update(status=status, message="Cancelled on the gateway.", stages=stages)
        else:
            self._update(
                status=status,
                progress=progress,
                message=message or status.capitalize() + "...",
                stages=stages,
            )
        return status in TERMINAL

    def _succeeded(self, reply: dict, message: str, stages: list[str]) -> None:
        warnings = _strings(reply.get("warnings"))
        scenes = reply.get("scenes")
        if not isinstance(scenes, list) or not scenes:
            # The gateway's own words for why: its error, warnings or message ("done" says nothing).
            reason = reply.get("error") if isinstance(reply.get("error"), str) else ""
            reason = reason or "; ".join(warnings) or (message if message not in ("", "done") else "")
            raise GatewayError(
                "The gateway sent no scenes" + (f": {reason}" if reason else " and gave no reason.")
            )
        valid, problems = [], []
        for scene in scenes:
            try:
                valid.append(self.check_scene(scene))
            except ValueError as exc:
                problems.extend(getattr(exc, "errors", [str(exc)])[:3])
        if not valid:
            raise GatewayError(
                "The result is not a valid scene, nothing was added: " + "; ".join(problems[:3])
            )
        for scene in valid:  # the same warning on every variation is said once
            warnings += [w for w in _strings(scene.get("warnings")) if w not in warnings]
        left_out = len(scenes) - len(valid)
        if left_out:
            warnings.append(
                f"{left_out} of {len(scenes)} variations were invalid and left out: "
                + "; ".join(problems[:3])
            )
        self._update(
            status="succeeded",
            progress=1.0,
            message=message or "Done.",
            scenes=valid,
            warnings=warnings,
            stages=stages,
        )
