"""How the gateway reaches the models: in-process torch (embedded) or Triton over gRPC (production).

The gateway itself never imports torch: the local backend imports the serving code on first use.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Protocol

import numpy as np


class ModelUnavailable(RuntimeError):
    """The model cannot be reached or loaded; the request can be retried later."""


class GeometryBackend(Protocol):
    def generate_mesh(self, prompt: str, face_budget: int, seed: int, temperature: float) -> dict: ...


class LocalGeometry:
    def __init__(self, checkpoint: Path):
        if not Path(checkpoint).is_file():
            raise ModelUnavailable(
                f"no geometry checkpoint at {checkpoint} (train one or set BMT_GEOMETRY_CHECKPOINT)"
            )
        from shared.ml.geometry_generator import GeometryGenerator

        self.generator = GeometryGenerator(checkpoint)

    def generate_mesh(self, prompt: str, face_budget: int, seed: int, temperature: float) -> dict:
        return self.generator.generate(prompt, face_budget=face_budget, seed=seed, temperature=temperature)


class TritonGeometry:
    def __init__(self, url: str, timeout_s: float = 120.0):
        import tritonclient.grpc as grpcclient

        self.client = grpcclient.InferenceServerClient(url)
        self.timeout_s = timeout_s

    def generate_mesh(self, prompt: str, face_budget: int, seed: int, temperature: float) -> dict:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import InferenceServerException

        values = {
            "PROMPT": ("BYTES", np.array([prompt.encode()], dtype=np.object_)),
            "FACE_BUDGET": ("INT32", np.array([face_budget], dtype=np.int32)),
            "SEED": ("INT64", np.array([seed], dtype=np.int64)),
            "TEMPERATURE": ("FP32", np.array([temperature], dtype=np.float32)),
        }
        inputs = []
        for name, (dtype, value) in values.items():
            tensor = grpcclient.InferInput(name, [1, 1], dtype)  # a batch of one request
            tensor.set_data_from_numpy(value.reshape(1, 1))
            inputs.append(tensor)
        try:
            result = self.client.infer("geometry", inputs, client_timeout=self.timeout_s)
        except InferenceServerException as exc:
            raise ModelUnavailable(f"Triton: {exc.message()}") from exc
        return json.loads(result.as_numpy("MESH_JSON").reshape(-1)[0])


@lru_cache(maxsize=4)
def geometry_backend(inference_url: str, checkpoint: Path) -> GeometryBackend:
    if inference_url == "local":
        return LocalGeometry(checkpoint)
    if inference_url.startswith("grpc://"):
        return TritonGeometry(inference_url.removeprefix("grpc://"))
    raise ValueError(f"unsupported inference URL {inference_url!r} (use local or grpc://host:port)")
