"""Run Triton with every specialist whose checkpoint exists: python -m services.serving
[--checkpoint NAME=PATH ...] [ports]. Checkpoints default to the BMT_NAME_CHECKPOINT settings."""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path

from services.serving.triton import start_triton, write_model_repository
from shared.inference import SPECIALISTS, default_checkpoints
from shared.settings import get_settings


def checkpoint_override(value: str) -> tuple[str, Path]:
    name, _, path = value.partition("=")
    if name not in SPECIALISTS or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH with NAME one of {', '.join(SPECIALISTS)}")
    return name, Path(path)


def main() -> None:
    settings = get_settings()
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--checkpoint",
        type=checkpoint_override,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a specialist's checkpoint, instead of its BMT_NAME_CHECKPOINT setting",
    )
    parser.add_argument("--http-port", type=int, default=8010)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--instances", type=int, default=1, help="model instances (parallel generations)")
    parser.add_argument(
        "--max-batch", type=int, default=16, help="queued requests an instance decodes together"
    )
    args = parser.parse_args()
    checkpoints = {**default_checkpoints(), **dict(args.checkpoint)}
    work = settings.data_dir / "triton"
    models = write_model_repository(
        work / "models",
        checkpoints,
        args.instances,
        args.max_batch,
        queue_timeout_s=settings.inference_timeout_s,
    )
    if not models:
        sys.exit(f"no specialist checkpoint exists ({', '.join(map(str, checkpoints.values()))})")
    server = start_triton(work / "models", work, models, args.http_port, args.grpc_port, args.metrics_port)
    # Forward a stop request to Triton and let the wait below return once it has shut down
    # (waiting inside the handler would re-enter Popen.wait and hang). Installed before Triton is
    # ready: a client can see it ready, and stop it, before our own readiness poll returns.
    stopping: list[int] = []

    def forward_stop(signum: int, _frame) -> None:
        stopping.append(signum)
        server.process.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward_stop)
    try:
        for model in models:
            server.wait_ready(model)
    except RuntimeError:
        if not stopping:  # Triton died by itself, not because it was asked to stop
            raise
    else:
        print(
            f"triton ready ({', '.join(models)}): grpc 127.0.0.1:{args.grpc_port}, "
            f"http {args.http_port}, metrics {args.metrics_port}"
        )
    try:
        sys.exit(server.process.wait())
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()
