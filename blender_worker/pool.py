"""A pool of long-lived extraction children, each under a time and memory limit.

One child extracts many files (opening a .blend takes milliseconds; starting bpy takes most of a
second), and is replaced after ``files_per_child`` files, when its memory grows, or when it dies.
A child that crashes or overruns its time limit is killed and replaced; its file is recorded as
failed with the reason, and the batch goes on. The parent never imports bpy.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any

from blender_worker.settings import ExtractSettings

STARTUP_TIMEOUT_S = 120
LOG_TAIL_CHARS = 4000
MAX_START_FAILURES = 3

# What a child computes must not depend on the machine (issue 19): Blender's glTF importer skins
# vertices into the bind pose with np.matmul, an OpenBLAS sgemv per vertex, and OpenBLAS's AVX-512
# kernels fuse the multiply-adds its AVX2 kernels round twice, so an AVX-512 machine stored other
# vertex floats and built another geometry dataset. Children use OpenBLAS's Haswell (AVX2 + FMA)
# kernels wherever the CPU runs them, on one thread (a threaded sum splits by core count), and numpy
# without its AVX-512 loops (other approximations of exp, log, sin, power...; numpy 2 names them
# X86_V4, AVX512_ICL, AVX512_SPR, numpy 1.26 AVX512F...: each ignores the other's names).
PINNED_NUMERICS = {
    "OPENBLAS_NUM_THREADS": "1",
    "NPY_DISABLE_CPU_FEATURES": "AVX512F AVX512CD AVX512_KNL AVX512_KNM AVX512_SKX AVX512_CLX "
    "AVX512_CNL AVX512_ICL AVX512_SPR X86_V4",
}
PINNED_BLAS_CORE = {"OPENBLAS_CORETYPE": "Haswell"}


def child_environment() -> dict[str, str]:
    """This process's environment with the numerics pinned."""
    env = {**os.environ, **PINNED_NUMERICS}
    if _cpu_flags() >= {"avx2", "fma"}:
        env.update(PINNED_BLAS_CORE)
    return env


def _cpu_flags() -> set[str]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:  # not Linux: the kernels stay the machine's
        return set()
    for line in cpuinfo.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


class WorkerStartError(RuntimeError):
    """A child could not start (for example the memory limit is below what bpy needs)."""


class ChildProcess:
    """One child: start, send a request, wait for its answer within a deadline, replace when dead."""

    def __init__(self, settings: ExtractSettings, log_path: Path):
        self.settings = settings
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.responses: IO[bytes] | None = None

    def _config(self) -> str:
        s = self.settings
        keys = [
            "memory_mb",
            "max_file_bytes",
            "max_decompressed_bytes",
            "max_vertices",
            "max_faces",
            "files_per_child",
            "recycle_rss_mb",
            "preview_size",
            "preview_samples",
            "assimp_path",
            "legacy_blender_path",
        ]
        return json.dumps({k: getattr(s, k) for k in keys})

    def start(self) -> None:
        read_fd, write_fd = os.pipe()
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "blender_worker.child", str(write_fd), self._config()],
                stdin=subprocess.PIPE,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                cwd=Path(__file__).resolve().parents[1],
                env=child_environment(),
            )
        os.close(write_fd)
        self.responses = os.fdopen(read_fd, "rb")
        ready = self._receive(STARTUP_TIMEOUT_S)
        if not isinstance(ready, dict) or not ready.get("ready"):
            reason = ready if isinstance(ready, str) else "no ready message"
            self.stop()
            raise WorkerStartError(f"extraction worker failed to start: {reason}")

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def run(self, request: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """The child's answer, or a failed result naming the crash or timeout (the child is then gone)."""
        assert self.proc is not None and self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps(request).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died; _receive reports how
        answer = self._receive(timeout_s)
        if isinstance(answer, dict):
            if answer.get("recycle"):
                self.stop()
            return answer
        return {"path": request["path"], "status": "failed", "reason": answer, "timings": {}}

    def _receive(self, timeout_s: float) -> dict[str, Any] | str:
        """A decoded JSON line, or the reason none came (timeout or child death)."""
        assert self.responses is not None and self.proc is not None
        ready, _, _ = select.select([self.responses], [], [], timeout_s)
        if not ready:
            self.stop()
            return f"timed out after {timeout_s:g} s (worker killed and replaced)"
        line = self.responses.readline()
        if line:
            return json.loads(line)
        return self._death_reason()

    def _death_reason(self) -> str:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.stop()
            code = self.proc.returncode
        self._close()
        if code is not None and code < 0:
            how = f"killed by {signal.Signals(-code).name}"
        else:
            how = f"exited with status {code}"
        reason = f"worker crashed ({how}); limits {self.settings.memory_mb} MB memory"
        hint = _log_hint(self.log_path)
        return f"{reason}; last output: {hint}" if hint else reason

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._close()

    def _close(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self.proc.stdin.close()
        if self.responses is not None:
            self.responses.close()
            self.responses = None


def _log_hint(path: Path) -> str:
    """The last non-empty lines of a child's log (Blender prints why it aborted there)."""
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - LOG_TAIL_CHARS))
            lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return " | ".join(lines[-3:])[:600]


def run_batch(
    requests: Iterable[dict[str, Any]],
    settings: ExtractSettings,
    on_result: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Run every request on ``settings.workers`` children; results come back in completion order."""
    pending: queue.Queue[dict[str, Any]] = queue.Queue()
    for request in requests:
        pending.put(request)
    results: list[dict[str, Any]] = []
    lock = threading.Lock()
    log_dir = Path(tempfile.mkdtemp(prefix="bmt-extract-logs-"))

    def record(result: dict[str, Any]) -> None:
        with lock:
            results.append(result)
            if on_result is not None:
                on_result(result)

    def slot(index: int) -> None:
        child = ChildProcess(settings, log_dir / f"worker-{index}.log")
        start_failures = 0
        try:
            while True:
                try:
                    request = pending.get_nowait()
                except queue.Empty:
                    return
                if not child.alive:
                    try:
                        child.start()
                        start_failures = 0
                    except WorkerStartError as exc:
                        start_failures += 1
                        record(
                            {"path": request["path"], "status": "failed", "reason": str(exc), "timings": {}}
                        )
                        if start_failures >= MAX_START_FAILURES:
                            _drain(pending, str(exc), record)
                            return
                        continue
                started = time.perf_counter()
                result = child.run(request, settings.timeout_s)
                result.setdefault("timings", {}).setdefault("total_s", time.perf_counter() - started)
                record({**request, **result})
        finally:
            child.stop()

    threads = [threading.Thread(target=slot, args=(i,), daemon=True) for i in range(settings.workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _drain(
    pending: queue.Queue[dict[str, Any]], reason: str, record: Callable[[dict[str, Any]], None]
) -> None:
    while True:
        try:
            request = pending.get_nowait()
        except queue.Empty:
            return
        record({"path": request["path"], "status": "failed", "reason": reason, "timings": {}})
