"""Generation requests: accepted at once, run on a bounded pool of threads, state kept in the
generations table.

One prompt makes one scene per variation: geometry first, then for every object its material(s),
modifiers and animation, each specialist asked once for all objects (so Triton decodes them
together). An "apply to selection" request (POST /v1/apply) sends an object the user has instead
of asking for geometry, and gets the parts to add to it.

The table is the source of truth, so status, progress and cancellation work across gateway
replicas: a DELETE marks the row cancelled and the runner checks the row between stages. A replica
touches the rows it holds every few seconds (a lease); a row nobody touched for
``generation_lease_s`` belonged to a replica that died, and is failed with that reason by any
replica's sweep.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import numpy as np
import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WrapValidator,
)
from pydantic_core import PydanticCustomError
from sqlalchemy import select, update

from services.gateway import operations
from shared.blobs import BlobStore
from shared.db import session_scope
from shared.db.models import Generation, RunStatus
from shared.inference import (
    DEFAULT_FACE_BUDGET,
    Inference,
    InvalidRequest,
    ModelUnavailable,
    SpecialistMissing,
)
from shared.scene import SCHEMA_VERSION, Limits, SceneValidationError, parse_scene
from shared.scene.models import Armature, Transform
from shared.settings import Settings

log = logging.getLogger(__name__)

SPACING_M = 2.5  # variations stand side by side along X
PARTS = ("material", "modifier", "animation")  # the stages after geometry, in order
# The add-on's names for two of them (its panel's tick boxes), accepted as the same thing.
ALIASES = {"materials": "material", "modifiers": "modifier"}
MAX_WORD_CHARS = 64
# The largest integer a JSON number keeps exactly (the OpenAPI schema states limits as doubles).
SEED_MAX = 2**53 - 1
MAX_MESH_VERTICES = 100_000  # of an object sent to apply parts to (and as many faces)
# Printable text, words of at most MAX_WORD_CHARS separated by spaces, at least one word, no
# control characters (C0, DEL, C1), which PostgreSQL or the text encoder refuse. Plain character
# classes, so that JSON Schema tools (and schemathesis) read it too. Lone surrogates (which no
# UTF-8 text holds, but JSON's \u escapes can) are refused by no_surrogates.
_WORD = rf"[^\x00-\x20\x7f-\x9f]{{1,{MAX_WORD_CHARS}}}"
PROMPT_PATTERN = rf"^ *{_WORD}( +{_WORD})* *$"
TERMINAL = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
# What a reader of a generation sees (GET /v1/generations/{id} and its event stream), and when
# it was written (which of two states is the newer).
VISIBLE = (
    Generation.updated_at,
    Generation.id,
    Generation.status,
    Generation.progress,
    Generation.stage,
    Generation.stages,
    Generation.message,
    Generation.error,
    Generation.latency_ms,
    Generation.result_key,
)


def no_surrogates(text: str) -> str:
    if any("\ud800" <= c <= "\udfff" for c in text):
        raise ValueError("the text holds a lone surrogate (not valid Unicode text)")
    return text


PromptText = Annotated[str, AfterValidator(no_surrogates)]


def _integral(value: Any) -> Any:
    """JSON Schema counts 995.0 as an integer; strict validation would not."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Integer = Annotated[int, BeforeValidator(_integral)]
# Bounds before the validator: that way round, the JSON Schema states them (minimum, maximum).
Seed = Annotated[int, Field(ge=0, le=SEED_MAX), BeforeValidator(_integral)]


def _canonical(name: str) -> str:
    return ALIASES.get(name, name)


SpecialistName = Annotated[
    Literal["geometry", "material", "modifier", "animation", "materials", "modifiers"],
    AfterValidator(_canonical),
]
PartName = Annotated[
    Literal["material", "modifier", "animation", "materials", "modifiers"], AfterValidator(_canonical)
]


class TargetMesh(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, strict=True)
    vertices: list[Annotated[list[float], Field(min_length=3, max_length=3)]] = Field(
        min_length=3, max_length=MAX_MESH_VERTICES
    )
    faces: list[
        Annotated[
            list[Annotated[int, Field(ge=0, le=MAX_MESH_VERTICES - 1), BeforeValidator(_integral)]],
            Field(min_length=3),
        ]
    ] = Field(
        min_length=1,
        max_length=MAX_MESH_VERTICES,
        description="Vertex indices, at least three per face; an index past the vertices fails the generation.",
    )


def _strict_scene_record(model: type[BaseModel]) -> Callable[[Any], Any]:
    """Validate a JSON object with the scene format's own ``model``, as strictly as the rest of the
    body (no "1.5" for a number): in JSON mode, where an array is a tuple."""

    def validate(value: Any) -> Any:
        if not isinstance(value, dict):
            return value  # the field's own validation says what is wrong
        try:
            return model.model_validate_json(json.dumps(value), strict=True)
        except (ValidationError, ValueError) as exc:
            errors = exc.errors() if isinstance(exc, ValidationError) else []
            where = ".".join(str(part) for part in errors[0]["loc"]) if errors else ""
            raise ValueError(f"{where}: {errors[0]['msg']}" if errors else str(exc)) from None

    return validate


class TargetObject(BaseModel):
    """The object the parts are for, as scene data: what the specialists read of it."""

    model_config = ConfigDict(extra="forbid", strict=True, regex_engine="python-re")
    name: Annotated[str, AfterValidator(no_surrogates)] = Field(
        min_length=1, max_length=63, pattern=r"^[^\x00-\x1f\x7f]+$"
    )
    transform: Annotated[Transform, BeforeValidator(_strict_scene_record(Transform))] | None = Field(
        None, description="Where the object stands (scene format); an animation starts from there."
    )


class MeshTarget(TargetObject):
    """A mesh object: material, modifier and animation read its mesh (and transform)."""

    type: Literal["MESH"] = "MESH"
    mesh: TargetMesh


class ArmatureTarget(TargetObject):
    """An armature: only animation applies (it has no mesh), and reads its bones."""

    type: Literal["ARMATURE"]
    armature: Annotated[Armature, BeforeValidator(_strict_scene_record(Armature))] = Field(
        description="The rig (scene format): its bones' names, parents and rest pose."
    )


def _animation_only(value: Any, handler: Callable[[Any], Any]) -> Any:
    """The schema states it (only "animation"); the message says why."""
    try:
        return handler(value)
    except ValidationError:
        if isinstance(value, str) and _canonical(value) in PARTS:
            raise PydanticCustomError(
                "armature_part",
                "an armature takes only the animation specialist, not {name} (it has no mesh)",
                {"name": value},
            ) from None
        raise


ArmaturePartName = Annotated[Literal["animation"], WrapValidator(_animation_only)]


def _target_type(body: Any) -> str:
    """Which request an apply body is, by its object's type (an unknown one is read as a mesh,
    whose model then names the field)."""
    target = body.get("object") if isinstance(body, dict) else getattr(body, "object", None)
    kind = target.get("type") if isinstance(target, dict) else getattr(target, "type", None)
    return "ARMATURE" if kind == "ARMATURE" else "MESH"


def request_models(settings: Settings) -> tuple[type[BaseModel], Any]:
    """The bodies of POST /v1/generations and POST /v1/apply, their limits taken from the settings
    so the schema states what the server enforces. An apply body is one of two, by its object's
    type: a mesh takes any part, an armature only animation."""
    config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, regex_engine="python-re")

    def prompt_field(description: str) -> Any:
        return Field(
            max_length=settings.generation_max_prompt_chars,
            pattern=PROMPT_PATTERN,
            description=f"{description}: printable text, words of at most {MAX_WORD_CHARS} characters, "
            "no control characters.",
            examples=["a wooden chair"],
        )

    seed_field = Field(None, description="Same seed, same result.")
    temperature_field = Field(0.8, ge=0.0, le=2.0, description="0 is greedy; higher is more varied.")

    class GenerationRequest(BaseModel):
        model_config = config
        prompt: PromptText = prompt_field("What to make")
        specialists: list[SpecialistName] = Field(
            default=["geometry"],
            max_length=8,
            description="Geometry always runs and makes the objects; material, modifier and animation "
            "(each optional) add their part to every object. `materials` and `modifiers` name the same.",
        )
        face_budget: Integer = Field(DEFAULT_FACE_BUDGET, ge=1, le=settings.generation_max_face_budget)
        seed: Seed | None = seed_field
        variations: Integer = Field(1, ge=1, le=settings.generation_max_variations)
        temperature: float = temperature_field

    class ApplyFields(BaseModel):
        model_config = config
        prompt: PromptText = prompt_field("What the parts should be like")
        seed: Seed | None = seed_field
        temperature: float = temperature_field

    class MeshApplyRequest(ApplyFields):
        """Apply to selection: parts for a mesh the user has; the result's one scene holds that
        object with its new parts (and the half mesh where a Mirror modifier completes it)."""

        specialists: list[PartName] = Field(min_length=1, max_length=6)
        object: MeshTarget

    class ArmatureApplyRequest(ApplyFields):
        """Apply to selection for an armature: an action whose F-curves drive its pose bones."""

        specialists: list[ArmaturePartName] = Field(
            min_length=1, max_length=6, description="Only animation: an armature has no mesh."
        )
        object: ArmatureTarget

    ApplyRequest = Annotated[
        Annotated[MeshApplyRequest, Tag("MESH")] | Annotated[ArmatureApplyRequest, Tag("ARMATURE")],
        Discriminator(_target_type),
    ]

    return GenerationRequest, ApplyRequest


def object_name(prompt: str) -> str:
    words = re.findall(r"[A-Za-z0-9]+", prompt)[:4]
    return "_".join(w.capitalize() for w in words)[:48] or "Generated"


class GenerationFailed(RuntimeError):
    """A stage could not produce its part; the message is what the client reads."""


def part_request(
    specialist: str, prompt: str, seed: int, temperature: float, obj: dict, users_object: bool = False
) -> dict:
    """What one specialist reads about an object (each generator documents its request): the
    material model its size, the modifier model its mesh (kept as it is when it is the user's
    own), the animation model its type, transform (the motion starts from where the object
    stands) and, for an armature, its bones."""
    request = {"prompt": prompt, "seed": seed, "temperature": temperature}
    if specialist == "material":
        vertices = np.asarray(obj["mesh"]["vertices"], dtype=float).reshape(-1, 3)
        if len(vertices):
            request["size"] = [float(v) for v in vertices.max(0) - vertices.min(0)]
    elif specialist == "modifier":
        request["mesh"] = {"vertices": obj["mesh"]["vertices"], "faces": obj["mesh"]["faces"]}
        request["at_least_one"] = True  # the user asked for modifiers on this object: a stack
        if users_object:  # its UVs, vertex groups and edits stay: no stack may rebuild it from a half
            request["keep_mesh"] = True
    elif specialist == "animation":
        request.update(object_type=obj["type"], transform=obj.get("transform") or {})
        if obj.get("armature") is not None:
            request["armature"] = obj["armature"]
    return request


# Why a modifier the model found is not added to a user's own mesh (apply to selection).
LEFT_OUT = {
    "MIRROR": "is already symmetric: a Mirror on the whole mesh would double it",
    "ARRAY": "already repeats: an Array on the whole mesh would repeat the repeats",
    "SOLIDIFY": "already has its thickness: a Solidify would thicken it twice",
}


def add_part(scene: dict, specialist: str, result: dict) -> None:
    """Put one specialist's result into the scene's only object (and the scene-level datablocks it
    references), renaming a datablock whose name is taken."""
    (obj,) = scene["objects"]

    def unique(kind: str, block: dict) -> dict:
        taken = {b["name"] for b in scene[kind]}
        name, n = block["name"], 1
        while name in taken:
            n += 1
            name = f"{block['name']}.{n:03d}"
        return {**block, "name": name}

    if specialist == "material":
        blocks = result.get("materials") or [result["material"]]
        added = [unique("materials", block) for block in blocks]
        scene["materials"].extend(added)
        obj["material_slots"] = [block["name"] for block in added]
    elif specialist == "modifier":
        obj["modifiers"] = result["modifiers"]
        if result.get("base_mesh"):  # e.g. Mirror: the half the modifier completes
            obj["mesh"] = {"name": obj["mesh"]["name"], **result["base_mesh"]}
            # The base sits about its own origin: the object moves there (generated objects are
            # neither rotated nor scaled), so base plus stack lands where the whole mesh was.
            transform = obj.get("transform") or {}
            location = transform.get("location", [0.0, 0.0, 0.0])
            offset = result.get("base_location", [0.0, 0.0, 0.0])
            obj["transform"] = {
                **transform,
                "location": [float(a) + float(b) for a, b in zip(location, offset, strict=True)],
            }
        for kind in result.get("left_out", []):
            why = LEFT_OUT.get(kind, "has the structure it would build")
            scene.setdefault("warnings", []).append(
                f"{kind.title()} left out: {obj['name']} {why} (your mesh is kept as it is)"
            )
        if not result["modifiers"] and not result.get("left_out"):  # asked for, so said, not silent
            dropped = ", ".join(kind.title() for kind in result.get("dropped", []))
            scene.setdefault("warnings", []).append(
                f"No modifiers for {obj['name']}: the modifier specialist found no stack its mesh carries"
                + (f" ({dropped} suggested, but the mesh lacks its structure)" if dropped else "")
            )
    elif specialist == "animation":
        action = unique("actions", result["action"])
        scene["actions"].append(action)
        obj["animation"] = {**result.get("animation", {}), "action": action["name"]}


class ResultCache:
    """The last few finished results by blob key: the replica that made a generation answers its
    reads without the blob store (and still answers them while the store is down)."""

    def __init__(self, size: int = 256):
        self.size = size
        self._items: OrderedDict[str, dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str, load: Callable[[str], dict]) -> dict:
        value = self.peek(key)
        if value is None:
            value = load(key)
            self.put(key, value)
        return value

    def peek(self, key: str) -> dict | None:
        """The result when it is here, without loading it."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        return None

    def put(self, key: str, value: dict) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)


class GenerationRunner:
    def __init__(
        self,
        settings: Settings,
        inference: Callable[[], Inference],
        blobs: Callable[[], BlobStore],
        results: ResultCache,
    ):
        self.settings, self.inference, self.blobs, self.results = settings, inference, blobs, results
        self.pool = ThreadPoolExecutor(
            max_workers=settings.generation_concurrency, thread_name_prefix="generation"
        )
        self.limits = Limits.from_settings()
        self._held: dict[str, float] = {}  # generation id -> accepted at (monotonic), while queued or running
        self._listeners: dict[str, list[Callable[[dict[str, Any] | None], None]]] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self) -> None:
        """Begin keeping the lease on the generations this replica holds (the app's start-up)."""
        threading.Thread(target=self._keep_lease, name="generation-lease", daemon=True).start()

    # ---- accepting ----------------------------------------------------------------------

    def in_flight(self) -> int:
        with self._lock:
            return len(self._held)

    def submit(self, request: Any) -> str:
        """Queue a GenerationRequest (geometry, then the parts asked for) or an ApplyRequest (the
        parts only, for its object)."""
        generation_id = str(uuid.uuid4())
        wanted = [] if getattr(request, "object", None) else ["geometry"]
        wanted += [name for name in PARTS if name in request.specialists]
        with session_scope() as session:
            session.add(
                Generation(
                    id=generation_id,
                    prompt=request.prompt,
                    options=request.model_dump(mode="json", exclude={"object"}),
                    status=RunStatus.QUEUED,
                    progress=0.0,
                    message="queued",
                    stages={name: {"state": "pending"} for name in wanted},
                )
            )
        with self._lock:
            self._held[generation_id] = time.monotonic()
        operations.QUEUE_DEPTH.inc()
        context = contextvars.copy_context()  # the request id follows the work into the pool
        self.pool.submit(context.run, self._run, generation_id, request, wanted)
        return generation_id

    def cancel(self, generation_id: str) -> RunStatus | None:
        """Cancel an open generation; its status (None when there is no such generation)."""
        status, row = self._write_if_open(
            generation_id, status=RunStatus.CANCELLED, message="cancelled", stage=None
        )
        self._notify(generation_id, row)
        return status

    @staticmethod
    def _write_if_open(
        generation_id: str, **fields: object
    ) -> tuple[RunStatus | None, dict[str, Any] | None]:
        """Write ``fields`` to a queued or running generation in one conditional UPDATE, so that a
        stage write and a cancel (or a sweep) never overwrite each other. Returns its status after,
        and the row as it reads now (the VISIBLE columns) when this write changed it."""
        with session_scope() as session:
            written = (
                session.execute(
                    update(Generation)
                    .where(Generation.id == generation_id, Generation.status.in_(_OPEN))
                    .values(**fields)
                    .returning(*VISIBLE)
                )
                .mappings()
                .one_or_none()
            )
            if written is not None:
                return written["status"], dict(written)
            # Not open (ended, or cancelled meanwhile) or no such row: what it is now.
            return session.scalar(select(Generation.status).where(Generation.id == generation_id)), None

    # ---- change notification (server-sent events on this replica) -----------------------

    def listen(
        self, generation_id: str, callback: Callable[[dict[str, Any] | None], None]
    ) -> Callable[[], None]:
        """Call ``callback`` (from a worker thread) whenever this replica changes the row, with the
        row as that write left it (the VISIBLE columns), or None when the row is to be read; returns
        the function that stops it."""
        with self._lock:
            self._listeners.setdefault(generation_id, []).append(callback)

        def stop() -> None:
            with self._lock:
                callbacks = self._listeners.get(generation_id, [])
                if callback in callbacks:
                    callbacks.remove(callback)
                if not callbacks:
                    self._listeners.pop(generation_id, None)

        return stop

    def holds(self, generation_id: str) -> bool:
        with self._lock:
            return generation_id in self._held

    def _notify(self, generation_id: str, row: dict[str, Any] | None = None) -> None:
        with self._lock:
            callbacks = list(self._listeners.get(generation_id, []))
        for callback in callbacks:
            callback(row)

    # ---- running ------------------------------------------------------------------------

    def _update(self, generation_id: str, **fields: object) -> RunStatus | None:
        """Write fields unless the generation was cancelled (or failed by a sweep) meanwhile;
        returns its status."""
        status, row = self._write_if_open(generation_id, **fields)
        self._notify(generation_id, row)
        return status

    def _run(self, generation_id: str, request: Any, wanted: list[str]) -> None:
        with self._lock:
            accepted = self._held.get(generation_id, time.monotonic())
        operations.QUEUE_DEPTH.dec()
        operations.RUNNING.inc()
        stages: dict[str, dict] = {name: {"state": "pending"} for name in wanted}
        stage = "start"
        try:
            seed = request.seed if request.seed is not None else uuid.uuid4().int % (2**31)
            scenes = self._initial_scenes(request, seed)
            # One write per stage: its start carries the previous stage's end (and, first, RUNNING).
            carried: dict[str, Any] = {"status": RunStatus.RUNNING}
            for stage in wanted:
                stages[stage] = {"state": "running"}
                status = self._update(
                    generation_id, stage=stage, stages=_copy(stages), message=stage, **carried
                )
                if status in TERMINAL:
                    return
                start = time.perf_counter()
                self._run_stage(stage, request, seed, scenes)
                seconds = time.perf_counter() - start
                operations.STAGE_SECONDS.labels(stage).observe(seconds)
                stages[stage] = {"state": "done", "seconds": round(seconds, 4)}
                carried = {"progress": sum(s["state"] == "done" for s in stages.values()) / len(wanted)}
            stage = "store"
            documents = []
            for scene in scenes:
                parsed = parse_scene(scene, self.limits)
                compact = parsed.model_dump(mode="json", exclude_defaults=True)  # defaults are implied
                documents.append({"schema_version": SCHEMA_VERSION, **compact})
            result = {"scenes": documents}
            # pydantic's encoder: a tenth of json.dumps' time on large meshes (2.3 against 18 ms
            # for four scenes of 3,200 faces on the 2-core VM); the same values, written compact
            # in UTF-8 (json.loads reads both).
            key = self.blobs().put_bytes(pydantic_core.to_json(result))
            self.results.put(key, result)
            latency_ms = (time.monotonic() - accepted) * 1000
            self._update(
                generation_id,
                status=RunStatus.SUCCEEDED,
                stages=_copy(stages),
                progress=1.0,
                stage=None,
                result_key=key,
                message="done",
                latency_ms=latency_ms,
            )
            operations.GENERATION_SECONDS.labels("succeeded").observe(latency_ms / 1000)
        except Exception as exc:  # recorded for the client; the gateway keeps serving
            if stage in stages:
                stages[stage] = {"state": "failed"}
            kind = type(exc).__name__
            known = (
                GenerationFailed,
                ModelUnavailable,
                InvalidRequest,
                SpecialistMissing,
                SceneValidationError,
            )
            if isinstance(exc, known):
                log.warning("generation %s failed at %s: %s", generation_id, stage, exc)
                error = str(exc) if not isinstance(exc, SceneValidationError) else f"{stage}: {exc}"
            else:
                log.exception("generation %s failed at %s", generation_id, stage)
                error = f"{stage}: {kind}: {exc}"
            operations.ERRORS.labels(stage, kind).inc()
            latency_ms = (time.monotonic() - accepted) * 1000
            self._update(
                generation_id,
                status=RunStatus.FAILED,
                stage=None,
                stages=_copy(stages),
                error=error[:2000],
                message="failed",
                latency_ms=latency_ms,
            )
            operations.GENERATION_SECONDS.labels("failed").observe(latency_ms / 1000)
        finally:
            operations.RUNNING.dec()
            with self._lock:
                self._held.pop(generation_id, None)
            self._notify(generation_id)

    def _initial_scenes(self, request: Any, seed: int) -> list[dict]:
        """A scene per variation, its one object still without a mesh when geometry is to run."""
        target = getattr(request, "object", None)
        if target is not None:
            obj: dict[str, Any] = {"name": target.name, "type": target.type}
            if target.transform is not None:
                obj["transform"] = target.transform.model_dump(mode="json")
            if target.type == "ARMATURE":
                obj["armature"] = target.armature.model_dump(mode="json")
            else:
                count = len(target.mesh.vertices)
                if any(index >= count for face in target.mesh.faces for index in face):
                    raise GenerationFailed(f"object: a face names a vertex past the {count} given")
                obj["mesh"] = {"name": target.name, **target.mesh.model_dump(mode="json")}
            scene = self._scene(target.name, obj)
            try:
                parse_scene(scene, self.limits)
            except SceneValidationError as exc:
                raise GenerationFailed(f"object: {exc}") from None
            return [scene]
        name = object_name(request.prompt)
        return [
            self._scene(
                f"{name} {i + 1}",
                {"name": name, "type": "MESH", "transform": {"location": [i * SPACING_M, 0, 0]}},
            )
            for i in range(request.variations)
        ]

    @staticmethod
    def _scene(scene_name: str, obj: dict) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "name": scene_name,
            "objects": [obj],
            "materials": [],
            "actions": [],
        }

    def _run_stage(self, stage: str, request: Any, seed: int, scenes: list[dict]) -> None:
        if stage == "geometry":
            asks = [
                {
                    "prompt": request.prompt,
                    "face_budget": request.face_budget,
                    "seed": seed + i,
                    "temperature": request.temperature,
                }
                for i in range(len(scenes))
            ]
        else:
            asks = [
                part_request(
                    stage,
                    request.prompt,
                    seed + i,
                    request.temperature,
                    scene["objects"][0],
                    users_object=getattr(request, "object", None) is not None,
                )
                for i, scene in enumerate(scenes)
            ]
        results = self.inference().run_many(stage, asks)
        if len(results) != len(asks):
            raise GenerationFailed(f"{stage}: the model answered {len(results)} of {len(asks)} requests")
        for scene, result in zip(scenes, results, strict=True):
            if isinstance(result.get("batch"), int):
                operations.BATCH_SIZE.labels(stage).observe(result["batch"])
            try:
                if stage == "geometry":
                    (obj,) = scene["objects"]
                    obj["mesh"] = {
                        "name": obj["name"],
                        "vertices": result["vertices"],
                        "faces": result["faces"],
                    }
                else:
                    add_part(scene, stage, result)
            except (KeyError, TypeError, ValueError) as exc:
                raise GenerationFailed(f"{stage}: the model's answer lacks its part ({exc!r})") from exc

    # ---- leases -------------------------------------------------------------------------

    def _keep_lease(self) -> None:
        """Touch the rows this replica holds, and fail those whose replica stopped touching them."""
        interval = max(0.2, self.settings.generation_lease_s / 3)
        while not self._stop.wait(interval):
            try:
                with self._lock:
                    held = list(self._held)
                if held:
                    with session_scope() as session:
                        session.execute(
                            update(Generation)
                            .where(Generation.id.in_(held), Generation.status.in_(_OPEN))
                            .values(updated_at=datetime.now(UTC))
                        )
                sweep_abandoned(self.settings.generation_lease_s)
            except Exception:  # the database may be away for a moment; the next round retries
                log.warning("generation lease round failed", exc_info=True)

    def shutdown(self, wait_s: float) -> None:
        """Stop taking work: wait up to ``wait_s`` for what runs, then fail what is left with the reason."""
        self._stop.set()
        self.pool.shutdown(wait=False, cancel_futures=True)
        deadline = time.monotonic() + wait_s
        while self.in_flight() and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            left = list(self._held)
        if left:
            fail_open(
                Generation.id.in_(left), "the gateway stopped before this generation finished; send it again"
            )


_OPEN = (RunStatus.QUEUED, RunStatus.RUNNING)


def _copy(stages: dict[str, dict]) -> dict[str, dict]:
    """A new value for the JSON column (an object changed in place is not seen as changed)."""
    return {name: dict(state) for name, state in stages.items()}


def fail_open(condition: Any, error: str) -> int:
    """Fail the queued or running generations matching ``condition`` with ``error``; returns how many."""
    with session_scope() as session:
        result = session.execute(
            update(Generation)
            .where(condition, Generation.status.in_(_OPEN))
            .values(status=RunStatus.FAILED, stage=None, message="failed", error=error)
        )
        return int(getattr(result, "rowcount", 0) or 0)


def sweep_abandoned(lease_s: float) -> int:
    """Fail the open generations nobody has touched for ``lease_s`` (their replica died)."""
    cutoff = datetime.now(UTC) - timedelta(seconds=lease_s)
    return fail_open(
        Generation.updated_at < cutoff,
        f"the gateway running this generation stopped (no heartbeat for {lease_s:g} s); send it again",
    )
