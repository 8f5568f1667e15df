"""shared.inference on its own: the registry of the four specialists, in-process; and the bounded
text-embedding cache the geometry generator (in the gateway or in Triton) reads prompts through."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shared.inference import Inference, InvalidRequest, ModelUnavailable, SpecialistMissing
from tests.specialist_stubs import STUBS, write_stub_checkpoints


def test_registry_says_which_specialists_are_there_and_why_not(
    geometry_checkpoint: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import shared.inference

    real = shared.inference.generator_class
    monkeypatch.setattr(shared.inference, "generator_class", lambda name: STUBS.get(name) or real(name))
    stubs = write_stub_checkpoints(tmp_path)
    checkpoints = {"geometry": geometry_checkpoint, "material": stubs["material"]}
    checkpoints |= {"modifier": tmp_path / "none.pt", "animation": tmp_path / "none.pt"}
    inference = Inference("local", checkpoints)
    assert inference.available() == {
        "geometry": None,
        "material": None,
        "modifier": f"no modifier checkpoint at {tmp_path / 'none.pt'}",
        "animation": f"no animation checkpoint at {tmp_path / 'none.pt'}",
    }
    mesh = {"vertices": [[0, 0, 0], [1, 0, 0], [0, 1, 0]], "faces": [[0, 1, 2]]}
    (result,) = inference.run_many("material", [{"prompt": "red", "seed": 1, "mesh": mesh}], 30)
    assert result["material"]["pbr"]["roughness"] == 0.4
    with pytest.raises(InvalidRequest, match="material: request 0: the prompt is empty"):
        inference.run_many("material", [{"prompt": " ", "seed": 1, "mesh": mesh}], 30)
    with pytest.raises(SpecialistMissing, match="no modifier checkpoint"):
        inference.run_many("modifier", [{"prompt": "x", "mesh": mesh}], 30)
    with pytest.raises(ModelUnavailable, match="material: no answer within 0.5 s"):
        inference.run_many("material", [{"prompt": "stall", "seed": 1, "mesh": mesh}], 0.5)
    with pytest.raises(ValueError, match="unsupported inference URL"):
        Inference("http://triton:8000", checkpoints)


def test_a_triton_client_reconnects_at_once_after_a_long_outage():
    """After Triton was down for a while, the next probe reaches it as soon as it is back. gRPC shares
    one connection per address among channels and backs its reconnects off (1, 1.6, 2.6, 4.1 s...),
    so a fresh client kept waiting seconds (2 to 9, measured) while the old ones were still alive.
    A stand-in Triton: the outage's timing is the case, and any gRPC server on the port gives it;
    a real Triton takes tens of seconds to start, which is the wait this test shortens."""
    from concurrent import futures

    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc

    from shared.inference import TritonSpecialist

    class Repository(service_pb2_grpc.GRPCInferenceServiceServicer):
        def RepositoryIndex(self, request, context):  # noqa: N802 (the gRPC method's name)
            return service_pb2.RepositoryIndexResponse(
                models=[service_pb2.RepositoryIndexResponse.ModelIndex(name="geometry", state="READY")]
            )

    def serve(port: int) -> tuple[grpc.Server, int]:
        server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Repository(), server)
        port = server.add_insecure_port(f"127.0.0.1:{port}")
        server.start()
        return server, port

    server, port = serve(0)
    triton = TritonSpecialist("geometry", f"127.0.0.1:{port}")
    assert triton.ready_models() == {"geometry"}
    server.stop(None)
    failures = []  # kept, as the gateway's health futures keep theirs (and with them the clients)
    down_until = time.monotonic() + 10
    while time.monotonic() < down_until:
        with pytest.raises(ModelUnavailable) as failed:
            triton.ready_models()
        failures.append(failed.value)
        time.sleep(0.25)
    server, _ = serve(port)
    try:
        back = time.monotonic()
        while True:
            try:
                assert triton.ready_models() == {"geometry"}
                break
            except ModelUnavailable:
                assert time.monotonic() - back < 1.0, "Triton is back, the client still cannot reach it"
                time.sleep(0.05)
    finally:
        server.stop(None)
