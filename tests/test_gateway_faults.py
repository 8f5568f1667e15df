"""The gateway when what it depends on goes away, and when it is itself stopped: a real S3 server
(moto) stopped and started again, a real gateway process stopped with SIGTERM. (Triton going away
and coming back is in tests/test_serving.py, beside the Triton it starts.)"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from services.gateway.app import create_app
from shared.blobs import open_blob_store
from shared.db import ensure_schema, session_scope
from shared.db.models import Generation, RunStatus
from shared.settings import get_settings
from tests.conftest import REPO
from tests.test_gateway_generations import apply_body, generate, post_until, stub_specialists  # noqa: F401
from tools.servers import free_port


@pytest.mark.usefixtures("stub_specialists")
def test_blob_store_down_and_back(geometry_checkpoint: Path, monkeypatch: pytest.MonkeyPatch):
    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    s3.start()
    url = f"s3://k:s@127.0.0.1:{port}/gateway"
    monkeypatch.setenv("BMT_BLOB_URL", url)
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(geometry_checkpoint))
    get_settings.cache_clear()
    ensure_schema()
    try:
        with TestClient(create_app()) as gateway:
            done = generate(gateway, apply_body("red metal", ["material"]))
            assert done["status"] == "succeeded"

            s3.stop()
            start = time.monotonic()
            refused = post_until(gateway, apply_body("blue metal", ["material"]), 503, within_s=1.5)
            assert refused.headers["retry-after"] == "1"
            assert "blobs" in refused.json()["detail"]
            ready = gateway.get("/readyz")
            assert ready.status_code == 503 and list(ready.json()["detail"]) == ["blobs"]
            assert time.monotonic() - start < 2.5, "readiness must answer within a second"
            # The replica that made it still answers from memory; another one says 503, not 500.
            assert gateway.get(f"/v1/generations/{done['id']}").json()["scenes"] == done["scenes"]
            with TestClient(create_app()) as other:
                other.get("/readyz")  # its first probe has run, as in a replica that has served a while
                start = time.monotonic()
                unreadable = other.get(f"/v1/generations/{done['id']}")
                assert unreadable.status_code == 503 and "blob store" in unreadable.json()["detail"]
                assert time.monotonic() - start < 1.5, "a store known to be down is said at once"
                assert unreadable.headers["retry-after"] == "1"

            s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
            s3.start()
            open_blob_store(url, 1 << 20)  # makes the bucket where missing (moto keeps it in this process)
            post_until(gateway, apply_body("green metal", ["material"]), 202, within_s=1.5)
            assert gateway.get("/readyz").status_code == 200
    finally:
        s3.stop()


def test_generations_left_by_a_stopped_gateway_end_with_a_reason(tmp_path: Path):
    """SIGTERM while generations run and wait: the process waits a moment for the running ones,
    then records the rest as failed with the reason, so none stays queued or running."""
    env = {
        "BMT_DATA_DIR": str(tmp_path / "var"),
        "BMT_GENERATION_CONCURRENCY": "1",
        "BMT_LOG_LEVEL": "WARNING",
    }
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=REPO,
        env={**os.environ, **env, "BMT_GATEWAY_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and process.poll() is None, "the gateway did not start"
                time.sleep(0.2)
        body = {"prompt": "a tall tower", "face_budget": 800, "variations": 4}
        ids = [httpx.post(f"{url}/v1/generations", json=body).json()["id"] for _ in range(3)]
        time.sleep(1)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # uvicorn re-raises it once stopped
    finally:
        if process.poll() is None:
            process.kill()
    with session_scope(f"sqlite:///{tmp_path / 'var' / 'metadata.sqlite3'}") as session:
        rows = [session.get(Generation, gid) for gid in ids]
        assert all(row.status in (RunStatus.SUCCEEDED, RunStatus.FAILED) for row in rows), [
            r.status for r in rows
        ]
        failed = [row for row in rows if row.status is RunStatus.FAILED]
        assert failed and all(
            "the gateway stopped before this generation finished" in r.error for r in failed
        )
