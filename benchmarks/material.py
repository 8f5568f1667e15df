"""Milliseconds per generated node material on this CPU: one request at a time (the latency a
user waits for) and requests decoded side by side (a batch, as Triton's dynamic batching sends).

    python -m benchmarks.material [--checkpoint models/material/tiny/model.pt] [--requests 32]

Wall-clock time depends on what else the machine runs: the process CPU time and the load
average are printed beside it. The prompt's sentence embedding is part of each request.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from shared.ml.material_generator import MaterialGenerator

PROMPTS = [
    "red painted wood",
    "brushed steel",
    "green glass",
    "glowing blue",
    "old leather",
    "white marble",
    "gold",
    "dark rubber",
]
NOUNS = [("chair", "furniture"), ("sword", "weapon"), ("car", "vehicle"), ("lamp", "lighting")]


def requests(n: int) -> list[dict]:
    return [
        {
            "prompt": f"{PROMPTS[k % len(PROMPTS)]} {k}",  # distinct prompts: none is served from the embedding cache
            "noun": NOUNS[k % len(NOUNS)][0],
            "category": NOUNS[k % len(NOUNS)][1],
            "size": [0.5, 0.5, 1.0],
            "seed": k,
        }
        for k in range(n)
    ]


def timed(run, batch: list[dict]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    run(batch)
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default="models/material/tiny/model.pt")
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    generator = MaterialGenerator(args.checkpoint, device="cpu")
    generator.run_many(requests(2))  # loads the text encoder, warms the first-call allocations
    batch = requests(args.requests)
    one_wall, one_cpu = timed(lambda b: [generator.run_many([r]) for r in b], batch)
    batch = [dict(r, prompt=r["prompt"] + " again") for r in batch]
    many_wall, many_cpu = timed(generator.run_many, batch)
    n = len(batch)
    print(
        json.dumps(
            {
                "requests": n,
                "one_at_a_time_ms_per_material": round(1000 * one_wall / n, 1),
                "one_at_a_time_cpu_ms_per_material": round(1000 * one_cpu / n, 1),
                "batched_ms_per_material": round(1000 * many_wall / n, 1),
                "batched_cpu_ms_per_material": round(1000 * many_cpu / n, 1),
                "threads": args.threads,
                "load_average_1min": round(os.getloadavg()[0], 2),
                "cpus": os.cpu_count(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
