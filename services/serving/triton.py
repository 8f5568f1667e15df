"""Build a Triton model repository and run the Triton server bundled with nvidia-pytriton.

That server ships only the python backend, which is what the models use: each model's
``model.py`` loads the same code the embedded mode runs in-process.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from shared.inference import generator_path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MODEL_TEMPLATE = Path(__file__).resolve().parent / "triton_models" / "specialist" / "model.py"

SPECIALIST_CONFIG = """\
name: "{name}"
backend: "python"
max_batch_size: {max_batch}
dynamic_batching {{
  max_queue_delay_microseconds: {queue_delay_us}
  default_queue_policy {{ timeout_action: REJECT, default_timeout_microseconds: {queue_timeout_us} }}
}}
input [ {{ name: "REQUEST_JSON", data_type: TYPE_STRING, dims: [ 1 ] }} ]
output [ {{ name: "RESULT_JSON", data_type: TYPE_STRING, dims: [ 1 ] }} ]
instance_group [ {{ count: {instances}, kind: KIND_CPU }} ]
parameters: {{ key: "generator", value: {{ string_value: "{generator}" }} }}
parameters: {{ key: "checkpoint", value: {{ string_value: "{checkpoint}" }} }}
parameters: {{ key: "project_root", value: {{ string_value: "{project_root}" }} }}
"""


def _pytriton_dir() -> Path:
    import pytriton

    return Path(pytriton.__file__).resolve().parent / "tritonserver"


def write_model_repository(
    root: Path,
    checkpoints: dict[str, Path],
    instances: int = 1,
    max_batch: int = 16,
    queue_delay_us: int = 20_000,
    queue_timeout_s: float = 60.0,
    generators: dict[str, str] | None = None,
) -> list[str]:
    """A repository with one model per specialist whose checkpoint exists, each version 1 of the
    generic JSON model (triton_models/specialist/model.py); returns the models written.

    Requests that queue while an instance is busy, or arrive within ``queue_delay_us`` of each
    other, are decoded together, up to ``max_batch`` (`make bench-serving`: 16 concurrent requests
    got 1.9x the meshes per second of ``max_batch=1`` on a 2-core CPU, whose one-row decoding
    runs on fp16 weights). A request still queued after ``queue_timeout_s`` is refused, so one
    that never finishes cannot hold the queue behind it forever. ``generators`` may name another
    generator than ``shared.inference.generator_path``'s as "module:Class" (tests)."""
    written = []
    for name, checkpoint in checkpoints.items():
        if not Path(checkpoint).is_file():
            continue
        model_dir = root / name
        (model_dir / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy(MODEL_TEMPLATE, model_dir / "1" / "model.py")
        (model_dir / "config.pbtxt").write_text(
            SPECIALIST_CONFIG.format(
                name=name,
                generator=(generators or {}).get(name) or generator_path(name),
                instances=instances,
                max_batch=max_batch,
                queue_delay_us=queue_delay_us,
                queue_timeout_us=int(queue_timeout_s * 1e6),
                checkpoint=Path(checkpoint).resolve(),
                project_root=PROJECT_ROOT,
            )
        )
        written.append(name)
    return written


def write_backend_dir(root: Path) -> Path:
    """The python backend plus the stub built for this Python, in the layout tritonserver expects."""
    source = _pytriton_dir()
    backend = root / "python"
    backend.mkdir(parents=True, exist_ok=True)
    for item in (source / "backends" / "python").iterdir():
        if item.is_file():
            shutil.copy(item, backend / item.name)
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    shutil.copy(source / "python_backend_stubs" / version / "triton_python_backend_stub", backend)
    return root


@dataclass
class TritonServer:
    process: subprocess.Popen
    http_port: int
    grpc_port: int
    metrics_port: int

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def wait_ready(self, model: str, timeout: float = 120) -> None:
        """Wait for one model (Triton's global readiness stays false if any model failed)."""
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.http_port}/v2/models/{model}/ready"
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"tritonserver exited with code {self.process.returncode}")
            try:
                if httpx.get(url, timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"model {model!r} not ready after {timeout}s")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_triton(
    repository: Path,
    work_dir: Path,
    models: list[str],
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    log_file: Path | None = None,
) -> TritonServer:
    backends = write_backend_dir(work_dir / "backends")
    env = dict(os.environ)
    # The stub finds Python through PATH and must link this interpreter's libpython, not Debian's.
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    libs = [sysconfig.get_config_var("LIBDIR"), str(_pytriton_dir().parent.parent / "nvidia_pytriton.libs")]
    env["LD_LIBRARY_PATH"] = os.pathsep.join([*libs, env.get("LD_LIBRARY_PATH", "")])
    command = [
        str(_pytriton_dir() / "bin" / "tritonserver"),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--http-port={http_port}",
        f"--grpc-port={grpc_port}",
        f"--metrics-port={metrics_port}",
        "--model-control-mode=explicit",
        *[f"--load-model={m}" for m in models],
        "--disable-auto-complete-config",
        "--allow-gpu-metrics=false",
        "--pinned-memory-pool-byte-size=0",
        "--cuda-memory-pool-byte-size=0:0",
    ]
    out = open(log_file, "ab") if log_file else subprocess.DEVNULL  # noqa: SIM115 - owned by the process
    process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    return TritonServer(process, http_port, grpc_port, metrics_port)
