"""Tokens per triangle and per authored face of our n-gon tokenizer vs naive, AMT and BPT, same meshes.

    python -m benchmarks.tokenizer [SOURCE] [--bits 7] [--limit N]

SOURCE: a folder of extracted scene documents (objects[*].evaluated_mesh or .mesh), a geometry
dataset (manifest file/folder or manifest sha256; all splits), or nothing for synthetic primitives.
Every tokenizer sees the same canonical quantised meshes. Denominators, as in ANCHORS.md: the
authored triangles (n-gons count n - 2, before quantisation drops collapsed faces) and authored
faces; "kept" divides by the triangles left after quantisation. Subsets by authored triangles.
The round trip of ours must be exact on the grid.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from tqdm import tqdm

from shared.ml.baseline_tokenizers import amt_tokens, bpt_tokens, naive_tokens
from shared.ml.datasets import SPLITS, iter_scene_meshes, iter_split
from shared.ml.mesh_tokenizer import TokenizerConfig, decode, encode, meshes_equal, quantize_mesh
from shared.ml.synthetic_meshes import synthetic_items

SUBSETS = (("<= 800 triangles", 800), ("<= 8,000 triangles", 8000))


def load_meshes(source: str | None) -> Iterator[tuple[str, dict]]:
    if source is None:
        for item in synthetic_items(200):
            yield item["id"], item["mesh"]
    elif Path(source).is_dir() and not (Path(source) / "manifest.json").exists():
        yield from iter_scene_meshes(source)
    else:
        for split in SPLITS:
            for item in iter_split(source, split):
                yield item["id"], item["mesh"]


def measure(source: str | None, config: TokenizerConfig, limit: int | None) -> tuple[list[dict], dict]:
    rows, totals = (
        [],
        {"meshes": 0, "faces_in": 0, "faces_collapsed": 0, "faces_split": 0, "roundtrip_failures": 0},
    )
    encode_s = 0.0
    for n, (name, mesh) in enumerate(tqdm(load_meshes(source), desc="meshes", unit="mesh")):
        if limit is not None and n >= limit:
            break
        q = quantize_mesh(mesh["vertices"], mesh["faces"], config)
        for key in ("faces_in", "faces_collapsed", "faces_split"):
            totals[key] += q.stats.get(key, 0)
        totals["meshes"] += 1
        if not q.faces:
            continue
        t0 = time.perf_counter()
        tokens = encode(q, config)
        encode_s += time.perf_counter() - t0
        if not meshes_equal(decode(tokens, config), q):
            totals["roundtrip_failures"] += 1
        rows.append(
            {
                "name": name,
                "authored_triangles": sum(len(f) - 2 for f in mesh["faces"]),
                "authored_faces": len(mesh["faces"]),
                "triangles": q.triangle_count,
                "faces": len(q.faces),
                "ours": len(tokens) - 2,
                "naive": naive_tokens(q),
                "AMT": amt_tokens(q),
                "BPT": bpt_tokens(q, config.offset_bits),
            }
        )
    totals["encode_ms_per_1k_faces"] = 1e3 * encode_s / max(1, sum(r["faces"] for r in rows)) * 1e3
    return rows, totals


def report(rows: list[dict], totals: dict) -> None:
    print(
        f"\n{totals['meshes']} meshes; faces in {totals['faces_in']:,}, collapsed by quantisation "
        f"{totals['faces_collapsed']:,}, n-gons split {totals['faces_split']:,}; "
        f"round-trip failures (ours, exact on the grid): {totals['roundtrip_failures']}; "
        f"encode {totals['encode_ms_per_1k_faces']:.1f} ms per 1,000 faces"
    )
    header = (
        f"{'subset':<20}{'meshes':>7}{'tokenizer':>10}{'tok/tri mean':>14}{'tok/tri pooled':>16}"
        f"{'kept pooled':>13}{'tok/face mean':>15}{'tok/face pooled':>17}"
    )
    print(header)
    print("-" * len(header))
    for label, cap in SUBSETS:
        subset = [r for r in rows if r["authored_triangles"] <= cap]
        if not subset:
            continue
        tri = np.array([r["authored_triangles"] for r in subset], dtype=float)
        kept = np.array([r["triangles"] for r in subset], dtype=float)
        faces = np.array([r["authored_faces"] for r in subset], dtype=float)
        for name in ("ours", "naive", "AMT", "BPT"):
            tok = np.array([r[name] for r in subset], dtype=float)
            print(
                f"{label:<20}{len(subset):>7}{name:>10}{(tok / tri).mean():>14.3f}{tok.sum() / tri.sum():>16.3f}"
                f"{tok.sum() / kept.sum():>13.3f}{(tok / faces).mean():>15.3f}{tok.sum() / faces.sum():>17.3f}"
            )
    print(
        "For reference, ANCHORS.md (original code, the corpus's .blend files), mean ; pooled: "
        "BPT 2.74 ; 2.33 (<= 800), 2.60 ; 2.05 (<= 8,000); AMT 4.82 ; 4.16, 4.60 ; 3.86"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "source", nargs="?", help="scene-document folder or dataset; default: synthetic primitives"
    )
    parser.add_argument("--bits", type=int, default=7)
    parser.add_argument("--limit", type=int, help="stop after this many meshes")
    args = parser.parse_args(argv)
    rows, totals = measure(args.source, TokenizerConfig(bits=args.bits), args.limit)
    report(rows, totals)
    if totals["roundtrip_failures"]:
        raise SystemExit("round trip is not exact")


if __name__ == "__main__":
    main()
