"""Test-only generators for the material, modifier and animation specialists.

Why a stand-in where the real models exist (tests/test_complete_scene.py runs those through the
real gateway): these answer in microseconds with a known result, and can stall on demand (a prompt
naming "stall"), which the gateway's deadline, batching and fault tests need and a real model does
not do when asked. They follow the real interface (``NAMEGenerator(checkpoint, device=None)``,
``run_many(list[dict]) -> list[dict]``, ValueError for a bad request, results in the scene format)
and read the requests the gateway sends each specialist (services.gateway.generations.part_request).
Each reads its "checkpoint" (a small JSON file) so a missing one behaves like a missing model.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path


class StubGenerator:
    def __init__(self, checkpoint: str | Path, device: str | None = None):
        self.settings = json.loads(Path(checkpoint).read_text())
        self.calls: list[int] = []  # requests per run_many call
        self._lock = threading.Lock()

    def run_many(self, requests: list[dict]) -> list[dict]:
        for index, request in enumerate(requests):
            if not isinstance(request.get("prompt"), str) or not request["prompt"].strip():
                raise ValueError(f"request {index}: the prompt is empty")
            self.check(index, request)
        if any("stall" in request["prompt"] for request in requests):
            time.sleep(self.settings.get("stall_s", 0))  # a model that takes too long
        with self._lock:
            self.calls.append(len(requests))
        return [self.result(request, len(requests)) for request in requests]

    def check(self, index: int, request: dict) -> None:
        """Refuses what the real generator would refuse for lack of its object context."""

    def result(self, request: dict, batch: int) -> dict:
        raise NotImplementedError


class MaterialGenerator(StubGenerator):
    def result(self, request: dict, batch: int) -> dict:
        shade = (request["seed"] % 10) / 10
        pbr = {"base_color": [shade, 0.3, 0.2, 1.0], "roughness": self.settings.get("roughness", 0.5)}
        return {"material": {"name": "Generated", "pbr": pbr, "source": "generated"}, "batch": batch}


class ModifierGenerator(StubGenerator):
    def check(self, index: int, request: dict) -> None:
        mesh = request.get("mesh")
        if not isinstance(mesh, dict) or not mesh.get("faces"):
            raise ValueError(f"request {index}: no mesh to work on")

    def result(self, request: dict, batch: int) -> dict:
        if request.get("keep_mesh"):  # the user's own mesh: a Mirror would double it
            # As the real one does when a stack is wanted: the most probable type that may stay.
            wanted = [{"name": "Bevel", "type": "BEVEL", "params": {"width": 0.02, "segments": 2}}]
            return {
                "modifiers": wanted if request.get("at_least_one") else [],
                "left_out": ["MIRROR"],
                "batch": batch,
            }
        vertices, faces = request["mesh"]["vertices"], request["mesh"]["faces"]
        # As the real one does for Mirror: the half on +X of the box's middle, moved so that plane
        # is at the origin, the modifier that completes it, and where the object goes.
        plane = (min(v[0] for v in vertices) + max(v[0] for v in vertices)) / 2
        keep = {i for i, v in enumerate(vertices) if v[0] >= plane}
        half = [f for f in faces if all(i in keep for i in f)] or faces[:1]
        used = sorted({i for f in half for i in f})
        index = {old: new for new, old in enumerate(used)}
        return {
            "modifiers": [{"name": "Mirror", "type": "MIRROR", "params": {"use_axis": [True, False, False]}}],
            "base_mesh": {
                "vertices": [[v[0] - plane, v[1], v[2]] for v in (vertices[i] for i in used)],
                "faces": [[index[i] for i in f] for f in half],
            },
            "base_location": [plane, 0.0, 0.0],
            "batch": batch,
        }


class AnimationGenerator(StubGenerator):
    def check(self, index: int, request: dict) -> None:
        if request.get("object_type") not in ("MESH", "ARMATURE"):
            raise ValueError(f"request {index}: object_type must be MESH or ARMATURE")
        if request["object_type"] == "ARMATURE" and not (request.get("armature") or {}).get("bones"):
            raise ValueError(f"request {index}: an ARMATURE request needs its armature (the rig's bones)")

    def result(self, request: dict, batch: int) -> dict:
        keyframes = [{"co": [1.0, 0.0]}, {"co": [24.0, 1.5707964]}]
        return {
            "action": {
                "name": "Turn",
                "fcurves": [{"data_path": "rotation_euler", "index": 2, "keyframes": keyframes}],
                "frame_range": [1.0, 24.0],
            },
            "batch": batch,
        }


STUBS = {"material": MaterialGenerator, "modifier": ModifierGenerator, "animation": AnimationGenerator}


def write_stub_checkpoints(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in STUBS:
        paths[name] = folder / f"{name}.json"
        paths[name].write_text(json.dumps({"roughness": 0.4, "stall_s": 3}))
    return paths
