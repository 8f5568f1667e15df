"""Triton python-backend model: PROMPT, FACE_BUDGET, SEED, TEMPERATURE -> MESH_JSON.

Copied into the model repository by services.serving.triton; the repository's config.pbtxt names
the checkpoint and this project's root, so the same GeometryGenerator runs here and in-process.
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
        from services.serving.geometry import GeometryGenerator

        self.generator = GeometryGenerator(params["checkpoint"])

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                prompt = _scalar(request, "PROMPT").decode("utf-8")
                mesh = self.generator.generate(
                    prompt,
                    face_budget=int(_scalar(request, "FACE_BUDGET")),
                    seed=int(_scalar(request, "SEED")),
                    temperature=float(_scalar(request, "TEMPERATURE")),
                )
                output = pb_utils.Tensor("MESH_JSON", np.array([json.dumps(mesh).encode()], dtype=np.object_))
                responses.append(pb_utils.InferenceResponse(output_tensors=[output]))
            except Exception as exc:  # one bad request must not take the others down
                responses.append(
                    pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(exc).__name__}: {exc}"))
                )
        return responses


def _scalar(request, name):
    return pb_utils.get_input_tensor_by_name(request, name).as_numpy().reshape(-1)[0]
