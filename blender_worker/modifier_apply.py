"""Apply modifier stacks to meshes in real Blender and read back what comes out.

Each stack is built by the add-on's injector (the same code that builds a generated scene in a
user's Blender), evaluated through the depsgraph and read with ``foreach_get``. Runs inside a
worker child (blender_worker.child, mode ``apply_modifiers``) so a crash or a runaway stack costs
one batch, never the caller; ``apply_batch`` is the pool-side entry point.

    request item: {"id", "mesh": {"vertices", "faces"}, "modifiers": [scene-format modifier dicts]}
    result item:  {"id", "ok", "error", "warnings", "mesh": {"vertices", "faces"} (when ok)}
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from blender_worker.settings import ExtractSettings

# A batch shares one child and one time limit; items of a failed batch are retried one by one.
BATCH_ITEMS = 32


def apply_stacks(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """In a process with bpy: each item's stack applied to its mesh (an empty factory scene each)."""
    import bpy

    from addon.injector import InjectionError, inject_scene

    results = []
    for item in items:
        bpy.ops.wm.read_factory_settings(use_empty=True)
        doc = {
            "schema_version": "1.0",
            "objects": [
                {
                    "name": "Base",
                    "mesh": {"name": "BaseMesh", **item["mesh"]},
                    "modifiers": item["modifiers"],
                }
            ],
        }
        out: dict[str, Any] = {"id": item["id"], "ok": False, "error": None, "warnings": []}
        try:
            injected = inject_scene(doc, collection=bpy.context.scene.collection)
        except (InjectionError, ValueError) as exc:
            out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
            results.append(out)
            continue
        out["warnings"] = injected.warnings
        obj = injected.objects[0]
        evaluated = obj.evaluated_get(bpy.context.evaluated_depsgraph_get())
        mesh = evaluated.to_mesh()
        try:
            nv, nf, nl = len(mesh.vertices), len(mesh.polygons), len(mesh.loops)
            vertices = np.empty(nv * 3, np.float32)
            mesh.vertices.foreach_get("co", vertices)
            starts, totals, corners = (np.empty(n, np.int32) for n in (nf, nf, nl))
            mesh.polygons.foreach_get("loop_start", starts)
            mesh.polygons.foreach_get("loop_total", totals)
            mesh.loops.foreach_get("vertex_index", corners)
            out["mesh"] = {
                "vertices": vertices.reshape(nv, 3).tolist(),
                "faces": [corners[s : s + t].tolist() for s, t in zip(starts, totals, strict=True)],
            }
            out["ok"] = not injected.warnings
            if injected.warnings:
                out["error"] = "injector warnings: " + "; ".join(injected.warnings)[:300]
        finally:
            evaluated.to_mesh_clear()
        results.append(out)
    return results


def apply_batch(
    items: list[dict[str, Any]],
    settings: ExtractSettings,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every item through worker children (``settings.workers`` in parallel, ``settings.timeout_s``
    per batch of BATCH_ITEMS); a batch whose child crashed or overran is retried an item at a time,
    and an item that fails alone gets ``ok: False`` with the child's reason."""
    from blender_worker.pool import run_batch

    folder = Path(tempfile.mkdtemp(prefix="bmt-modifier-apply-"))
    results: dict[str, dict[str, Any]] = {}

    def run(batches: list[list[dict[str, Any]]], round_name: str) -> list[list[dict[str, Any]]]:
        """Runs the batches; returns those whose child crashed or overran."""
        by_path = {}
        for k, batch in enumerate(batches):
            path = folder / f"{round_name}-{k}.json"
            path.write_text(json.dumps(batch))
            by_path[str(path)] = batch
        requests = [{"mode": "apply_modifiers", "path": p, "out_json": f"{p}.out"} for p in by_path]
        failed = []
        for answer in run_batch(requests, settings):
            if answer.get("status") != "ok":
                failed.append((by_path[answer["path"]], answer.get("reason")))
                continue
            for result in json.loads(Path(answer["out_json"]).read_text()):
                results[result["id"]] = result
                if on_result is not None:
                    on_result(result)
        return failed

    batches = [items[i : i + BATCH_ITEMS] for i in range(0, len(items), BATCH_ITEMS)]
    retry = [[item] for batch, _ in run(batches, "batch") for item in batch]
    for batch, reason in run(retry, "single"):
        failed = {"id": batch[0]["id"], "ok": False, "error": reason, "warnings": []}
        results[batch[0]["id"]] = failed
        if on_result is not None:
            on_result(failed)
    return [results[item["id"]] for item in items]
