"""Local stand-ins for servers that cannot be installed here, for tests and benchmarks."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import httpx
from moto.server import ThreadedMotoServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_s3_server(port: int | None = None) -> tuple[ThreadedMotoServer, str]:
    """A real S3-protocol HTTP server on loopback (moto), standing in for MinIO; returns (server,
    host:port). ``port`` starts it again where a stopped one was (moto keeps its buckets in this
    process, so what the stopped one held is there again, as MinIO's disk would be)."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request otherwise
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server, f"127.0.0.1:{port}"


def start_gateway(env: dict[str, str], timeout_s: float = 60) -> tuple[subprocess.Popen, str]:
    """``python -m services.gateway`` as a child process with extra environment, once it answers;
    returns (process, base URL)."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.gateway"],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **env, "BMT_GATEWAY_PORT": str(port)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            httpx.get(f"{url}/healthz", timeout=1)
            return process, url
        except httpx.TransportError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                process.wait()
                raise RuntimeError(f"the gateway did not start (exit code {process.poll()})") from None
            time.sleep(0.2)


@contextmanager
def gateway_process(env: dict[str, str], timeout_s: float = 60) -> Iterator[str]:
    """``start_gateway`` for a block; yields its base URL and stops it after."""
    process, url = start_gateway(env, timeout_s)
    try:
        yield url
    finally:
        stop_gateway(process, timeout_s=10)


def stop_gateway(process: subprocess.Popen, timeout_s: float = 30) -> None:
    """SIGTERM, as an orchestrator stops it: running generations get their grace, the rest fail."""
    process.terminate()
    process.wait(timeout=timeout_s)


def start_celery_worker(
    env: dict[str, str], queues: str, include: str, log_path: str | None = None
) -> subprocess.Popen:
    """``celery -A shared.queue worker`` on ``queues`` (one task at a time), also loading the task
    module ``include``, in its own process group so that it can be killed whole."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "shared.queue",
            "worker",
            "-Q",
            queues,
            "-c",
            "1",
            "-I",
            include,
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"worker-{os.getpid()}-{time.monotonic_ns()}@%h",
            "--loglevel",
            "WARNING",
        ],
        cwd=Path(__file__).resolve().parents[1],
        env={**os.environ, **env},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=open(log_path or os.devnull, "ab"),  # noqa: SIM115  (the child keeps it)
    )


def stop_process_group(process: subprocess.Popen, sig: int = signal.SIGTERM) -> None:
    """Stop a process and its children; one that ignores SIGTERM for 30 s gets SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, sig)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def kill_process_tree(process: subprocess.Popen) -> None:
    """SIGKILL a process and every process under it, as a machine or container dying would (for
    a server, such as tritonserver and its model stubs, started without a process group of its own)."""
    tree, look = [], [process.pid]
    while look:
        pid = look.pop()
        tree.append(pid)
        for children in Path(f"/proc/{pid}/task").glob("*/children"):
            with suppress(FileNotFoundError):  # the thread ended meanwhile
                look += [int(child) for child in children.read_text().split()]
    for pid in tree:
        with suppress(ProcessLookupError):  # it ended meanwhile
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=30)
