"""Serving under concurrent clients, straight to Triton and through the gateway, in one run.

    python -m benchmarks.serving [--checkpoint models/geometry/tiny/model.pt] [--faces 40]

Starts the bundled Triton (geometry, dynamic batching up to 16) and the real gateway process in
front of it (its own SQLite database and blob folder unless BMT_DATABASE_URL / BMT_BLOB_URL say
otherwise). For 1, 4 and 16 concurrent clients it sends the same requests (distinct prompts and
seeds) straight to Triton over gRPC (shared.inference, as the gateway calls it) and through the
gateway (POST, then the event stream to the final state with the scenes), and prints requests per
second. Then, one client at a time, each request once straight and once through the gateway (same
prompt and seed, so the same decoding work): the gateway's overhead per request, p50 and p99.
Triton's batch statistics for the run close the table.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from services.serving.triton import start_triton, write_model_repository
from shared.inference import TritonSpecialist
from tools.servers import free_port, gateway_process

PROMPTS = ["a chair", "a table", "a lamp", "a box", "a stool", "a shelf", "stairs", "a cone"]
CLIENTS = (1, 4, 16)


def ask(k: int, faces: int) -> dict:
    return {"prompt": PROMPTS[k % len(PROMPTS)], "face_budget": faces, "seed": k, "temperature": 0.8}


def through_gateway(client: httpx.Client, body: dict) -> dict:
    generation_id = client.post("/v1/generations", json=body).raise_for_status().json()["id"]
    state: dict = {}
    with client.stream("GET", f"/v1/generations/{generation_id}/events") as events:
        for line in events.iter_lines():
            if line.startswith("data: "):
                state = json.loads(line.removeprefix("data: "))
    if state.get("status") != "succeeded":
        raise RuntimeError(f"generation {generation_id}: {state}")
    return state


def batch_counts(triton: TritonSpecialist) -> dict[int, int]:
    stats = triton.client().get_inference_statistics("geometry", as_json=True)["model_stats"][0]
    return {int(b["batch_size"]): int(b["compute_infer"]["count"]) for b in stats.get("batch_stats", [])}


def load(clients: int, per_client: int, call) -> float:  # type: ignore[no-untyped-def]
    """Requests per second with ``clients`` threads each making ``per_client`` calls in turn."""
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(lambda c: [call(c * per_client + i) for i in range(per_client)], range(clients)))
    return clients * per_client / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", type=Path, default=Path("models/geometry/tiny/model.pt"))
    parser.add_argument("--faces", type=int, default=40)
    parser.add_argument("--requests", type=int, default=32, help="requests per row (split over the clients)")
    parser.add_argument("--overhead-requests", type=int, default=40)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-serving-") as folder:
        work = Path(folder)
        models = write_model_repository(work / "models", {"geometry": args.checkpoint}, max_batch=16)
        server = start_triton(
            work / "models", work, models, free_port(), free_port(), free_port(), work / "triton.log"
        )
        env = {
            "BMT_DATA_DIR": str(work / "var"),
            "BMT_INFERENCE_URL": f"grpc://127.0.0.1:{server.grpc_port}",
            "BMT_GEOMETRY_CHECKPOINT": str(args.checkpoint),
            "BMT_GENERATION_CONCURRENCY": "16",
            "BMT_INFERENCE_TIMEOUT_S": "600",
            "BMT_LOG_LEVEL": "WARNING",
            **{k: v for k, v in os.environ.items() if k in ("BMT_DATABASE_URL", "BMT_BLOB_URL")},
        }
        try:
            server.wait_ready("geometry", timeout=300)
            triton = TritonSpecialist("geometry", server.grpc_url)

            def direct(k: int) -> dict:
                return triton.run_many([ask(k, args.faces)], 600)[0]

            direct(10_000)  # warm-up: the encoder and the first decoding's allocations
            with gateway_process(env) as url, httpx.Client(base_url=url, timeout=600) as gateway:
                through_gateway(gateway, {**ask(10_001, args.faces), "specialists": ["geometry"]})
                rows = []
                for clients in CLIENTS:
                    per_client = max(1, args.requests // clients)
                    straight = load(clients, per_client, direct)
                    before = batch_counts(triton)
                    via = load(
                        clients,
                        per_client,
                        lambda k: through_gateway(
                            gateway, {**ask(k, args.faces), "specialists": ["geometry"]}
                        ),
                    )
                    after = batch_counts(triton)
                    batches = {s: after[s] - before.get(s, 0) for s in after if after[s] > before.get(s, 0)}
                    rows.append((clients, straight, via, batches))
                    print(
                        f"measured: {clients} clients, {straight:.2f} / {via:.2f} req/s, {batches}",
                        flush=True,
                    )
                overheads, around, inside, outside = [], [], [], []
                for k in range(args.overhead_requests):
                    start = time.perf_counter()
                    direct(20_000 + k)
                    straight_s = time.perf_counter() - start
                    start = time.perf_counter()
                    state = through_gateway(
                        gateway, {**ask(20_000 + k, args.faces), "specialists": ["geometry"]}
                    )
                    total_s = time.perf_counter() - start
                    overheads.append((total_s - straight_s) * 1000)
                    # What the client waited beyond the gateway's own Triton call (HTTP, queue,
                    # database, blob store, events): immune to the decoding time's variance.
                    around.append((total_s - state["stages"]["geometry"]["seconds"]) * 1000)
                    # Split: inside the gateway (queue, database writes, blob store) and outside
                    # it (HTTP requests and the event stream).
                    inside.append(state["latency_ms"] - state["stages"]["geometry"]["seconds"] * 1000)
                    outside.append(total_s * 1000 - state["latency_ms"])
        finally:
            server.stop()
    print(
        f"\ngeometry, up to {args.faces} faces per request, {args.checkpoint}, Triton (CPU) with dynamic batching"
    )
    print(
        f"{'clients':>8}{'Triton req/s':>14}{'gateway req/s':>15}{'gateway vs 1 client':>21}  Triton batches (size: count)"
    )
    for clients, straight, via, batches in rows:
        sizes = ", ".join(f"{s}: {n}" for s, n in sorted(batches.items()))
        print(f"{clients:>8}{straight:>14.2f}{via:>15.2f}{via / rows[0][2]:>20.1f}x  {sizes}")
    for name, values in (
        ("through the gateway minus a direct Triton call (same request)", overheads),
        ("through the gateway minus the gateway's own Triton call", around),
        ("  of which inside the gateway (accepted to stored, minus the Triton call)", inside),
        ("  of which HTTP and the event stream (client's time minus the gateway's latency_ms)", outside),
    ):
        cuts = statistics.quantiles(values, n=100)
        print(
            f"{name}, one client, {len(values)} requests: p50 {statistics.median(values):.1f} ms, p99 {cuts[98]:.1f} ms"
        )


if __name__ == "__main__":
    main()
