"""Serving the geometry model: in-process, and through a real Triton server (the binary bundled
with nvidia-pytriton, python backend, CPU) called over gRPC."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
from fastapi.testclient import TestClient
from tritonclient.utils import InferenceServerException

from services.gateway.app import create_app
from services.serving.triton import GEOMETRY_MODEL, start_triton, write_model_repository
from shared.db import ensure_schema
from shared.ml.geometry_generator import GeometryGenerator, MeshRequest
from shared.settings import get_settings
from tests.test_gateway_generations import generate
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


def infer(client: grpcclient.InferenceServerClient, prompt: str, face_budget: int, seed: int) -> dict:
    inputs = []
    for name, dtype, value in (
        ("PROMPT", "BYTES", np.array([prompt.encode()], dtype=np.object_)),
        ("FACE_BUDGET", "INT32", np.array([face_budget], dtype=np.int32)),
        ("SEED", "INT64", np.array([seed], dtype=np.int64)),
        ("TEMPERATURE", "FP32", np.array([0.8], dtype=np.float32)),
    ):
        tensor = grpcclient.InferInput(name, [1, 1], dtype)
        tensor.set_data_from_numpy(value.reshape(1, 1))
        inputs.append(tensor)
    result = client.infer(GEOMETRY_MODEL, inputs)
    return json.loads(result.as_numpy("MESH_JSON").reshape(-1)[0])


def test_triton_serves_the_geometry_model_over_grpc(checkpoint: Path, tmp_path: Path, monkeypatch):
    repository = write_model_repository(tmp_path / "models", checkpoint)
    server = start_triton(
        repository,
        tmp_path,
        [GEOMETRY_MODEL],
        free_port(),
        free_port(),
        free_port(),
        log_file=tmp_path / "triton.log",
    )
    try:
        server.wait_ready(GEOMETRY_MODEL, timeout=180)
        client = grpcclient.InferenceServerClient(server.grpc_url)
        mesh = infer(client, "a small table", face_budget=16, seed=3)
        check_mesh(mesh, 16)
        local = GeometryGenerator(checkpoint, device="cpu").generate("a small table", face_budget=16, seed=3)
        assert mesh["faces"] == local["faces"], "Triton and in-process generation must agree for a seed"
        with pytest.raises(InferenceServerException, match="prompt is empty"):
            infer(client, "", face_budget=16, seed=1)
        check_mesh(infer(client, "a lamp", face_budget=8, seed=4), 8)  # the model survives a bad request
        # Requests that queue while the model is busy are decoded together (dynamic batching).
        with ThreadPoolExecutor(4) as pool:
            prompts = ["a lamp", "a chair", "a box", "a stool"]
            meshes = list(pool.map(lambda k: infer(client, prompts[k], face_budget=16, seed=k), range(4)))
        assert max(mesh["batch"] for mesh in meshes) > 1
        for mesh in meshes:
            check_mesh(mesh, 16)

        monkeypatch.setenv("BMT_INFERENCE_URL", f"grpc://{server.grpc_url}")
        get_settings.cache_clear()
        ensure_schema()
        gateway = TestClient(create_app())
        body = generate(gateway, {"prompt": "a small table", "face_budget": 16, "seed": 3})
        assert body["status"] == "succeeded", body
        assert body["scenes"][0]["objects"][0]["mesh"]["faces"] == local["faces"]
    finally:
        server.stop()
    assert server.process.returncode is not None
    # Triton went away: the gateway reports it per request and keeps serving.
    body = generate(gateway, {"prompt": "a small table", "face_budget": 16, "seed": 3})
    assert body["status"] == "failed" and "Triton" in body["error"]
    assert gateway.get("/healthz").status_code == 200


def test_serving_command_runs_triton_and_stops_cleanly_on_sigterm(checkpoint: Path, tmp_path: Path):
    """`python -m services.serving` as a container runs it: ready, then SIGTERM shuts Triton down."""
    import signal
    import subprocess
    import sys

    from services.serving.triton import TritonServer
    from tests.conftest import REPO

    ports = [free_port() for _ in range(3)]
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "services.serving",
            "--checkpoint",
            str(checkpoint),
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
        TritonServer(process, ports[1], ports[0], ports[2]).wait_ready(GEOMETRY_MODEL, timeout=180)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
