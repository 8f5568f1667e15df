"""Run Triton with this project's models: python -m services.serving [--checkpoint PATH] [ports]."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from services.serving.triton import GEOMETRY_MODEL, start_triton, write_model_repository
from shared.settings import get_settings


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--checkpoint", type=Path, default=settings.geometry_checkpoint)
    parser.add_argument("--http-port", type=int, default=8010)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--instances", type=int, default=1, help="model instances (parallel generations)")
    parser.add_argument(
        "--max-batch", type=int, default=16, help="queued requests an instance decodes together"
    )
    args = parser.parse_args()
    work = settings.data_dir / "triton"
    repository = write_model_repository(work / "models", args.checkpoint, args.instances, args.max_batch)
    server = start_triton(
        repository, work, [GEOMETRY_MODEL], args.http_port, args.grpc_port, args.metrics_port
    )
    # Forward a stop request to Triton and let the wait below return once it has shut down
    # (waiting inside the handler would re-enter Popen.wait and hang). Installed before Triton is
    # ready: a client can see it ready, and stop it, before our own readiness poll returns.
    stopping: list[int] = []

    def forward_stop(signum: int, _frame) -> None:
        stopping.append(signum)
        server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward_stop)
    try:
        server.wait_ready(GEOMETRY_MODEL)
    except RuntimeError:
        if not stopping:  # Triton died by itself, not because it was asked to stop
            raise
    else:
        print(
            f"triton ready: grpc 127.0.0.1:{args.grpc_port}, http {args.http_port}, "
            f"metrics {args.metrics_port}"
        )
    try:
        sys.exit(server.process.wait())
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
