"""The generation API the add-on calls, on the embedded default (in-process models): one scene from
one prompt through every specialist, apply to selection, progress per stage and its event stream,
refusals before anything is queued, deadlines and abandoned generations."""

from __future__ import annotations

import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, select

from services.gateway.app import create_app
from services.gateway.generations import add_part
from shared.db import ensure_schema, get_engine, session_scope
from shared.db.models import Generation, RunStatus
from shared.scene import Limits, parse_scene
from shared.settings import get_settings
from tests.specialist_stubs import STUBS, write_stub_checkpoints
from tools.servers import gateway_process

ALL = ["geometry", "material", "modifier", "animation"]
PARTS = ["material", "modifier", "animation"]
CUBE = {
    "vertices": [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)],
    "faces": [[0, 1, 3, 2], [4, 6, 7, 5], [0, 4, 5, 1], [2, 3, 7, 6], [0, 2, 6, 4], [1, 5, 7, 3]],
}


def apply_body(prompt: str, specialists: list[str] = PARTS) -> dict:
    """Apply to selection: no geometry model call (seconds each on a busy 2-core machine)."""
    return {"prompt": prompt, "specialists": specialists, "object": {"name": "Cube", "mesh": CUBE}}


def wait_done(client: TestClient, generation_id: str, timeout: float = 120) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(f"/v1/generations/{generation_id}")
        state = response.json()
        if response.status_code != 200 or state["status"] in ("succeeded", "failed"):
            return state
        time.sleep(0.05)
    raise AssertionError(f"generation {generation_id} still {state['status']} after {timeout}s")


def post(client: TestClient, body: dict, **kwargs) -> httpx.Response:
    """A generation, or an application to the user's object when the body sends one."""
    return client.post("/v1/apply" if "object" in body else "/v1/generations", json=body, **kwargs)


def post_until(client: TestClient, body: dict, status: int, within_s: float) -> httpx.Response:
    """POST until the gateway answers ``status`` (it sees a part go or come back), within ``within_s``."""
    start = time.monotonic()
    while (response := post(client, body)).status_code != status:
        assert time.monotonic() - start < within_s, f"still {response.status_code} after {within_s} s"
        time.sleep(0.05)
    return response


def generate(client: TestClient, body: dict, timeout: float = 120) -> dict:
    response = post(client, body)
    assert response.status_code == 202, response.text
    return wait_done(client, response.json()["id"], timeout)


@pytest.fixture
def stub_specialists(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """Material, modifier and animation served in-process by the test-only generators (see
    tests/specialist_stubs.py for why), geometry by the real model."""
    import shared.inference

    real = shared.inference.generator_class
    monkeypatch.setattr(shared.inference, "generator_class", lambda name: STUBS.get(name) or real(name))
    paths = write_stub_checkpoints(tmp_path / "stubs")
    for name, path in paths.items():
        monkeypatch.setenv(f"BMT_{name.upper()}_CHECKPOINT", str(path))
    get_settings.cache_clear()
    return paths


@pytest.fixture
def client(geometry_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(geometry_checkpoint))
    # A first call loads the text encoder: minutes on a 2-core machine shared with other runs.
    monkeypatch.setenv("BMT_INFERENCE_TIMEOUT_S", "600")
    get_settings.cache_clear()
    ensure_schema()
    with TestClient(create_app()) as client:
        yield client


def generation_count() -> int:
    with session_scope() as session:
        return session.query(Generation).count()


def test_one_prompt_makes_one_scene_through_every_specialist(stub_specialists, client: TestClient):
    body = generate(
        client,
        {"prompt": "a wooden chair", "face_budget": 24, "seed": 5, "variations": 2, "specialists": ALL},
    )
    assert body["status"] == "succeeded" and body["progress"] == 1.0 and body["error"] is None, body
    assert list(body["stages"]) == ALL
    assert all(stage["state"] == "done" and stage["seconds"] >= 0 for stage in body["stages"].values())
    assert body["latency_ms"] >= sum(stage["seconds"] for stage in body["stages"].values()) * 1000
    assert len(body["scenes"]) == 2
    for index, document in enumerate(body["scenes"]):
        scene = parse_scene(document, Limits())
        (obj,) = scene.objects
        assert obj.name == "A_Wooden_Chair" and obj.transform.location[0] == pytest.approx(
            index * 2.5, abs=0.5
        )  # + the half's origin
        assert obj.material_slots == ["Generated"] and scene.materials[0].pbr.roughness == 0.4
        assert [m.type for m in obj.modifiers] == ["MIRROR"]
        assert all(v[0] >= 0 for v in obj.mesh.vertices), "the half mesh the Mirror modifier completes"
        assert obj.animation.action == "Turn" and scene.actions[0].fcurves[0].data_path == "rotation_euler"
    # The two variations went to each specialist as one call (one batch for Triton).
    assert body["scenes"][0]["objects"][0]["mesh"] != body["scenes"][1]["objects"][0]["mesh"]


def test_a_base_mesh_moves_the_object_to_where_its_stack_rebuilds_the_whole():
    """The modifier model's half sits about its own origin, base_location says where that origin
    was: base plus Mirror lands where the whole mesh stood."""
    whole = {"vertices": [[0.2, 0, 0], [1.0, 0, 0], [0.6, 1, 0]], "faces": [[0, 1, 2]]}
    scene = {
        "objects": [
            {"name": "Wedge", "mesh": {"name": "Wedge", **whole}, "transform": {"location": [2.5, 0, 0]}}
        ]
    }
    half = {"vertices": [[0, 0, 0], [0.4, 0, 0], [0, 1, 0]], "faces": [[0, 1, 2]]}
    mirror = {"name": "Mirror", "type": "MIRROR", "params": {"use_axis": [True, False, False]}}
    add_part(scene, "modifier", {"modifiers": [mirror], "base_mesh": half, "base_location": [0.6, 0.0, 0.25]})
    (obj,) = scene["objects"]
    assert obj["transform"]["location"] == pytest.approx([3.1, 0.0, 0.25])
    assert obj["mesh"] == {"name": "Wedge", **half} and obj["modifiers"] == [mirror]
    assert "warnings" not in scene


def test_no_modifier_for_a_generated_object_is_said_not_left_silent():
    """The user asked for modifiers: an object the specialist finds no stack for gets a warning
    naming what it suggested and the mesh lacked (the real model's answer on an asymmetric mesh)."""
    scene = {"objects": [{"name": "Rock", "mesh": {"name": "Rock", "vertices": [], "faces": []}}]}
    add_part(scene, "modifier", {"modifiers": [], "dropped": ["ARRAY"]})
    assert scene["objects"][0]["modifiers"] == []
    assert scene["warnings"] == [
        "No modifiers for Rock: the modifier specialist found no stack its mesh carries "
        "(Array suggested, but the mesh lacks its structure)"
    ]
    quiet = {"objects": [{"name": "Rock", "mesh": {"name": "Rock", "vertices": [], "faces": []}}]}
    add_part(quiet, "modifier", {"modifiers": [], "dropped": []})
    assert quiet["warnings"] == [
        "No modifiers for Rock: the modifier specialist found no stack its mesh carries"
    ]


def test_add_on_names_for_specialists_are_accepted(stub_specialists, client: TestClient):
    body = generate(client, {"prompt": "a lamp", "face_budget": 12, "specialists": ["materials"]})
    assert body["status"] == "succeeded" and list(body["stages"]) == ["geometry", "material"], body


@pytest.fixture
def no_modifier_or_animation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the two at checkpoints that are not there (the committed ones are the defaults)."""
    for name in ("modifier", "animation"):
        monkeypatch.setenv(f"BMT_{name.upper()}_CHECKPOINT", str(tmp_path / f"{name}.pt"))
    return tmp_path


def test_a_specialist_that_is_not_there_is_refused_with_the_reason(
    no_modifier_or_animation, client: TestClient
):
    before = generation_count()
    response = client.post(
        "/v1/generations", json={"prompt": "a chair", "specialists": ["geometry", "modifier"]}
    )
    assert response.status_code == 422
    missing = no_modifier_or_animation / "modifier.pt"
    assert f"not available: no modifier checkpoint at {missing}" in response.json()["detail"]["modifier"]
    assert generation_count() == before, "nothing was queued"
    ready = client.get("/readyz").json()
    assert (
        ready["specialists"]["geometry"] is None
        and "no animation checkpoint" in ready["specialists"]["animation"]
    )


def test_apply_to_selection_returns_the_parts_for_the_users_object(stub_specialists, client: TestClient):
    cube = CUBE
    body = generate(
        client,
        {
            "prompt": "rusty metal",
            "specialists": ["material", "modifier", "animation"],
            "object": {"name": "Cube", "mesh": cube},
        },
    )
    assert body["status"] == "succeeded", body
    (scene,) = body["scenes"]
    (obj,) = scene["objects"]
    # The user's mesh comes back as sent: the stack that would rebuild it from a half is named
    # instead, and the user, who asked for modifiers, gets one that leaves the mesh as it is.
    assert obj["mesh"]["vertices"] == cube["vertices"]
    assert [m["type"] for m in obj["modifiers"]] == ["BEVEL"]
    assert scene["warnings"] == [
        "Mirror left out: Cube is already symmetric: a Mirror on the whole mesh would double it "
        "(your mesh is kept as it is)"
    ]
    assert (
        obj["name"] == "Cube"
        and obj["material_slots"] == ["Generated"]
        and obj["animation"]["action"] == "Turn"
    )
    assert [m["name"] for m in scene["materials"]] == ["Generated"] and len(scene["actions"]) == 1
    for bad, field in (
        ({"prompt": "metal", "specialists": ["material"]}, "object"),
        (
            {"prompt": "metal", "specialists": ["geometry"], "object": {"name": "Cube", "mesh": cube}},
            "specialists",
        ),
        ({"prompt": "metal", "specialists": [], "object": {"name": "Cube", "mesh": cube}}, "specialists"),
    ):
        response = client.post("/v1/apply", json=bad)
        assert response.status_code == 422 and field in json.dumps(response.json())
    # Out-of-range indices are beyond what a schema can say: the generation fails with the reason.
    broken = generate(
        client, {**apply_body("metal"), "object": {"name": "C", "mesh": {**cube, "faces": [[0, 1, 99]]}}}
    )
    assert (
        broken["status"] == "failed" and broken["error"] == "object: a face names a vertex past the 8 given"
    )


RIG = {
    "name": "Rig",
    "bones": [
        {"name": "Root", "head": [0, 0, 0], "tail": [0, 0, 1]},
        {"name": "Arm", "parent": "Root", "head": [0, 0, 1], "tail": [1, 0, 1], "use_connect": True},
    ],
}


def test_apply_to_an_armature_animates_its_rig_and_refuses_other_parts(stub_specialists, client: TestClient):
    target = {"name": "Hero", "type": "ARMATURE", "armature": RIG, "transform": {"location": [2, 0, 0]}}
    body = generate(client, {"prompt": "walk cycle", "specialists": ["animation"], "object": target})
    assert body["status"] == "succeeded", body  # the stub refuses an ARMATURE request without bones
    (obj,) = body["scenes"][0]["objects"]
    assert obj["type"] == "ARMATURE" and [b["name"] for b in obj["armature"]["bones"]] == ["Root", "Arm"]
    assert obj["transform"]["location"] == [2.0, 0.0, 0.0] and obj["animation"]["action"] == "Turn"
    assert "mesh" not in obj
    refusals = [
        ({**target, "armature": None}, ["animation"], "armature"),
        ({k: v for k, v in target.items() if k != "armature"}, ["animation"], "Field required"),
        (target, ["material"], "an armature takes only the animation specialist, not material"),
        (target, ["animation", "modifiers"], "not modifiers (it has no mesh)"),
        ({**target, "type": "MESH"}, ["animation"], "mesh"),  # a mesh needs its mesh
        (
            {**target, "armature": {**RIG, "bones": [{"name": "B", "head": ["0", 0, 0], "tail": [0, 0, 1]}]}},
            ["animation"],
            "bones.0.head.0: Input should be a valid number",
        ),
        ({"name": "Cube", "mesh": CUBE, "transform": {"scale": [1, 1]}}, ["material"], "transform"),
    ]
    for obj_body, specialists, said in refusals:
        response = client.post(
            "/v1/apply", json={"prompt": "walk", "specialists": specialists, "object": obj_body}
        )
        assert response.status_code == 422 and said in json.dumps(response.json()), (said, response.text)
    # A rig whose bone names an unknown parent is beyond the schema: the generation fails saying so.
    orphan = {**RIG, "bones": [{"name": "Arm", "parent": "Nope", "head": [0, 0, 0], "tail": [0, 0, 1]}]}
    broken = generate(
        client, {"prompt": "walk", "specialists": ["animation"], "object": {**target, "armature": orphan}}
    )
    assert broken["status"] == "failed" and "unknown bone 'Nope'" in broken["error"], broken


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"prompt": "a chair\\u0000"}', "prompt"),
        ('{"prompt": "a\\u0007 chair"}', "prompt"),
        ('{"prompt": "a \\ud800 chair"}', "prompt"),  # a lone surrogate
        ('{"prompt": "   "}', "prompt"),
        ('{"prompt": ""}', "prompt"),
        ('{"prompt": "' + "x" * 65 + '"}', "prompt"),  # a word longer than any word
        ('{"prompt": "' + "ab " * 200 + '"}', "prompt"),  # over 500 characters
        ('{"prompt": "chair", "temperature": NaN}', "temperature"),
        ('{"prompt": "chair", "temperature": Infinity}', "temperature"),
        ('{"prompt": "chair", "temperature": false}', "temperature"),
        ('{"prompt": "chair", "temperature": 2.5}', "temperature"),
        ('{"prompt": "chair", "seed": 18446744073709551616}', "seed"),
        ('{"prompt": "chair", "seed": -1}', "seed"),
        ('{"prompt": "chair", "face_budget": 5000}', "face_budget"),
        ('{"prompt": "chair", "face_budget": "12"}', "face_budget"),
        ('{"prompt": "chair", "variations": 9}', "variations"),
        ('{"prompt": "chair", "specialists": ["sculpting"]}', "specialists"),
        ('{"prompt": "chair", "specialists": "geometry"}', "specialists"),
        ('{"prompt": "chair", "colour": "red"}', "colour"),
        ("[1, 2]", "body"),
    ],
)
def test_bad_input_is_refused_before_anything_is_queued(client: TestClient, raw: str, field: str):
    before = generation_count()
    response = client.post("/v1/generations", content=raw, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert field in json.dumps(response.json()["detail"])
    assert generation_count() == before


def test_the_schema_states_the_limits_the_server_enforces(client: TestClient):
    schema = client.get("/openapi.json").json()
    request = schema["components"]["schemas"]["GenerationRequest"]["properties"]
    assert request["face_budget"]["maximum"] == 800 and request["variations"]["maximum"] == 4
    assert request["prompt"]["maxLength"] == 500 and "pattern" in request["prompt"]
    assert request["seed"]["anyOf"][0]["maximum"] == 2**53 - 1
    post = schema["paths"]["/v1/generations"]["post"]["responses"]
    assert {"202", "401", "413", "422", "429", "503"} <= set(post)


def test_nul_in_path_ids_is_a_client_error(client: TestClient):
    assert client.get("/v1/generations/abc%00def").status_code == 422
    assert client.get("/v1/jobs/abc%00def").status_code == 422
    assert client.delete("/v1/generations/abc%00").status_code == 422
    assert client.get("/v1/generations/00000000-0000-0000-0000-000000000000").status_code == 404


def test_non_ascii_api_key_is_a_401(client: TestClient, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BMT_API_KEY", "s3cret")
    get_settings.cache_clear()
    response = client.get("/v1/jobs/job-1", headers={"X-API-Key": "sécret".encode()})
    assert response.status_code == 401


def test_a_chunked_body_over_the_limit_is_refused_before_authentication(tmp_path: Path):
    """The real process on a socket: a chunked body (no Content-Length) without an API key is cut
    off at the limit with 413, while the client is still sending (no end chunk was sent)."""
    env = {
        "BMT_DATA_DIR": str(tmp_path / "var"),
        "BMT_API_KEY": "s3cret",
        "BMT_GATEWAY_MAX_BODY_BYTES": "1000",
    }
    with gateway_process(env) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                b"POST /v1/generations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n"
            )
            for _ in range(3):  # 3 KB, and the body never ends
                sock.sendall(b"400\r\n" + b" " * 1024 + b"\r\n")
            reply = sock.recv(4096)
        assert reply.startswith(b"HTTP/1.1 413"), reply
        length = httpx.post(
            f"{url}/v1/generations", content=b" " * 2000, headers={"content-type": "application/json"}
        )
        assert length.status_code == 413


def test_cancelled_generation_answers_gone(stub_specialists, client: TestClient):
    generation_id = post(client, apply_body("stall here")).json()["id"]
    assert client.delete(f"/v1/generations/{generation_id}").json() == {
        "id": generation_id,
        "status": "cancelled",
    }
    response = client.get(f"/v1/generations/{generation_id}")
    assert response.status_code == 410 and "cancelled" in response.json()["detail"]
    time.sleep(0.5)
    with session_scope() as session:
        row = session.get(Generation, generation_id)
        assert row.status is RunStatus.CANCELLED and row.result_key is None
    assert client.delete("/v1/generations/00000000-0000-0000-0000-000000000000").status_code == 404


def test_a_cancel_between_a_stage_reading_and_writing_the_row_stands(stub_specialists, client: TestClient):
    """The DELETE lands just before the runner writes its first stage (as once under load): the
    hook delays nothing, it only orders the two writers the way the race did."""
    cancelled: list[int] = []
    hooked = threading.Lock()

    def cancel_first(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        writes_running = statement.startswith("UPDATE generations SET status") and "running" in str(
            parameters
        )
        if writes_running and hooked.acquire(blocking=False):  # once; not for the cancel's own UPDATE
            with session_scope() as session:  # the only one: the POST may not have answered yet
                only = session.scalars(select(Generation.id)).one()
            cancelled.append(client.delete(f"/v1/generations/{only}").status_code)

    engine = get_engine()
    event.listen(engine, "before_cursor_execute", cancel_first)
    try:
        generation_id = post(client, apply_body("a stool")).json()["id"]
        deadline = time.monotonic() + 60
        while not cancelled and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
    finally:
        event.remove(engine, "before_cursor_execute", cancel_first)
    assert cancelled == [202]
    with session_scope() as session:
        assert session.get(Generation, generation_id).status is RunStatus.CANCELLED
    assert client.get(f"/v1/generations/{generation_id}").status_code == 410


def test_event_stream_reports_each_stage_and_ends_with_the_scenes(stub_specialists, client: TestClient):
    generation_id = post(client, apply_body("a stool")).json()["id"]
    events = []
    with client.stream("GET", f"/v1/generations/{generation_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    assert events[-1]["status"] == "succeeded" and len(events[-1]["scenes"]) == 1
    # A stage may start and end between two looks at the row (the stand-ins answer in
    # microseconds), so the stream names no stage outside the request and ends with each done.
    assert {event["stage"] for event in events if event["stage"]} <= set(PARTS), events
    assert {name: stage["state"] for name, stage in events[-1]["stages"].items()} == dict.fromkeys(
        PARTS, "done"
    ), events[-1]
    assert [e["progress"] for e in events] == sorted(e["progress"] for e in events)


def test_the_event_stream_reads_the_row_once_and_gets_each_later_state_with_its_write(
    stub_specialists, client: TestClient
):
    """The states this replica writes reach its stream with the write (UPDATE ... RETURNING), so
    nothing is read between the runner's last write and the final event."""
    reads: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ANN001
        if statement.startswith("SELECT") and "FROM generations" in statement:
            reads.append(statement)

    generation_id = post(client, apply_body("a stool")).json()["id"]
    engine = get_engine()
    event.listen(engine, "before_cursor_execute", count)
    try:
        with client.stream("GET", f"/v1/generations/{generation_id}/events") as response:
            events = [
                json.loads(line.removeprefix("data: "))
                for line in response.iter_lines()
                if line.startswith("data: ")
            ]
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert events[-1]["status"] == "succeeded" and len(events[-1]["scenes"]) == 1
    assert len(reads) == 1, reads


def test_a_model_past_its_deadline_fails_that_generation_only(
    stub_specialists, client: TestClient, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BMT_INFERENCE_TIMEOUT_S", "1")  # the stub stalls 3 s on "stall"
    get_settings.cache_clear()
    start = time.monotonic()
    slow = post(client, apply_body("stall")).json()
    quick = generate(client, apply_body("a cup"))
    failed = wait_done(client, slow["id"])
    assert failed["status"] == "failed" and failed["error"] == "material: no answer within 1 s"
    assert failed["stages"]["material"] == {"state": "failed"} and failed["stages"]["modifier"] == {
        "state": "pending"
    }
    assert quick["status"] == "succeeded" and time.monotonic() - start < 3, "the next waited for the stall"


def test_generations_of_a_dead_replica_are_failed_with_the_reason(client: TestClient, monkeypatch):
    """A replica that died leaves its rows open: the next start-up (or any replica's lease round)
    fails them once nobody has touched them for the lease."""
    stale = datetime.now(UTC) - timedelta(seconds=120)
    with session_scope() as session:
        for gid, status in (("dead-running", RunStatus.RUNNING), ("dead-queued", RunStatus.QUEUED)):
            session.add(
                Generation(id=gid, prompt="x", options={}, status=status, created_at=stale, updated_at=stale)
            )
    with TestClient(create_app()):
        pass
    with session_scope() as session:
        for gid in ("dead-running", "dead-queued"):
            row = session.get(Generation, gid)
            assert row.status is RunStatus.FAILED and "no heartbeat for 30 s" in row.error


def test_metrics_and_request_ids(stub_specialists, client: TestClient):
    generate(client, apply_body("a bowl", ["material"]))
    response = client.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert response.headers["x-request-id"] == "abc-123"
    assert len(client.get("/healthz", headers={"X-Request-ID": "bad id\x01"}).headers["x-request-id"]) == 32
    metrics = client.get("/metrics").text
    for name in (
        "bmt_gateway_request_seconds_bucket",
        'bmt_generation_stage_seconds_count{stage="material"}',
        "bmt_generation_queue_depth",
        "bmt_generations_running",
        'bmt_inference_batch_size_count{specialist="material"}',
        "bmt_generation_seconds_count",
    ):
        assert name in metrics


def test_rate_limit_per_key(stub_specialists, geometry_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("BMT_GATEWAY_RATE_PER_MINUTE", "2")
    get_settings.cache_clear()
    ensure_schema()
    with TestClient(create_app()) as client:
        codes = [post(client, apply_body("a box")).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        assert int(post(client, apply_body("a box")).headers["retry-after"]) >= 1
        other = post(client, apply_body("a box"), headers={"X-API-Key": "k2"})
        assert other.status_code == 202  # another key has its own budget (no key is required here)


def test_json_logs_carry_the_request_id(client: TestClient, caplog):
    from services.gateway.operations import JsonFormatter

    with caplog.at_level("INFO", logger="services.gateway.app"):
        client.get("/healthz", headers={"X-Request-ID": "trace-7"})
    record = next(r for r in caplog.records if r.getMessage().startswith("GET /healthz"))
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "INFO" and line["status"] == 200 and "ms" in line
    assert line["request_id"] == "trace-7" and line["message"] == "GET /healthz 200"


def test_a_method_a_path_lacks_is_405_naming_every_method_it_has(client: TestClient):
    path = "/v1/generations/00000000-0000-0000-0000-000000000000"
    response = client.request("OPTIONS", path)
    assert response.status_code == 405 and response.headers["allow"] == "DELETE, GET"
    assert client.put("/v1/generations").headers["allow"] == "POST"
