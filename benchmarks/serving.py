"""Triton serving throughput under concurrent requests: dynamic batching against one at a time.

    python -m benchmarks.serving [--checkpoint models/geometry/tiny/model.pt] [--clients 16]

Starts the bundled Triton twice on this machine, with --max-batch 1 (the baseline: each request
decoded alone) and with the default 16, and sends the same --clients concurrent requests (distinct
prompts and seeds, --faces each) to both over gRPC, as the gateway does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from services.gateway.inference import TritonGeometry
from services.serving.triton import GEOMETRY_MODEL, start_triton, write_model_repository
from tools.servers import free_port

PROMPTS = ["a chair", "a table", "a lamp", "a box", "a stool", "a shelf", "stairs", "a cone"]


def serve_and_load(checkpoint: Path, max_batch: int, clients: int, faces: int, work: Path) -> dict:
    repository = write_model_repository(work / "models", checkpoint, max_batch=max_batch)
    server = start_triton(
        repository, work, [GEOMETRY_MODEL], free_port(), free_port(), free_port(), work / "triton.log"
    )
    try:
        server.wait_ready(GEOMETRY_MODEL, timeout=300)
        backend = TritonGeometry(server.grpc_url, timeout_s=600)
        backend.generate_mesh("a warm-up", faces, 0, 0.8)

        def request(k: int) -> dict:
            return backend.generate_mesh(PROMPTS[k % len(PROMPTS)], faces, k, 0.8)

        start = time.perf_counter()
        with ThreadPoolExecutor(clients) as pool:
            meshes = list(pool.map(request, range(clients)))
        seconds = time.perf_counter() - start
    finally:
        server.stop()
    return {
        "seconds": seconds,
        "meshes_per_s": clients / seconds,
        "mean_batch": sum(m["batch"] for m in meshes) / clients,
        "tokens_per_s": sum(m["tokens"] for m in meshes) / seconds,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=Path("models/geometry/tiny/model.pt"))
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--faces", type=int, default=100)
    args = parser.parse_args(argv)
    rows = []
    for name, max_batch in (("one at a time (baseline)", 1), ("dynamic batching, up to 16", 16)):
        with tempfile.TemporaryDirectory(prefix="bench-serving-") as work:
            rows.append(
                (name, serve_and_load(args.checkpoint, max_batch, args.clients, args.faces, Path(work)))
            )
    print(
        f"\n{args.clients} concurrent requests of up to {args.faces} faces, Triton (CPU), {args.checkpoint}"
    )
    print(f"{'server':<30}{'seconds':>9}{'meshes/s':>10}{'tokens/s':>10}{'mean batch':>12}")
    for name, r in rows:
        print(
            f"{name:<30}{r['seconds']:>9.1f}{r['meshes_per_s']:>10.2f}{r['tokens_per_s']:>10.0f}{r['mean_batch']:>12.1f}"
        )
    print(f"throughput from batching: {rows[1][1]['meshes_per_s'] / rows[0][1]['meshes_per_s']:.1f}x")


if __name__ == "__main__":
    main()
