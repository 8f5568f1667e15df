"""The gateway as a real process on loopback, plus its routes through FastAPI's test client."""

from __future__ import annotations

import httpx
import pytest
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from shared.db import ensure_schema, session_scope
from shared.db.models import Job, JobState
from tools.servers import gateway_process


def test_gateway_process_serves_health_and_readiness(tmp_path):
    with gateway_process({"BMT_DATA_DIR": str(tmp_path / "var")}) as url:
        ready = httpx.get(f"{url}/readyz").json()
        assert ready["status"] == "ready" and ready["specialists"]["geometry"] is None
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}


def test_readiness_names_the_part_that_is_down(monkeypatch):
    monkeypatch.setenv("BMT_DATABASE_URL", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    from shared.settings import get_settings

    get_settings.cache_clear()
    response = TestClient(create_app()).get("/readyz")
    assert response.status_code == 503
    assert "database" in response.json()["detail"] and "blobs" not in response.json()["detail"]


@pytest.fixture
def client():
    ensure_schema()
    with session_scope() as session:
        session.add(
            Job(id="job-1", kind="extract.asset", state=JobState.RUNNING, progress=0.25, message="opening")
        )
    return TestClient(create_app())


def test_job_status(client):
    body = client.get("/v1/jobs/job-1").json()
    assert (body["state"], body["progress"], body["message"]) == ("running", 0.25, "opening")
    assert client.get("/v1/jobs/nope").status_code == 404


def test_api_key_is_enforced_when_set(client, monkeypatch):
    from shared.settings import get_settings

    monkeypatch.setenv("BMT_API_KEY", "s3cret")
    get_settings.cache_clear()
    assert client.get("/v1/jobs/job-1").status_code == 401
    assert client.get("/v1/jobs/job-1", headers={"X-API-Key": "wrong"}).status_code == 401
    assert client.get("/v1/jobs/job-1", headers={"X-API-Key": "s3cret"}).status_code == 200
