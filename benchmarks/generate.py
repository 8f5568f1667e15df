"""Geometry generation and training speed on this machine's CPU (or a GPU when present).

    python -m benchmarks.generate [--checkpoint models/geometry/tiny/model.pt] [--faces 200]

Generates meshes of exactly --faces faces (EOS held back until then), grammar-constrained, one at
a time with the KV cache and, as the in-run baseline, without it (the whole sequence re-run every
step); on a CPU also with fp32 weights, the baseline of the fp16 ones that load_model's model
decodes with; then --batch of them side by side (an evaluation's or a server's many prompts).
Then measures training tokens/s of the same model (synthetic items, or --dataset's train split)
with the trainer's length-bucketed batches against randomly drawn, padded ones.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from services.trainer.geometry import TokenSource, TrainConfig, load_items
from shared.ml.geometry_model import GeometryModel, GeometryModelConfig, load_model, to_tensor
from shared.ml.text_embedding import default_cache_dir, embed


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        cpu = next(
            (
                line.split(":", 1)[1].strip()
                for line in cpuinfo.read_text().splitlines()
                if line.startswith("model name")
            ),
            cpu,
        )
    return f"CPU {cpu} ({os.cpu_count()} cores), {torch.get_num_threads()} torch threads"


def time_generation(
    model, text, faces: int, use_cache: bool, repeats: int, batch: int = 1, seed: int = 0
) -> tuple[float, float, int]:
    """(seconds per mesh, tokens/s, faces of the last mesh); batch: meshes written side by side."""
    seconds, tokens, got = 0.0, 0, 0
    for r in range(repeats):
        generator = torch.Generator(model.pos_emb.weight.device).manual_seed(seed + r)
        t0 = time.perf_counter()
        samples = model.generate_batch(
            text.expand(batch, -1),
            face_budget=faces,
            min_faces=faces,
            generator=generator,
            use_cache=use_cache,
        )
        seconds += time.perf_counter() - t0
        tokens += sum(len(toks) for toks, _ in samples)
        got = len(samples[-1][1].faces)
    return seconds / (repeats * batch), tokens / seconds, got


def time_training(model: GeometryModel, source: TokenSource, steps: int, bucketed: bool, device) -> float:
    """Target (non-padding) tokens per second of forward, backward and AdamW.

    bucketed: the trainer's batches (similar lengths, TrainConfig.batch_tokens padded tokens);
    otherwise the baseline, items drawn at random and padded to the longest, as many sequences
    as the bucketed batches held on average.
    """
    config = TrainConfig()
    rng = np.random.default_rng(0)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    mean_size = float(np.mean([len(source.batch_indices(rng, config.batch_tokens)) for _ in range(200)]))
    tokens, seconds = 0, 0.0
    for step in range(steps + 1):
        if bucketed:
            text, inputs, targets = source.batch(rng, True, config)
        else:
            picks = rng.integers(len(source.items), size=max(1, round(mean_size)))
            pairs = [source.sample(rng, True, config, int(i)) for i in picks]
            text = torch.from_numpy(np.stack([p[0] for p in pairs]))
            padded = to_tensor([p[1] for p in pairs])
            inputs, targets = padded[:, :-1], padded[:, 1:]
        t0 = time.perf_counter()
        _, loss = model(text.to(device), inputs.to(device), targets.to(device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if device.type == "cuda":  # the GPU runs ahead of the clock otherwise
            torch.cuda.synchronize(device)
        if step:  # the first step warms up allocators
            seconds += time.perf_counter() - t0
            tokens += int((targets != 0).sum())
    return tokens / seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", default="models/geometry/tiny/model.pt")
    parser.add_argument(
        "--preset", default="tiny", help="used when the checkpoint does not exist (random weights)"
    )
    parser.add_argument("--faces", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=16, help="meshes generated side by side, per mesh timed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--train-steps", type=int, default=5)
    parser.add_argument(
        "--dataset",
        help="geometry dataset (manifest) whose train split feeds the training timing; default synthetic",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if Path(args.checkpoint).is_file():
        model, _ = load_model(args.checkpoint, str(device))
        source = args.checkpoint
    else:
        model = GeometryModel(GeometryModelConfig.preset(args.preset)).to(device).eval()
        model.use_half_precision()  # as load_model's
        source = f"{args.preset} preset, random weights (no checkpoint at {args.checkpoint})"
    text = torch.from_numpy(embed(["a table"], default_cache_dir())[0])
    print(f"model: {source}; {model.num_parameters() / 1e6:.1f}M parameters; device: {device_name(device)}")
    # (name, KV cache, repeats, meshes at once, half precision)
    runs = [
        ("KV cache", True, args.repeats, 1, True),
        ("no cache (baseline)", False, 1, 1, True),
        (f"KV cache, {args.batch} at once", True, 1, args.batch, True),
    ]
    if device.type == "cpu":  # fp16 weights are a CPU decode's (shared.ml.geometry_model.Linear)
        runs.insert(1, ("KV cache, fp32 weights", True, args.repeats, 1, False))
    for half_precision in (True, False):  # untimed: first-call allocations, the fp16 weight copies
        model.use_half_precision(half_precision)
        model.generate(text, face_budget=8)
    rows = {}
    for name, use_cache, repeats, batch, half_precision in runs:
        model.use_half_precision(half_precision)
        rows[name] = time_generation(model, text, args.faces, use_cache, repeats, batch)
    source = TokenSource(load_items(args.dataset, "train"), model.config, default_cache_dir())
    train_rows = [
        (name, time_training(model, source, args.train_steps, bucketed, device))
        for name, bucketed in (("length-bucketed", True), ("random (baseline)", False))
    ]
    print(f"\n{'generation':<24}{'s per mesh':>12}{'tokens/s':>10}{'faces':>7}")
    for name, (per_mesh, tps, got) in rows.items():
        print(f"{name:<24}{per_mesh:>12.2f}{tps:>10.0f}{got:>7}")
    one = rows["KV cache"][0]
    print(f"speed-up from the KV cache: {rows['no cache (baseline)'][0] / one:.1f}x")
    if "KV cache, fp32 weights" in rows:
        print(f"speed-up from fp16 weights: {rows['KV cache, fp32 weights'][0] / one:.1f}x")
    print(f"speed-up per mesh from {args.batch} at once: {one / rows[runs[-1][0]][0]:.1f}x")
    data = args.dataset or "synthetic primitives"
    print(f"\ntraining on {data} (forward, backward, AdamW)")
    print(f"{'batches':<24}{'tokens/s':>10}")
    for name, tps in train_rows:
        print(f"{name:<24}{tps:>10.0f}")
    print(f"speed-up from length bucketing: {train_rows[0][1] / train_rows[1][1]:.1f}x")


if __name__ == "__main__":
    main()
