"""The one way every service reaches the four specialist models: in-process or through Triton.

Each specialist NAME (geometry, material, modifier, animation) has a generator class
``shared.ml.NAME_generator.NAMEGenerator(checkpoint, device=None)`` whose
``run_many(requests: list[dict]) -> list[dict]`` takes JSON-able request dicts and returns
JSON-able result dicts (a bad request raises ValueError). ``BMT_INFERENCE_URL`` picks how it is
reached:

- ``local``: the generator is imported and loaded in this process on first use, only if its
  checkpoint (``BMT_NAME_CHECKPOINT``) exists;
- ``grpc://host:port``: Triton serves a model named NAME (``services/serving``) that runs the same
  ``run_many`` over JSON: input ``REQUEST_JSON``, output ``RESULT_JSON``, both BYTES, one row per
  request, so Triton's dynamic batcher decodes requests of concurrent callers together.

What the gateway sends (each generator documents what it reads; unknown keys are for it to refuse):
geometry ``{prompt, face_budget, seed, temperature}`` -> ``{vertices, faces, ...}``; material,
modifier and animation ``{prompt, seed, temperature, mesh: {vertices, faces}}`` -> a dict carrying
the scene-format part (``material``/``materials``, ``modifiers`` and optionally ``base_mesh``,
``action`` and optionally ``animation``).

The gateway never imports torch or services/serving: the in-process path imports the generator
lazily, the Triton path needs only tritonclient.
"""

from __future__ import annotations

import importlib
import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import CancelledError, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SPECIALISTS = ("geometry", "material", "modifier", "animation")
# A geometry request's most faces an object unless it says: the budget the geometry evaluation
# measures at (models/geometry/parts-nearest/README.md), so what is served is what was measured.
DEFAULT_FACE_BUDGET = 400
REQUEST_INPUT = "REQUEST_JSON"
RESULT_OUTPUT = "RESULT_JSON"


class ModelUnavailable(RuntimeError):
    """The serving side cannot be reached or timed out; the request can be retried later."""


class SpecialistMissing(LookupError):
    """The specialist is not served here (no checkpoint, not in Triton's repository): a request
    that needs it cannot be answered until an operator adds it."""


class InvalidRequest(ValueError):
    """The model refused a request (the generator's ValueError, passed on by Triton)."""


class Specialist(Protocol):
    def run_many(self, requests: list[dict], timeout_s: float) -> list[dict]: ...


def generator_path(name: str) -> str:
    """ "module:attribute" of what builds a specialist's generator from its checkpoint: the module's
    ``load_generator`` where its checkpoints come in several kinds (geometry: flat or parts, told
    apart by the file), else its NAMEGenerator class."""
    module_name = f"shared.ml.{name}_generator"
    module = importlib.import_module(module_name)
    builder = "load_generator" if hasattr(module, "load_generator") else f"{name.capitalize()}Generator"
    return f"{module_name}:{builder}"


def generator_class(name: str) -> Callable[..., Any]:
    module, _, attribute = generator_path(name).partition(":")
    return getattr(importlib.import_module(module), attribute)


class InProcessSpecialist:
    """The generator in this process, loaded on first use. ``run_many`` returns within
    ``timeout_s`` or raises ModelUnavailable (the decoding itself cannot be interrupted and
    finishes in the background; the caller is free)."""

    def __init__(self, name: str, checkpoint: Path):
        self.name, self.checkpoint = name, Path(checkpoint)
        self._generator: Any = None
        self._lock = threading.Lock()
        # One call at a time: a generator is not required to be thread-safe; the caller's wait
        # (and so its deadline) includes the time queued behind others.
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"{name}-inference")

    def generator(self) -> Any:
        with self._lock:
            if self._generator is None:
                if not self.checkpoint.is_file():
                    raise SpecialistMissing(f"no {self.name} checkpoint at {self.checkpoint}")
                self._generator = generator_class(self.name)(self.checkpoint)
            return self._generator

    def run_many(self, requests: list[dict], timeout_s: float) -> list[dict]:
        deadline = time.monotonic() + timeout_s
        while True:
            pool = self._pool
            future = pool.submit(lambda: self.generator().run_many(requests))
            try:
                return future.result(timeout=max(0.0, deadline - time.monotonic()))
            except CancelledError:  # queued behind a call that stalled: go again on the fresh thread
                continue
            except FutureTimeout:
                # The stuck call keeps its thread; the calls queued behind it move to a fresh one.
                with self._lock:
                    if self._pool is pool:
                        self._pool = ThreadPoolExecutor(
                            max_workers=1, thread_name_prefix=f"{self.name}-inference"
                        )
                pool.shutdown(wait=False, cancel_futures=True)
                raise ModelUnavailable(f"{self.name}: no answer within {timeout_s:g} s") from None
            except ValueError as exc:
                raise InvalidRequest(f"{self.name}: {exc}") from exc


class TritonSpecialist:
    """A Triton model over gRPC. A call that fails drops the client, so the next one opens a fresh
    channel and works as soon as Triton is back (a reused channel keeps failing for up to 30 s)."""

    # gRPC shares one connection per address among channels by default, and that connection's
    # reconnect backoff grows while Triton is down (8.5 s before a fresh channel got through after
    # 30 s down, measured): each client gets its own connection, retried at least every second.
    CHANNEL_ARGS = (
        ("grpc.use_local_subchannel_pool", 1),
        ("grpc.initial_reconnect_backoff_ms", 100),
        ("grpc.min_reconnect_backoff_ms", 100),
        ("grpc.max_reconnect_backoff_ms", 1000),
    )

    def __init__(self, name: str, url: str):
        self.name, self.url = name, url
        self._client: Any = None
        self._lock = threading.Lock()

    def client(self) -> Any:
        import tritonclient.grpc as grpcclient

        with self._lock:
            if self._client is None:
                self._client = grpcclient.InferenceServerClient(
                    self.url,
                    channel_args=[
                        ("grpc.max_send_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
                        ("grpc.max_receive_message_length", grpcclient.MAX_GRPC_MESSAGE_SIZE),
                        *self.CHANNEL_ARGS,
                    ],
                )
            return self._client

    def forget_client(self, client: Any) -> None:
        """The next call opens a fresh channel. This one is not closed here: calls of other
        threads may still be on it (it closes when the last of them lets go of it)."""
        with self._lock:
            if self._client is client:
                self._client = None

    def ready_models(self, timeout_s: float = 1.0) -> set[str]:
        """The models this Triton has loaded and ready, in one call (the readiness probe asks every
        0.25 s, and a Triton that has just started answers slowly); raises ModelUnavailable when
        Triton does not answer."""
        from tritonclient.utils import InferenceServerException

        client = self.client()
        try:
            index = client.get_model_repository_index(client_timeout=timeout_s)
        except InferenceServerException as exc:
            self.forget_client(client)
            raise ModelUnavailable(f"Triton at {self.url}: {exc.message()}") from exc
        return {model.name for model in index.models if model.state == "READY"}

    def run_many(self, requests: list[dict], timeout_s: float) -> list[dict]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        rows = np.array([[json.dumps(r).encode()] for r in requests], dtype=np.object_)
        tensor = grpcclient.InferInput(REQUEST_INPUT, list(rows.shape), "BYTES")
        tensor.set_data_from_numpy(rows)
        client = self.client()
        try:
            result = client.infer(self.name, [tensor], client_timeout=timeout_s)
        except InferenceServerException as exc:
            message = exc.message() or str(exc)
            if "ValueError" in message:  # the model refused the request: not Triton's fault
                raise InvalidRequest(f"{self.name}: {message}") from exc
            self.forget_client(client)
            raise ModelUnavailable(f"Triton ({self.name}): {message}") from exc
        return [json.loads(row) for row in result.as_numpy(RESULT_OUTPUT).reshape(-1)]


class Inference:
    """The registry of the four specialists for one inference URL."""

    def __init__(self, inference_url: str, checkpoints: dict[str, Path]):
        if inference_url != "local" and not inference_url.startswith("grpc://"):
            raise ValueError(f"unsupported inference URL {inference_url!r} (use local or grpc://host:port)")
        self.url = inference_url
        self.specialists: dict[str, InProcessSpecialist | TritonSpecialist] = {}
        for name in SPECIALISTS:
            if inference_url == "local":
                self.specialists[name] = InProcessSpecialist(name, checkpoints[name])
            else:
                self.specialists[name] = TritonSpecialist(name, inference_url.removeprefix("grpc://"))

    def available(self) -> dict[str, str | None]:
        """For each specialist: None where it can be used, otherwise why not. Raises
        ModelUnavailable when Triton itself does not answer (a fault, not a missing model)."""
        reasons: dict[str, str | None] = {}
        served: set[str] | None = None  # one Triton serves every remote specialist: asked once
        for name, specialist in self.specialists.items():
            if isinstance(specialist, InProcessSpecialist):
                present = specialist.checkpoint.is_file()
                reasons[name] = None if present else f"no {name} checkpoint at {specialist.checkpoint}"
            else:
                served = specialist.ready_models() if served is None else served
                reasons[name] = (
                    None if name in served else f"Triton at {specialist.url} does not serve {name}"
                )
        return reasons

    def run_many(self, name: str, requests: list[dict], timeout_s: float | None = None) -> list[dict]:
        """The specialist's results for ``requests``, within ``timeout_s`` (default: the
        inference_timeout_s setting, the time queued included) or ModelUnavailable."""
        from shared.settings import get_settings

        if name not in self.specialists:
            raise SpecialistMissing(f"no specialist {name!r} (known: {', '.join(SPECIALISTS)})")
        if not requests:
            return []
        return self.specialists[name].run_many(requests, timeout_s or get_settings().inference_timeout_s)


def default_checkpoints() -> dict[str, Path]:
    from shared.settings import get_settings

    settings = get_settings()
    return {name: getattr(settings, f"{name}_checkpoint") for name in SPECIALISTS}


_registries: dict[tuple[str, tuple[tuple[str, Path], ...]], Inference] = {}
_registries_lock = threading.Lock()


def get_inference() -> Inference:
    """The registry for the current settings, built once per distinct configuration (so a loaded
    in-process model and an open gRPC channel are reused)."""
    from shared.settings import get_settings

    settings = get_settings()
    checkpoints = default_checkpoints()
    key = (settings.inference_url, tuple(sorted(checkpoints.items())))
    with _registries_lock:
        if key not in _registries:
            _registries[key] = Inference(settings.inference_url, checkpoints)
        return _registries[key]
