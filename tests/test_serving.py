"""Serving the specialists: in-process, and through a real Triton server (the binary bundled with
nvidia-pytriton, python backend, CPU) called over gRPC, the generic JSON model for every one."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from fastapi.testclient import TestClient

from services.gateway.app import create_app
from services.serving.triton import TritonServer, start_triton, write_model_repository
from shared.db import ensure_schema
from shared.inference import InvalidRequest, TritonSpecialist
from shared.ml.geometry_generator import GeometryGenerator, MeshRequest
from shared.settings import get_settings
from tests.specialist_stubs import write_stub_checkpoints
from tests.test_gateway_generations import post_until, wait_done
from tools.servers import free_port


@pytest.fixture
def checkpoint(geometry_checkpoint: Path) -> Path:
    return geometry_checkpoint


def check_mesh(mesh: dict, face_budget: int) -> None:
    assert 1 <= len(mesh["faces"]) <= face_budget
    vertices = np.asarray(mesh["vertices"])
    assert vertices.shape[1] == 3 and np.isfinite(vertices).all() and np.abs(vertices).max() <= 1.0 + 1e-6
    for face in mesh["faces"]:
        assert len(face) >= 3 and len(set(face)) == len(face) and max(face) < len(vertices)


def test_in_process_generation_is_valid_and_seeded(checkpoint: Path):
    generator = GeometryGenerator(checkpoint, device="cpu")
    first = generator.generate("a wooden chair", face_budget=20, seed=7)
    check_mesh(first, 20)
    again = generator.generate("a wooden chair", face_budget=20, seed=7)
    assert (again["vertices"], again["faces"]) == (first["vertices"], first["faces"])
    with pytest.raises(ValueError, match="prompt is empty"):
        generator.generate("   ")


def test_requests_decoded_together_get_the_meshes_they_get_alone(checkpoint: Path):
    generator = GeometryGenerator(checkpoint, device="cpu")
    # fp32 weights: one row's fp16 product and several rows' round apart now and then, where they
    # do depending on the CPU, and that can tip a draw (shared.ml.geometry_model.Linear).
    generator.model.use_half_precision(False)
    requests = [
        MeshRequest("a lamp", face_budget=24, seed=1),
        MeshRequest("a chair", face_budget=24, seed=2),
        MeshRequest("a box", face_budget=24, seed=3, temperature=1.0),  # other settings: its own batch
        MeshRequest("a stool", face_budget=24, seed=4),
    ]
    together = generator.generate_many(requests)
    assert [m["batch"] for m in together] == [3, 3, 1, 3]
    for request, mesh in zip(requests, together, strict=True):
        check_mesh(mesh, 24)
        alone = generator.generate(request.prompt, request.face_budget, request.seed, request.temperature)
        assert (mesh["vertices"], mesh["faces"]) == (alone["vertices"], alone["faces"])
    with pytest.raises(ValueError, match="face_budget"):
        MeshRequest("a lamp", face_budget=0)


def test_run_many_is_the_specialists_interface(checkpoint: Path):
    generator = GeometryGenerator(checkpoint, device="cpu")
    (mesh,) = generator.run_many([{"prompt": "a lamp", "face_budget": 8, "seed": 2}])
    check_mesh(mesh, 8)
    for bad, reason in (({"prompt": " "}, "prompt is empty"), ({"prompt": "a", "colour": 1}, "colour")):
        with pytest.raises(ValueError, match=reason):
            generator.run_many([{"prompt": "a lamp"}, bad])


def batch_sizes(client: grpcclient.InferenceServerClient, model: str) -> dict[int, int]:
    """Triton's own statistics: how many executions ran with each batch size."""
    stats = client.get_inference_statistics(model, as_json=True)["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def test_triton_serves_every_specialist_and_the_gateway_reaches_it(
    checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """geometry (the real model) and material (the test-only generator: the real one lands from
    another branch) through the generic JSON model; modifier has no checkpoint, so it is not
    served and the gateway refuses it with the reason."""
    stubs = write_stub_checkpoints(tmp_path / "stubs")
    checkpoints = {"geometry": checkpoint, "material": stubs["material"], "modifier": tmp_path / "absent.pt"}
    models = write_model_repository(
        tmp_path / "models", checkpoints, generators={"material": "tests.specialist_stubs:MaterialGenerator"}
    )
    assert models == ["geometry", "material"]
    ports = [free_port() for _ in range(3)]

    def start() -> TritonServer:
        server = start_triton(tmp_path / "models", tmp_path, models, *ports, log_file=tmp_path / "triton.log")
        for model in models:
            server.wait_ready(model, timeout=180)
        return server

    server = start()
    try:
        triton = TritonSpecialist("geometry", server.grpc_url)
        (mesh,) = triton.run_many([{"prompt": "a small table", "face_budget": 8, "seed": 3}], 120)
        check_mesh(mesh, 8)
        local = GeometryGenerator(checkpoint, device="cpu").generate("a small table", face_budget=8, seed=3)
        assert mesh["faces"] == local["faces"], "Triton and in-process generation must agree for a seed"
        with pytest.raises(InvalidRequest, match="prompt is empty"):
            triton.run_many([{"prompt": ""}], 60)
        check_mesh(triton.run_many([{"prompt": "a lamp", "face_budget": 8, "seed": 4}], 120)[0], 8)

        monkeypatch.setenv("BMT_INFERENCE_URL", f"grpc://{server.grpc_url}")
        monkeypatch.setenv("BMT_INFERENCE_TIMEOUT_S", "600")  # a 2-core machine shared with other runs
        get_settings.cache_clear()
        ensure_schema()
        with TestClient(create_app()) as gateway:
            refused = gateway.post(
                "/v1/generations", json={"prompt": "a chair", "specialists": ["geometry", "modifier"]}
            )
            assert (
                refused.status_code == 422
                and "does not serve modifier" in refused.json()["detail"]["modifier"]
            )
            # Concurrent generations run side by side in the gateway, so Triton decodes them together.
            before = batch_sizes(triton.client(), "geometry")
            body = {"face_budget": 8, "specialists": ["geometry", "material"]}
            ids = [
                gateway.post("/v1/generations", json={**body, "prompt": f"a chair {k}", "seed": k}).json()[
                    "id"
                ]
                for k in range(4)
            ]
            done = [wait_done(gateway, gid, timeout=300) for gid in ids]
            assert all(d["status"] == "succeeded" for d in done), done
            assert all(d["scenes"][0]["materials"][0]["name"] == "Generated" for d in done)
            after = batch_sizes(triton.client(), "geometry")
            assert any(size > 1 and after[size] > before.get(size, 0) for size in after), after

            server.stop()  # Triton goes away: new generations get 503 within a second, readiness names it
            start_s = time.monotonic()
            down = post_until(gateway, {**body, "prompt": "a chair"}, 503, within_s=1.5)
            assert down.headers["retry-after"] == "1"
            assert "inference" in down.json()["detail"]
            ready = gateway.get("/readyz")
            assert ready.status_code == 503 and "Triton" in ready.json()["detail"]["inference"]
            assert time.monotonic() - start_s < 3
            assert gateway.get(f"/v1/generations/{ids[0]}").json()["status"] == "succeeded"  # still readable

            server = start()  # back on the same ports: the gateway recovers without a restart
            post_until(gateway, {**body, "prompt": "a lamp"}, 202, within_s=1.5)
    finally:
        server.stop()


def test_serving_command_runs_triton_and_stops_cleanly_on_sigterm(checkpoint: Path, tmp_path: Path):
    """`python -m services.serving` as a container runs it: ready, then SIGTERM shuts Triton down."""
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    ports = [free_port() for _ in range(3)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.serving",
            "--checkpoint",
            f"geometry={checkpoint}",
            "--grpc-port",
            str(ports[0]),
            "--http-port",
            str(ports[1]),
            "--metrics-port",
            str(ports[2]),
        ],
        cwd=REPO,
        env={**os.environ, "BMT_DATA_DIR": str(tmp_path / "var")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        TritonServer(process, ports[1], ports[0], ports[2]).wait_ready("geometry", timeout=180)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
