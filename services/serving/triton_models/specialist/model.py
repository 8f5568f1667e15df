"""Triton python-backend model serving any specialist's ``run_many`` over JSON:
REQUEST_JSON (BYTES, one request dict per row) -> RESULT_JSON (BYTES, one result dict per row).

Copied into the model repository once per specialist by services.serving.triton; its config.pbtxt
names the generator class (module:Class), its checkpoint and this project's root, so the same generator class runs
here and in-process (shared.inference). Triton's dynamic batcher hands over the requests that
queued meanwhile; all their rows go to one ``run_many`` call, decoded side by side. A request the
generator refuses (ValueError) gets its error alone: the batch is then run request by request.
"""

import importlib
import json
import sys

import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        parameters = json.loads(args["model_config"]).get("parameters", {})
        params = {key: value["string_value"] for key, value in parameters.items()}
        sys.path.insert(0, params["project_root"])
        module, _, cls = params["generator"].partition(":")
        self.generator = getattr(importlib.import_module(module), cls)(params["checkpoint"])

    def execute(self, requests):
        parsed = []  # per Triton request: its list of request dicts, or the error it gets alone
        for request in requests:
            try:
                rows = pb_utils.get_input_tensor_by_name(request, "REQUEST_JSON").as_numpy().reshape(-1)
                items = [json.loads(row) for row in rows]
                if not all(isinstance(item, dict) for item in items):
                    raise ValueError("each REQUEST_JSON row must be a JSON object")
                parsed.append(items)
            except ValueError as exc:  # json.JSONDecodeError and UnicodeDecodeError included
                parsed.append(ValueError(f"bad REQUEST_JSON: {exc}"))
        valid = [p for p in parsed if not isinstance(p, Exception)]
        try:
            flat = self.generator.run_many([item for items in valid for item in items])
            results = iter(flat)
            outcomes = [p if isinstance(p, Exception) else [next(results) for _ in p] for p in parsed]
        except ValueError:  # some request is bad: find it by running each alone
            outcomes = [p if isinstance(p, Exception) else self._run_alone(p) for p in parsed]
        except Exception as exc:  # the model failed: every request of this batch is told
            outcomes = [p if isinstance(p, Exception) else exc for p in parsed]
        return [_response(outcome) for outcome in outcomes]

    def _run_alone(self, items):
        try:
            return self.generator.run_many(items)
        except Exception as exc:
            return exc


def _response(outcome):
    if isinstance(outcome, Exception):
        return pb_utils.InferenceResponse(error=pb_utils.TritonError(f"{type(outcome).__name__}: {outcome}"))
    rows = np.array([[json.dumps(result).encode()] for result in outcome], dtype=np.object_)
    return pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("RESULT_JSON", rows)])
