"""The generation API the add-on calls, on the embedded default (in-process model)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from shared.db import ensure_schema
from shared.scene import Limits, parse_scene
from shared.settings import get_settings


def generate(client: TestClient, body: dict, timeout: float = 120) -> dict:
    response = client.post("/v1/generations", json=body)
    assert response.status_code == 202, response.text
    generation_id = response.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(f"/v1/generations/{generation_id}").json()
        if state["status"] in ("succeeded", "failed", "cancelled"):
            return state
        time.sleep(0.1)
    raise AssertionError(f"generation {generation_id} still {state['status']} after {timeout}s")


@pytest.fixture
def client(geometry_checkpoint: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(geometry_checkpoint))
    get_settings.cache_clear()
    ensure_schema()
    return TestClient(create_app())


def test_generation_returns_valid_scenes(client: TestClient):
    body = generate(
        client,
        {
            "prompt": "a wooden chair",
            "face_budget": 24,
            "seed": 5,
            "variations": 2,
            "specialists": ["geometry", "materials"],
        },
    )
    assert body["status"] == "succeeded" and body["progress"] == 1.0 and body["error"] is None
    assert len(body["scenes"]) == 2
    for index, document in enumerate(body["scenes"]):
        scene = parse_scene(document, Limits())
        (obj,) = scene.objects
        assert obj.name == "A_Wooden_Chair" and 1 <= len(obj.mesh.faces) <= 24
        assert obj.transform.location[0] == pytest.approx(index * 2.5)
        assert scene.warnings == ["the materials specialist is not available yet; skipped"]
    assert body["scenes"][0]["objects"][0]["mesh"] != body["scenes"][1]["objects"][0]["mesh"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        ({"prompt": "x" * 501}, 413, "prompt longer than 500 characters"),
        ({"prompt": "chair", "face_budget": 5000}, 422, "face_budget above the maximum of 800"),
        ({"prompt": "chair", "variations": 9}, 422, "variations above the maximum of 4"),
        ({"prompt": ""}, 422, "at least 1 character"),
        ({"prompt": "chair", "specialists": ["sculpting"]}, 422, "geometry"),
        ({"prompt": "chair", "face_budget": 0}, 422, "greater than or equal to 1"),
    ],
)
def test_bad_requests_are_refused_with_a_reason(client: TestClient, body: dict, status: int, detail: str):
    response = client.post("/v1/generations", json=body)
    assert response.status_code == status
    assert detail in str(response.json()["detail"])


def test_oversized_body_is_refused_before_parsing(client: TestClient):
    response = client.post(
        "/v1/generations", content=b"{" + b" " * 70_000 + b"}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 413


def test_cancel_stops_a_generation(client: TestClient):
    generation_id = client.post(
        "/v1/generations", json={"prompt": "a tall tower", "face_budget": 200, "variations": 4}
    ).json()["id"]
    assert client.delete(f"/v1/generations/{generation_id}").json() == {
        "id": generation_id,
        "status": "cancelled",
    }
    time.sleep(1)
    body = client.get(f"/v1/generations/{generation_id}").json()
    assert body["status"] == "cancelled" and body["scenes"] == []
    assert client.delete("/v1/generations/nope").status_code == 404
    assert client.get("/v1/generations/nope").status_code == 404


def test_missing_model_fails_the_request_clearly(
    client: TestClient, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(tmp_path / "absent.pt"))
    get_settings.cache_clear()
    body = generate(client, {"prompt": "a chair"})
    assert body["status"] == "failed" and "no geometry checkpoint at" in body["error"]
