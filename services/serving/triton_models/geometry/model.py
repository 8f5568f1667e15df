"""Triton python-backend model: PROMPT, FACE_BUDGET, SEED, TEMPERATURE -> MESH_JSON.

Copied into the model repository by services.serving.triton; the repository's config.pbtxt names
the checkpoint and this project's root, so the same GeometryGenerator runs here and in-process.
Triton's dynamic batcher hands over the requests that queued meanwhile; they are decoded side by
side (GeometryGenerator.generate_many).
"""

import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters", {})
        params = {key: value["string_value"] for key, value in parameters.items()}
        sys.path.insert(0, params["project_root"])
        from shared.ml.geometry_generator import GeometryGenerator, MeshRequest

        self.generator = GeometryGenerator(params["checkpoint"])
        self.request_type = MeshRequest

    def execute(self, requests):
        parsed = []  # a MeshRequest, or the error that one bad request gets alone
        for request in requests:
            try:
                parsed.append(
                    self.request_type(
                        _scalar(request, "PROMPT").decode("utf-8"),
                        face_budget=int(_scalar(request, "FACE_BUDGET")),
                        seed=int(_scalar(request, "SEED")),
                        temperature=float(_scalar(request, "TEMPERATURE")),
                    )
                )
            except Exception as exc:
                parsed.append(exc)
        valid = [p for p in parsed if not isinstance(p, Exception)]
        try:
            meshes = iter(self.generator.generate_many(valid))
        except Exception as exc:  # the model failed: every request of this batch is told
            parsed = [p if isinstance(p, Exception) else exc for p in parsed]
        responses = []
        for item in parsed:
            if isinstance(item, Exception):
                error = pb_utils.TritonError(f"{type(item).__name__}: {item}")
                responses.append(pb_utils.InferenceResponse(error=error))
            else:
                mesh = json.dumps(next(meshes)).encode()
                output = pb_utils.Tensor("MESH_JSON", np.array([[mesh]], dtype=np.object_))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
        return responses


def _scalar(request, name):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]
