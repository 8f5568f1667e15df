"""The worker child: one long-lived process that extracts many files, one at a time.

Besides extraction (the default mode) it opens files only (``mode: open``, the benchmark's floor)
or applies batches of modifier stacks (``mode: apply_modifiers``, blender_worker.modifier_apply).

Started by blender_worker.pool as ``python -m blender_worker.child RESPONSE_FD CONFIG_JSON``. It limits
its own address space before importing bpy, then reads one JSON request per line on stdin and
answers one JSON line on RESPONSE_FD (stdout and stderr carry Blender's chatter to a log file).
It exits when stdin closes, or after answering with ``"recycle": true``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import orjson

from blender_worker.precheck import RejectedInput, check_input
from blender_worker.summary import document_counts
from shared.scene import Limits, Scene, parse_scene

# Modules that import bpy are imported inside _Worker, after the memory limit is in place.
MB = 1024 * 1024


def main(argv: list[str]) -> int:
    response_fd, config = int(argv[1]), json.loads(argv[2])
    limit = config["memory_mb"] * MB
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    responses = os.fdopen(response_fd, "w", buffering=1)
    started = time.perf_counter()
    worker = _Worker(config)
    responses.write(json.dumps({"ready": True, "startup_s": time.perf_counter() - started}) + "\n")
    for line in sys.stdin:
        request = json.loads(line)
        result = worker.handle(request)
        responses.write(json.dumps(result) + "\n")
        if result.get("recycle"):
            break
    return 0


class _Worker:
    def __init__(self, config: dict[str, Any]):
        import bpy  # after the memory limit is in place

        from blender_worker.loader import disable_auto_exec

        self.bpy = bpy
        self.config = config
        self.done = 0
        disable_auto_exec()

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        started = time.perf_counter()
        timings: dict[str, float] = {}
        result: dict[str, Any] = {"path": request["path"], "status": "ok", "reason": None, "timings": timings}
        try:
            if request.get("mode") == "open":
                self._open_only(request, result, timings)
            elif request.get("mode") == "apply_modifiers":
                self._apply_modifiers(request, result, timings)
            else:
                self._extract(request, result, timings)
        except RejectedInput as exc:
            result.update(status="rejected", reason=str(exc))
        except MemoryError:
            result.update(
                status="failed",
                reason=f"memory limit of {self.config['memory_mb']} MB exceeded (MemoryError)",
                recycle=True,
            )
        except Exception as exc:  # any other error is ours or Blender's: record it, keep going
            where = traceback.extract_tb(exc.__traceback__)[-1]
            result.update(
                status="failed",
                reason=f"{type(exc).__name__}: {str(exc)[:500]} (at {Path(where.filename).name}:{where.lineno})",
            )
        timings["total_s"] = time.perf_counter() - started
        self.done += 1
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        result["peak_rss_mb"] = round(peak_mb, 1)
        # The memory limit (RLIMIT_AS) counts address space, not resident memory.
        result["peak_address_space_mb"] = round(_status_kb("VmPeak") / 1024, 1)
        result["pid"] = os.getpid()
        if self.done >= self.config["files_per_child"] or _current_rss_mb() > self.config["recycle_rss_mb"]:
            result["recycle"] = True
        return result

    def _load(self, request: dict[str, Any], timings: dict[str, float]):
        from blender_worker.loader import load

        config = self.config
        t = time.perf_counter()
        checked = check_input(
            Path(request["path"]),
            max_file_bytes=config["max_file_bytes"],
            max_decompressed_bytes=config["max_decompressed_bytes"],
        )
        timings["precheck_s"] = time.perf_counter() - t
        t = time.perf_counter()
        load(checked, assimp=config["assimp_path"], legacy_blender=config["legacy_blender_path"])
        timings["open_s"] = time.perf_counter() - t
        return checked

    def _open_only(self, request: dict[str, Any], result: dict[str, Any], timings: dict[str, float]) -> None:
        """The benchmark's floor: check and load the file, read nothing."""
        result["sha256"] = self._load(request, timings).sha256

    def _apply_modifiers(
        self, request: dict[str, Any], result: dict[str, Any], timings: dict[str, float]
    ) -> None:
        """A batch of (mesh, modifier stack) items from the JSON file at ``path``, each applied
        (blender_worker.modifier_apply); the results go to ``out_json``."""
        from blender_worker.modifier_apply import apply_stacks

        t = time.perf_counter()
        items = json.loads(Path(request["path"]).read_text())
        Path(request["out_json"]).write_text(json.dumps(apply_stacks(items)))
        timings["apply_s"] = time.perf_counter() - t

    def _extract(self, request: dict[str, Any], result: dict[str, Any], timings: dict[str, float]) -> None:
        from blender_worker.scene_reader import ReadLimits, inventory, read_scene

        config = self.config
        checked = self._load(request, timings)
        result["sha256"] = checked.sha256
        if request.get("with_inventory"):
            result["inventory"] = inventory()
        t = time.perf_counter()
        provenance = {
            **request.get("provenance", {}),
            "sha256": checked.sha256,
            "path": request.get("source_path") or str(checked.path),
        }
        limits = ReadLimits(config["max_vertices"], config["max_faces"])
        doc = read_scene(
            limits, provenance, saved_by_blender=checked.format == "blend" and not checked.big_endian
        )
        timings["read_s"] = time.perf_counter() - t
        t = time.perf_counter()
        text = orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY)
        timings["serialize_s"] = time.perf_counter() - t
        result["blender_version"] = doc["provenance"].get("blender_version")
        result["counts"] = document_counts(doc)
        result["warnings"] = doc["warnings"][:20]
        # The document as Python objects is a third of the peak below: the memory goes back for
        # the parsed model to reuse (benchmarks/extract_memory.py measures the rest).
        del doc
        t = time.perf_counter()
        # Pydantic parsing the JSON itself is twice as fast as json.loads plus validating the dict;
        # parse_scene then runs the cross-field checks and the caps (authored + evaluated meshes).
        scene = Scene.model_validate_json(text)
        parse_scene(scene, Limits(max_vertices=config["max_vertices"] * 2, max_faces=config["max_faces"] * 2))
        del scene
        timings["validate_s"] = time.perf_counter() - t
        out = Path(request["out_json"])
        out.write_bytes(text)
        result["document"] = str(out)
        if request.get("preview_png"):
            from blender_worker.preview import render_preview

            t = time.perf_counter()
            png = Path(request["preview_png"])
            if render_preview(png, size=config["preview_size"], samples=config["preview_samples"]):
                result["preview"] = str(png)
            timings["preview_s"] = time.perf_counter() - t


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _current_rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / MB


if __name__ == "__main__":
    sys.exit(main(sys.argv))
