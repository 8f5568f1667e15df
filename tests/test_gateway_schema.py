"""schemathesis over every operation of the gateway's OpenAPI schema (all checks, stateful phase
included, a minute of generation): no 5xx, no undocumented status or body, nothing the schema
allows refused, nothing it forbids accepted.

The gateway runs as a real uvicorn server on loopback in this process, so that material, modifier
and animation can be served by the test-only generators (tests/specialist_stubs.py says why): with
a specialist missing, schema-valid requests naming it are refused (422), as they must be.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.gateway.app import create_app
from shared.db import ensure_schema
from shared.settings import get_settings
from tests.test_gateway_generations import stub_specialists  # noqa: F401  (a fixture used below)
from tools.servers import free_port


@pytest.mark.usefixtures("stub_specialists")
def test_schemathesis_finds_nothing(
    geometry_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("BMT_GEOMETRY_CHECKPOINT", str(geometry_checkpoint))
    monkeypatch.setenv("BMT_GENERATION_MAX_FACE_BUDGET", "8")  # generations stay cheap on 2 cores
    monkeypatch.setenv("BMT_GENERATION_MAX_VARIATIONS", "2")
    get_settings.cache_clear()
    ensure_schema()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline and thread.is_alive(), "the gateway did not start"
            time.sleep(0.1)
        assert httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200
        run = subprocess.run(
            [
                str(Path(sys.executable).parent / "schemathesis"),
                "run",
                f"http://127.0.0.1:{port}/openapi.json",
                "--checks",
                "all",
                "--max-time",
                "60",
                "--seed",
                "1",
                "--request-timeout",
                "30",
                "--no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            cwd=tmp_path,  # its cache folder (.schemathesis) goes there, not into the repository
        )
        assert run.returncode == 0, run.stdout[-8000:] + run.stderr[-2000:]
        assert "Tested: 8" in run.stdout, run.stdout[-3000:]
    finally:
        server.should_exit = True
        thread.join(timeout=60)
